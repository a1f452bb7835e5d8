"""ImageNet-P-style perturbation sequences (Hendrycks & Dietterich, ICLR 2019) and shift pairs.

A perturbation turns one image into a short "video" of frames. Frame counts, per-frame
parameter schedules and noise strengths follow the public generators in the GitHub
repository hendrycks/robustness: ``ImageNet-P/create_p/make_cifar_p.py`` (profile
``cifar``, 32 px) and ``ImageNet-P/create_p/make_imagenet_p.py`` (profile ``imagenet``,
224 px). The code is written afresh in numpy/OpenCV; ImageMagick's motion blur (Wand) and
torchvision's affine transform are replaced by equivalents (see the functions).

Two kinds of perturbation (the metrics treat them differently, ``docs/metrics.md``):

* Noise (:data:`NOISE_PERTURBATIONS`): frame 0 is the clean image, frames 1..30 each add
  independent noise of one strength. ``difficulty`` 1, 2, 3 picks the strength, as the
  generators' ``<name>``, ``<name>_2`` and ``<name>_3`` data sets did; the metrics always
  compare every frame with frame 0, so difficulty has no other effect.
* Gradual (all others): a parameter (angle, shift, scale, ...) moves a fixed step per
  frame. The frames do not depend on ``difficulty``; difficulty ``d`` only tells the
  metrics to compare frames ``d`` apart, as ``flip_prob`` in ``ImageNet-P/test.py`` does.
  It must therefore be below the frame count.

Determinism: the frames of one image depend only on its pixels and on (dataset index,
perturbation, difficulty, seed, profile); each image gets its own generator from
:func:`sequence_generator`, so results are identical for any batch composition, chunking
or number of worker processes. Randomness never comes from numpy's global state.

Schedules (frame i = 0..frames-1; noise strengths listed for difficulty 1 / 2 / 3):

================  =============================================  ===========================================
perturbation      cifar (make_cifar_p.py)                        imagenet (make_imagenet_p.py)
================  =============================================  ===========================================
gaussian_noise    31 frames, sigma 0.02 / 0.04 / 0.06            31, sigma 0.03 / 0.05 / 0.08
shot_noise        31, photons 700 / 400 / 200                    31, photons 300 / 120 / 60
speckle_noise     31, sigma 0.05 / 0.07 / 0.10                   31, sigma 0.05 / 0.10 / 0.15
motion_blur       21, radius 6, sigma 1.8, angle 9(i-20): -180..0  31, radius 10, sigma 3, angle 4(i-30): -120..0
zoom_blur         31, mean of zooms 1 + 0.004 k for k <= i        same
snow              31, flakes N(0.05, 0.3) zoomed 2x, > 0.5;      31, flakes zoomed 3x; blur radius 14, sigma 4
                  blur radius 10, sigma 2, angle 4i - 150
brightness        31, HSV value + 0.015 (i - 15)                 31, value + 0.02 (i - 15)
translate         16, shift i - 7 px: -7..+8                     41, shift i - 20 px: -20..+20
rotate            31, angle i - 15 degrees                       same
tilt              31, angle 0.75 (i - 15) degrees               31, angle i - 15 degrees
scale             31, factor 0.70 + 0.02 i: 0.70..1.30           31, factor 0.40 + 0.025 i: 0.40..1.15
gaussian_blur     31, sigma 0.3 + 0.015 i, truncate 7            31, sigma 0.25 + 0.035 i, truncate 6
spatter           31, liquid N(0.6, 0.265) blurred 1.75, > 0.7;  31, N(0.65, 0.27) blurred 3.7, > 0.69;
                  drips by kernel (0.2, 0.8) per frame           kernel (0.05, 0.1, 0.15, 0.7)
shear             31, shear i - 15 degrees                       same
================  =============================================  ===========================================

Where we differ from the generators: (1) frames are returned as arrays, not stored as
H.264 video (ImageNet-P's files carry coding artefacts); (2) random draws come from
numpy's Generator, not torch's or numpy's global state, so no byte matches the
published files; (3) the imagenet generator warped the 256-px resized photograph and
then cut the central 224 px, so little of the black fill showed; we only have the image
we are given and warp it, so translate, rotate, tilt, scale and shear bring in black
borders; (4) schedules are in the reference's units (pixels, degrees, factors) and are
not rescaled for other image sizes: any size works, but the imagenet profile is meant for
224 px; (5) see the individual functions for resampling details.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from skimage import color as skimage_color
from tqdm import tqdm

from corruptions._checks import check_indices, check_seed, check_uint8_images
from corruptions._pixels import truncate_to_uint8 as _truncate_to_uint8
from corruptions._pixels import unit_float as _unit_float
from corruptions._registry import Registry
from corruptions.cifar_profile import clipped_zoom, gaussian_filter, imagemagick_to_uint8, spatter_wetness
from corruptions.engine import images_per_task, run_chunks
from corruptions.errors import CorruptionError

# ---------------------------------------------------------------- vocabulary

MAIN_PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "snow",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)
EXTRA_PERTURBATIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "shear")
#: Canonical order. A perturbation's position is its id in every seed: append only.
ALL_PERTURBATIONS: tuple[str, ...] = MAIN_PERTURBATIONS + EXTRA_PERTURBATIONS
#: Perturbations scored with the "noise rule" (every frame against frame 0).
NOISE_PERTURBATIONS: frozenset[str] = frozenset({"gaussian_noise", "shot_noise", "speckle_noise"})
#: Profile order is part of the seed too: append only.
PROFILES: tuple[str, ...] = ("cifar", "imagenet")
#: The generators made three noise strengths per noise perturbation.
NOISE_DIFFICULTIES: tuple[int, ...] = (1, 2, 3)
#: Fill modes of :func:`shift_pairs`, mapped to ``np.pad`` modes.
SHIFT_FILLS: dict[str, str] = {"zero": "constant", "reflect": "reflect"}

# Constant words mixed into the seeds so these streams never coincide with the
# corruption engine's ``SeedSequence([seed, index, corruption_id, severity])``.
_SEQUENCE_STREAM = 0x50455254  # "PERT"
_SHIFT_STREAM = 0x53484654  # "SHFT"

#: ``generate(image HxWx3 uint8, difficulty, rng) -> frames x H x W x 3 uint8``.
FrameGenerator = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Perturbation:
    """One perturbation in one profile: how many frames it makes and how."""

    frames: int
    generate: FrameGenerator
    is_noise: bool


_PERTURBATION_IDS: Registry[int] = Registry("perturbation")
for _position, _name in enumerate(ALL_PERTURBATIONS):
    _PERTURBATION_IDS.add(_name, _position)

_PROFILE_IDS: Registry[int] = Registry("perturbation profile")
for _position, _name in enumerate(PROFILES):
    _PROFILE_IDS.add(_name, _position)

_SUBSETS: Registry[tuple[str, ...]] = Registry("perturbation subset")
_SUBSETS.add("main", MAIN_PERTURBATIONS)
_SUBSETS.add("extra", EXTRA_PERTURBATIONS)
_SUBSETS.add("all", ALL_PERTURBATIONS)

_SHIFT_FILL_MODES: Registry[str] = Registry("shift fill")
for _name, _mode in SHIFT_FILLS.items():
    _SHIFT_FILL_MODES.add(_name, _mode)


# ---------------------------------------------------------------- pixel helpers


def _with_clean_first(image: np.ndarray, noisy_frames: np.ndarray) -> np.ndarray:
    return np.concatenate([image[np.newaxis], noisy_frames], axis=0)


# ---------------------------------------------------------------- geometry


def _affine_matrix(height: int, width: int, angle: float = 0.0, scale: float = 1.0, shear: float = 0.0) -> np.ndarray:
    """Forward 2x3 matrix of torchvision's (0.2-era) ``affine`` about the image centre.

    Linear part ``scale * [[cos a, -sin(a + s)], [sin a, cos(a + s)]]`` (angle ``a`` and
    x-shear ``s`` in degrees; in image coordinates, y down, positive angles turn
    clockwise, as torchvision documented then). We use the centre ``((w-1)/2, (h-1)/2)``
    of the pixel grid; torchvision's PIL path was half a pixel off, which only shifts frames.
    """
    angle_radians, shear_radians = np.deg2rad(angle), np.deg2rad(shear)
    linear = scale * np.array(
        [
            [np.cos(angle_radians), -np.sin(angle_radians + shear_radians)],
            [np.sin(angle_radians), np.cos(angle_radians + shear_radians)],
        ]
    )
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    return np.hstack([linear, (centre - linear @ centre)[:, np.newaxis]])


def _warp_affine(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    # Bilinear with black fill, as torchvision's affine (PIL BILINEAR, fillcolor 0).
    height, width = image.shape[:2]
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _tilt_homography(height: int, width: int, angle: float) -> np.ndarray:
    """The generators' tilt: turn the image plane by ``angle`` degrees about both the
    vertical and the horizontal axis, then project with focal length = image diagonal.

    Pixels are centred with ``(w/2, h/2)`` and placed at depth 1, not 0 (the generator's
    ``P1`` matrix does this), which shrinks every frame by ``f / (f + 1)``: 2 % at 32 px.
    We keep it so the frames match the reference geometry.
    """
    radians = np.deg2rad(angle)
    cosine, sine = np.cos(radians), np.sin(radians)
    focal = np.hypot(width, height)
    about_vertical = np.array([[cosine, 0, -sine], [0, 1, 0], [sine, 0, cosine]])
    about_horizontal = np.array([[1, 0, 0], [0, cosine, -sine], [0, sine, cosine]])
    to_scene = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
    camera_distance = np.diag([0.0, 0.0, focal])
    projection = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    return projection @ (about_horizontal @ about_vertical @ to_scene + camera_distance)


def _shift_horizontally(image: np.ndarray, shift: int) -> np.ndarray:
    """Content moved ``shift`` pixels right (left if negative); the uncovered side is black."""
    shifted = np.zeros_like(image)
    width = image.shape[1]
    if shift >= 0:
        shifted[:, shift:] = image[:, : max(width - shift, 0)]
    else:
        shifted[:, : max(width + shift, 0)] = image[:, -shift:]
    return shifted


# ---------------------------------------------------------------- noise perturbations


def _gaussian_noise_frames(image: np.ndarray, sigma: float, count: int, rng: np.random.Generator) -> np.ndarray:
    # float32 like the generator's torch tensors, and twice as fast to draw.
    x = _unit_float(image, np.float32)
    return _truncate_to_uint8(x + np.float32(sigma) * rng.standard_normal((count,) + x.shape, dtype=np.float32))


def _shot_noise_frames(image: np.ndarray, photons: float, count: int, rng: np.random.Generator) -> np.ndarray:
    x = _unit_float(image)
    return _truncate_to_uint8(rng.poisson(x * photons, size=(count,) + x.shape) / photons)


def _speckle_noise_frames(image: np.ndarray, sigma: float, count: int, rng: np.random.Generator) -> np.ndarray:
    x = _unit_float(image, np.float32)
    return _truncate_to_uint8(x + x * (np.float32(sigma) * rng.standard_normal((count,) + x.shape, dtype=np.float32)))


NoiseDraw = Callable[[np.ndarray, float, int, np.random.Generator], np.ndarray]


def _noise_perturbation(draw: NoiseDraw, strengths: tuple[float, float, float], frames: int = 31) -> Perturbation:
    """Frame 0 clean, then ``frames - 1`` independent noisy copies at ``strengths[difficulty - 1]``."""

    def generate(image: np.ndarray, difficulty: int, rng: np.random.Generator) -> np.ndarray:
        return _with_clean_first(image, draw(image, strengths[difficulty - 1], frames - 1, rng))

    return Perturbation(frames=frames, generate=generate, is_noise=True)


# ---------------------------------------------------------------- gradual perturbations
# Each renderer takes the image, the per-frame schedule and the generator (used only by
# snow and spatter, once per sequence, so their random layer stays fixed while it moves).


def _motion_blur_stack(image: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """:func:`corruptions.cifar_profile.motion_blur_line` at every angle, as floats.

    Same kernel (ImageMagick's MotionBlurImage: one-sided Gaussian taps along a line,
    edge pixels repeated) and the same summation order, so the values are identical;
    but the image is edge-padded once and every tap reads a slice instead of gathering
    pixels, which is several times faster for 20-40 frames.
    """
    taps = np.arange(2 * int(np.ceil(radius)) + 1)
    weights = np.exp(-(taps.astype(np.float64) ** 2) / (2.0 * sigma * sigma))
    weights /= weights.sum()
    reach = int(taps[-1])
    height, width = image.shape[:2]
    padded = np.pad(image, ((reach, reach), (reach, reach)) + ((0, 0),) * (image.ndim - 2), mode="edge")
    blurred = np.zeros((len(angles),) + image.shape, dtype=np.float64)
    for position, angle in enumerate(angles):
        radians = np.deg2rad(angle)
        # ImageMagick rounds tap positions with ceil(x - 0.5).
        row_offsets = np.ceil(taps * np.sin(radians) - 0.5).astype(np.int64) + reach
        column_offsets = np.ceil(taps * np.cos(radians) - 0.5).astype(np.int64) + reach
        for weight, top, left in zip(weights, row_offsets, column_offsets):
            blurred[position] += weight * padded[top : top + height, left : left + width]
    return blurred


def _motion_blur_frames(
    image: np.ndarray, angles: np.ndarray, rng: np.random.Generator, radius: float, sigma: float
) -> np.ndarray:
    """ImageMagick's motion blur at a turning angle; 8-bit output, converted as ImageMagick's."""
    return imagemagick_to_uint8(_motion_blur_stack(image, radius, sigma, angles))


def _zoom_blur_frames(image: np.ndarray, scales: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frame i is the mean of the image zoomed by ``scales[0..i]`` (a growing zoom streak)."""
    height, width = image.shape[:2]
    zoomed = np.stack([_warp_affine(image, _affine_matrix(height, width, scale=scale)) for scale in scales])
    running_sum = np.cumsum(zoomed, axis=0, dtype=np.float64)
    means = running_sum / np.arange(1, len(scales) + 1)[:, np.newaxis, np.newaxis, np.newaxis]
    return np.clip(means, 0, 255).astype(np.uint8)  # the generator's ToPILImage truncates


def _snow_frames(
    image: np.ndarray,
    angles: np.ndarray,
    rng: np.random.Generator,
    flake_zoom: float,
    blur_radius: float,
    blur_sigma: float,
) -> np.ndarray:
    """One random flake layer, motion-blurred along a turning direction (snow drifting)."""
    flake_mean, flake_spread, flake_threshold, image_weight = 0.05, 0.3, 0.5, 0.85
    x = _unit_float(image).astype(np.float32)
    height, width = image.shape[:2]
    flakes = rng.normal(loc=flake_mean, scale=flake_spread, size=(height, width))
    flakes = clipped_zoom(flakes[..., np.newaxis], flake_zoom)[..., 0]
    flakes[flakes < flake_threshold] = 0
    # The generator stores the layer as an 8-bit greyscale PNG before ImageMagick blurs it.
    flakes_8bit = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)

    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., np.newaxis]
    whitened = image_weight * x + (1 - image_weight) * np.maximum(x, gray * 1.5 + 0.5)
    layers = imagemagick_to_uint8(_motion_blur_stack(flakes_8bit, blur_radius, blur_sigma, angles))[..., np.newaxis]
    layers = layers / 255.0
    # Flakes plus the same flakes turned 180 degrees, on every frame.
    return _truncate_to_uint8(whitened + layers + layers[:, ::-1, ::-1])


def _brightness_frames(image: np.ndarray, shifts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add ``shift`` to the HSV value channel (skimage's HSV, as the generator).

    skimage's hsv2rgb makes every channel ``v * (an expression in hue and saturation)``,
    so converting once with ``v = 1`` and multiplying by each frame's ``v`` gives the same
    numbers as one hsv2rgb per frame, at a fraction of the cost.
    """
    hsv = skimage_color.rgb2hsv(_unit_float(image))
    values = np.clip(hsv[..., 2] + shifts[:, np.newaxis, np.newaxis], 0, 1)
    hsv[..., 2] = 1.0
    unit_value_rgb = skimage_color.hsv2rgb(hsv)
    return _truncate_to_uint8(values[..., np.newaxis] * unit_value_rgb)


def _translate_frames(image: np.ndarray, shifts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact horizontal integer shifts with a black fill (torchvision affine, nearest)."""
    return np.stack([_shift_horizontally(image, int(shift)) for shift in shifts])


def _rotate_frames(image: np.ndarray, angles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    return np.stack([_warp_affine(image, _affine_matrix(height, width, angle=angle)) for angle in angles])


def _scale_frames(image: np.ndarray, scales: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    return np.stack([_warp_affine(image, _affine_matrix(height, width, scale=scale)) for scale in scales])


def _shear_frames(image: np.ndarray, angles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    return np.stack([_warp_affine(image, _affine_matrix(height, width, shear=angle)) for angle in angles])


def _tilt_frames(image: np.ndarray, angles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    return np.stack(
        [
            cv2.warpPerspective(
                image, _tilt_homography(height, width, angle), (width, height),
                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
            )
            for angle in angles
        ]
    )  # fmt: skip


def _gaussian_blur_frames(
    image: np.ndarray, sigmas: np.ndarray, rng: np.random.Generator, truncate: float
) -> np.ndarray:
    x = _unit_float(image)
    return np.stack([_truncate_to_uint8(gaussian_filter(x, sigma, truncate=truncate)) for sigma in sigmas])


def _drip(liquid: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``np.convolve(column, kernel, mode="same")`` down every column, vectorised.

    Output row ``k`` is ``sum_j kernel[j] * liquid[k - j + (len(kernel) - 1) // 2]``
    (zero outside), so most of the weight lands on lower rows: the drops run down.
    """
    height = liquid.shape[0]
    offset = (len(kernel) - 1) // 2
    dripped = np.zeros_like(liquid)
    for tap, weight in enumerate(kernel):
        shift = tap - offset  # output row k reads input row k - shift
        if shift >= 0:
            dripped[shift:] += weight * liquid[: height - shift]
        else:
            dripped[: height + shift] += weight * liquid[-shift:]
    return dripped


def _spatter_frames(
    image: np.ndarray,
    steps: np.ndarray,
    rng: np.random.Generator,
    mean: float,
    spread: float,
    smoothing: float,
    threshold: float,
    drip_kernel: tuple[float, ...],
) -> np.ndarray:
    """One random water layer that runs down the image a little more every frame."""
    intensity = 0.6
    # Pale turquoise; the generator builds it as "BGR" but adds it channel by channel to
    # the RGB image, so it lands in RGB order (as in the corruption engine's spatter).
    water = np.array([175, 238, 238], dtype=np.float64) / 255
    kernel = np.asarray(drip_kernel, dtype=np.float64)
    x = _unit_float(image)
    liquid = gaussian_filter(rng.normal(loc=mean, scale=spread, size=image.shape[:2]), smoothing)
    liquid[liquid < threshold] = 0
    frames = np.empty((len(steps),) + image.shape, dtype=np.uint8)
    for position in range(len(steps)):
        frames[position] = _truncate_to_uint8(x + spatter_wetness(liquid, intensity)[..., np.newaxis] * water)
        liquid = _drip(liquid, kernel)
    return frames


GradualRenderer = Callable[..., np.ndarray]


def _gradual_perturbation(render: GradualRenderer, schedule: np.ndarray, **settings: object) -> Perturbation:
    """A perturbation whose frame i uses ``schedule[i]``; difficulty does not change the frames."""
    schedule = np.asarray(schedule, dtype=np.float64)
    schedule.setflags(write=False)

    def generate(image: np.ndarray, difficulty: int, rng: np.random.Generator) -> np.ndarray:
        return render(image, schedule, rng, **settings)

    return Perturbation(frames=len(schedule), generate=generate, is_noise=False)


def _frame_steps(count: int) -> np.ndarray:
    return np.arange(count, dtype=np.float64)


# ---------------------------------------------------------------- the two profiles
# Per-frame schedules, i = 0..frames-1, as in the generators (see the module docstring).


def _cifar_profile() -> Registry[Perturbation]:
    steps = _frame_steps(31)
    profile: Registry[Perturbation] = Registry("cifar-profile perturbation")
    profile.add("gaussian_noise", _noise_perturbation(_gaussian_noise_frames, (0.02, 0.04, 0.06)))
    profile.add("shot_noise", _noise_perturbation(_shot_noise_frames, (700, 400, 200)))
    # 21 frames, angle (i - 20) * 9 degrees: -180 .. 0.
    profile.add(
        "motion_blur", _gradual_perturbation(_motion_blur_frames, (_frame_steps(21) - 20) * 9, radius=6, sigma=1.8)
    )
    profile.add("zoom_blur", _gradual_perturbation(_zoom_blur_frames, 1 + 0.004 * steps))
    profile.add(
        "snow", _gradual_perturbation(_snow_frames, steps * 4 - 150, flake_zoom=2, blur_radius=10, blur_sigma=2)
    )
    profile.add("brightness", _gradual_perturbation(_brightness_frames, (steps - 15) * 1.5 / 100))
    # 16 frames, shift i - 7 px: -7 .. +8.
    profile.add("translate", _gradual_perturbation(_translate_frames, _frame_steps(16) - 7))
    profile.add("rotate", _gradual_perturbation(_rotate_frames, steps - 15))
    profile.add("tilt", _gradual_perturbation(_tilt_frames, 0.75 * (steps - 15)))
    profile.add("scale", _gradual_perturbation(_scale_frames, (steps * 2 + 70) / 100))
    profile.add("speckle_noise", _noise_perturbation(_speckle_noise_frames, (0.05, 0.07, 0.1)))
    profile.add("gaussian_blur", _gradual_perturbation(_gaussian_blur_frames, 0.3 + 0.015 * steps, truncate=7.0))
    profile.add(
        "spatter",
        _gradual_perturbation(
            _spatter_frames, steps, mean=0.6, spread=0.265, smoothing=1.75, threshold=0.7, drip_kernel=(0.2, 0.8)
        ),
    )
    profile.add("shear", _gradual_perturbation(_shear_frames, steps - 15))
    return profile


def _imagenet_profile() -> Registry[Perturbation]:
    steps = _frame_steps(31)
    profile: Registry[Perturbation] = Registry("imagenet-profile perturbation")
    profile.add("gaussian_noise", _noise_perturbation(_gaussian_noise_frames, (0.03, 0.05, 0.08)))
    profile.add("shot_noise", _noise_perturbation(_shot_noise_frames, (300, 120, 60)))
    profile.add("motion_blur", _gradual_perturbation(_motion_blur_frames, (steps - 30) * 4, radius=10, sigma=3))
    profile.add("zoom_blur", _gradual_perturbation(_zoom_blur_frames, 1 + 0.004 * steps))
    profile.add(
        "snow", _gradual_perturbation(_snow_frames, steps * 4 - 150, flake_zoom=3, blur_radius=14, blur_sigma=4)
    )
    profile.add("brightness", _gradual_perturbation(_brightness_frames, (steps - 15) * 2 / 100))
    # 41 frames, shift i - 20 px: -20 .. +20.
    profile.add("translate", _gradual_perturbation(_translate_frames, _frame_steps(41) - 20))
    profile.add("rotate", _gradual_perturbation(_rotate_frames, steps - 15))
    profile.add("tilt", _gradual_perturbation(_tilt_frames, steps - 15))
    profile.add("scale", _gradual_perturbation(_scale_frames, (steps * 2.5 + 40) / 100))
    profile.add("speckle_noise", _noise_perturbation(_speckle_noise_frames, (0.05, 0.10, 0.15)))
    profile.add("gaussian_blur", _gradual_perturbation(_gaussian_blur_frames, 0.25 + 0.035 * steps, truncate=6.0))
    profile.add(
        "spatter",
        _gradual_perturbation(
            _spatter_frames,
            steps,
            mean=0.65,
            spread=0.27,
            smoothing=3.7,
            threshold=0.69,
            drip_kernel=(0.05, 0.1, 0.15, 0.7),
        ),
    )
    profile.add("shear", _gradual_perturbation(_shear_frames, steps - 15))
    return profile


_PROFILE_REGISTRY: Registry[Registry[Perturbation]] = Registry("perturbation profile")
_PROFILE_REGISTRY.add("cifar", _cifar_profile())
_PROFILE_REGISTRY.add("imagenet", _imagenet_profile())
assert tuple(_PROFILE_REGISTRY.names()) == PROFILES, "PROFILES and the profile registry disagree"
assert all(tuple(_PROFILE_REGISTRY.get(profile).names()) == ALL_PERTURBATIONS for profile in PROFILES), (
    "every profile must define every perturbation, in canonical order"
)


# ---------------------------------------------------------------- validation


def _lookup(perturbation: str, profile: str) -> Perturbation:
    functions = _PROFILE_REGISTRY.get(profile)  # unknown profile: CorruptionError listing the known ones
    _PERTURBATION_IDS.get(perturbation)  # unknown name: CorruptionError listing the known ones
    return functions.get(perturbation)


def _check_difficulty_value(difficulty: object) -> int:
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, np.integer)) or difficulty < 1:
        raise CorruptionError(f"difficulty must be an integer >= 1, got {difficulty!r}")
    return int(difficulty)


def _check_difficulty(perturbation: str, recipe: Perturbation, difficulty: object) -> int:
    difficulty = _check_difficulty_value(difficulty)
    if recipe.is_noise and difficulty not in NOISE_DIFFICULTIES:
        raise CorruptionError(
            f"difficulty for noise perturbation {perturbation!r} must be 1, 2 or 3 (its noise strengths), "
            f"got {difficulty}"
        )
    if not recipe.is_noise and difficulty >= recipe.frames:
        raise CorruptionError(
            f"difficulty for perturbation {perturbation!r} must be below its {recipe.frames} frames, got {difficulty}"
        )
    return difficulty


def _generator_level(recipe: Perturbation, difficulty: int) -> int:
    # Gradual sequences are the same video at every difficulty (only the metric's stride
    # changes), so difficulty enters their seed as 1; noise strength changes with it.
    return difficulty if recipe.is_noise else 1


# ---------------------------------------------------------------- public API


def perturbation_names(which: str = "all") -> list[str]:
    """Names of the ``"main"`` 10, the ``"extra"`` 4, or ``"all"`` 14, in canonical order."""
    return list(_SUBSETS.get(which))


def frame_count(perturbation: str, profile: str = "cifar") -> int:
    """Frames in one sequence of ``perturbation`` under ``profile`` (31, except translate and
    cifar motion_blur; see the module's table)."""
    return _lookup(perturbation, profile).frames


def validate_difficulty(perturbations: Sequence[str], difficulty: int, profile: str = "cifar") -> int:
    """Check names, profile and difficulty up front (e.g. when a config is read); returns the
    difficulty as an int or raises a one-line CorruptionError: noise perturbations allow 1..3,
    gradual ones anything below their frame count."""
    _PROFILE_REGISTRY.get(profile)
    difficulty = _check_difficulty_value(difficulty)
    for name in perturbations:
        _check_difficulty(name, _lookup(name, profile), difficulty)
    return difficulty


def sequence_generator(seed: int, index: int, perturbation: str, difficulty: int, profile: str) -> np.random.Generator:
    """The random generator for one image's sequence; a pure function of its arguments.

    ``difficulty`` here is the generator level: the difficulty for noise perturbations, 1
    for gradual ones (whose frames do not depend on difficulty).
    """
    words = [seed, index, _SEQUENCE_STREAM, _PERTURBATION_IDS.get(perturbation), difficulty, _PROFILE_IDS.get(profile)]
    return np.random.default_rng(np.random.SeedSequence(words))


def _generate(
    image: np.ndarray, perturbation: str, recipe: Perturbation, difficulty: int, seed: int, index: int, profile: str
) -> np.ndarray:
    level = _generator_level(recipe, difficulty)
    frames = recipe.generate(image, difficulty, sequence_generator(seed, index, perturbation, level, profile))
    expected = (recipe.frames,) + image.shape
    if frames.shape != expected or frames.dtype != np.uint8:
        raise RuntimeError(
            f"perturbation {perturbation} returned {frames.dtype} {frames.shape}, expected uint8 {expected}"
        )
    return frames


def perturbation_sequence(
    image: np.ndarray,
    perturbation: str,
    *,
    profile: str = "cifar",
    difficulty: int = 1,
    seed: int = 0,
    index: int = 0,
) -> np.ndarray:
    """One HxWx3 uint8 image -> its ``frames x H x W x 3`` uint8 sequence.

    Deterministic in (index, perturbation, difficulty, seed, profile). ``difficulty``:
    noise perturbations 1..3 pick the noise strength; gradual perturbations accept any
    difficulty below their frame count and return the same frames for each (the metrics
    compare frames ``difficulty`` apart). Any image size works; the schedules are in the
    reference's units (degrees, pixels, factors) and are not rescaled to the image.
    """
    recipe = _lookup(perturbation, profile)
    difficulty = _check_difficulty(perturbation, recipe, difficulty)
    image = check_uint8_images(image, batch=False)
    seed = check_seed(seed)
    index = int(check_indices(np.array([index]), 1)[0])
    return _generate(image, perturbation, recipe, difficulty, seed, index, profile)


def _perturb_chunk(
    images: np.ndarray, indices: np.ndarray, perturbation: str, profile: str, difficulty: int, seed: int
) -> np.ndarray:
    recipe = _lookup(perturbation, profile)
    sequences = np.empty((len(images), recipe.frames) + images.shape[1:], dtype=np.uint8)
    for position, (image, index) in enumerate(zip(images, indices)):
        sequences[position] = _generate(image, perturbation, recipe, difficulty, seed, int(index), profile)
    return sequences


def perturb_many(
    images: np.ndarray,
    perturbations: Sequence[str],
    *,
    profile: str = "cifar",
    difficulty: int = 1,
    seed: int = 0,
    indices: np.ndarray | None = None,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """NxHxWx3 uint8 -> ``{name: N x frames x H x W x 3 uint8}`` for every perturbation.

    All perturbations share one process pool (``workers <= 1``: this process); the tasks
    are chunks of images times perturbations. Sequence i depends only on ``indices[i]``
    (default ``arange(N)``) and the other arguments, so the bytes are identical for any
    ``workers`` and chunking. ``progress`` shows a tqdm bar on stderr.
    """
    names = list(dict.fromkeys(perturbations))
    difficulty = validate_difficulty(names, difficulty, profile)
    recipes = {name: _lookup(name, profile) for name in names}
    images = check_uint8_images(images, batch=True)
    seed = check_seed(seed)
    count = images.shape[0]
    indices = check_indices(indices, count)

    results = {
        name: np.empty((count, recipe.frames) + images.shape[1:], dtype=np.uint8) for name, recipe in recipes.items()
    }
    if count == 0 or not names:
        return results

    largest_sequence_bytes = max(recipe.frames for recipe in recipes.values()) * int(np.prod(images.shape[1:]))
    chunk = images_per_task(count, len(names), workers, largest_sequence_bytes)
    tasks = [(name, start, min(start + chunk, count)) for name in names for start in range(0, count, chunk)]

    work = [
        (name, start, stop, (images[start:stop], indices[start:stop], name, profile, difficulty, seed))
        for name, start, stop in tasks
    ]
    with tqdm(
        total=count * len(names), desc=f"perturbing ({profile})", unit="sequence", file=sys.stderr, disable=not progress
    ) as bar:
        run_chunks(_perturb_chunk, work, results, workers, bar)
    return results


def shift_pairs(
    images: np.ndarray,
    *,
    max_shift: int = 4,
    seed: int = 0,
    indices: np.ndarray | None = None,
    fill: str = "zero",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two random translations of every image, for shift consistency (Zhang, ICML 2019).

    Each image gets two offsets (rows, columns), each drawn uniformly from the integers
    in ``[-max_shift, max_shift]`` by a generator seeded from (seed, index) alone. A
    positive offset moves the content down / right. Returns ``(first, second, offsets)``
    with ``offsets[i, k] = (row offset, column offset)`` of shift ``k`` of image ``i``.

    Zhang compares two random crops of a larger image; a 32-px image has no margin to
    crop from, so we translate it and fill the uncovered border. ``fill="zero"`` (the
    default) paints it black: Fashion-MNIST's border is black already, and zero padding is
    what the usual ``RandomCrop(32, padding=4)`` training augmentation shows the model, so
    it adds no unseen content. ``fill="reflect"`` mirrors the image (without repeating the
    edge pixel, like ``np.pad(mode="reflect")``), which suits natural images whose border
    is not black; it needs ``max_shift`` below the image side.
    """
    pad_mode = _SHIFT_FILL_MODES.get(fill)
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise CorruptionError(f"max_shift must be a non-negative integer, got {max_shift!r}")
    max_shift = int(max_shift)
    images = check_uint8_images(images, batch=True)
    seed = check_seed(seed)
    count, height, width = images.shape[:3]
    indices = check_indices(indices, count)
    if fill == "reflect" and count and max_shift >= min(height, width):
        raise CorruptionError(
            f"max_shift {max_shift} must be below the image side {min(height, width)} for reflect fill"
        )

    offsets = np.empty((count, 2, 2), dtype=np.int64)
    for position, index in enumerate(indices):
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(index), _SHIFT_STREAM]))
        offsets[position] = rng.integers(-max_shift, max_shift + 1, size=(2, 2))

    margin = ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0))
    padded = np.pad(images, margin, mode=pad_mode)  # type: ignore[call-overload]  # mode: a str from SHIFT_FILLS
    # Shifting by (dy, dx) reads the window that starts max_shift - (dy, dx) into the padding.
    rows = np.arange(height)[np.newaxis, :] + (max_shift - offsets[:, :, 0])[..., np.newaxis]  # N x 2 x H
    columns = np.arange(width)[np.newaxis, :] + (max_shift - offsets[:, :, 1])[..., np.newaxis]  # N x 2 x W
    image_axis = np.arange(count)[:, np.newaxis, np.newaxis]
    shifted = [padded[image_axis, rows[:, k, :, np.newaxis], columns[:, k, np.newaxis, :]] for k in range(2)]
    return shifted[0], shifted[1], offsets
