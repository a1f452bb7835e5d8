"""The 32-px ("cifar") severity profile: CIFAR-10-C's parameters, for images of any size.

Every severity constant, and the order in which each corruption applies its steps, follows
the public CIFAR-10-C generator ``ImageNet-C/create_c/make_cifar_c.py`` in the GitHub
repository hendrycks/robustness (Hendrycks & Dietterich, ICLR 2019). The code is written
afresh; where it differs from the generator the docstring of the function says why.

Every function has the signature ``fn(image, severity, rng)`` where ``image`` is HxWx3
uint8, ``severity`` is in 1..5 and ``rng`` is the only source of randomness (never numpy's
global state, so results are reproducible and independent of the caller). Functions
return floats in [0, 255] (or uint8); the engine converts to uint8 by truncation, as the
generator's ``np.uint8(...)`` did.

8-bit conversions follow the generator exactly, including its quirks (each is the
default and only behaviour): the final ``np.uint8`` truncates, and since every function
here stays inside [0, 256) the engine's clip before it changes nothing; glass blur
truncates its first blur; motion blur and snow's flake layer come back from ImageMagick
converted as :func:`imagemagick_to_uint8` describes (not rounded); spatter's liquid layer
is cast to 8 bits without clipping, so thick drops wrap around (:func:`wrap_to_uint8`).
With the same random draws, every corruption and severity of this profile gives the
generator's bytes (checked with the generator itself run under ImageMagick 6.9.11 Q16).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import color as skimage_color
from skimage import util as skimage_util

from corruptions._pixels import unit_float as _unit_float
from corruptions.registry import make_profile_registry

CIFAR_PROFILE = make_profile_registry("cifar")

# The generator resizes the frost photographs by this factor for 32-px images.
FROST_RESIZE_FACTOR = 0.2
# The generator draws the frost picture with randint(5), so frost6.jpg is never used;
# keeping that makes our frost statistics match CIFAR-10-C's.
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")

#: Every corruption's parameters per severity (index ``severity - 1``), from the generator.
#: Shared with the torch engine (:mod:`corruptions.torch_engine`), so both use one table.
#: elastic_transform's values are fractions of the image's shorter side (the generator's 32 px).
CIFAR_SEVERITIES: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # sigma
    "shot_noise": (500, 250, 100, 75, 50),  # photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # amount
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),  # sigma
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # sigma
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # sigma, delta, iterations
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # radius, alias blur
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma
    "zoom_blur": (
        np.arange(1, 1.06, 0.01),
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.01),
        np.arange(1, 1.26, 0.01),
    ),  # zoom factors
    # flake mean, spread, zoom, threshold, blur radius, blur sigma, image weight
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image weight, frost weight
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # strength, wibble decay
    # mean, spread, smoothing, threshold, intensity, is_mud
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.5, False),
        (0.65, 0.1, 0.8, 0.7, 0.5, False),
        (0.65, 0.3, 1, 0.69, 0.5, False),
        (0.65, 0.1, 0.7, 0.69, 0.6, True),
        (0.65, 0.1, 0.5, 0.68, 0.6, True),
    ),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # HSV value shift
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # saturation scale, shift
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor
    # alpha, sigma, affine jitter (fractions of the shorter side)
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # resize factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # quality
}


# ---------------------------------------------------------------- helpers


def gaussian_filter(image: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian's defaults (mode, truncate, no smoothing across channels),
    calling scipy directly because skimage's wrapper costs more than the filter at 32 px."""
    sigmas = (sigma, sigma) + (0.0,) * (image.ndim - 2)
    return ndimage.gaussian_filter(image, sigmas, mode=mode, truncate=truncate)


@functools.cache
def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    # Small radii still get a 17x17 support, as in the generator, so the anti-alias blur
    # acts on the same grid.
    if radius <= 8:
        support: np.ndarray = np.arange(-8, 8 + 1)
        blur_size = (3, 3)
    else:
        support = np.arange(-radius, radius + 1)
        blur_size = (5, 5)
    grid_x, grid_y = np.meshgrid(support, support)
    aliased = np.array(grid_x**2 + grid_y**2 <= radius**2, dtype=np.float32)
    aliased /= aliased.sum()
    kernel = cv2.GaussianBlur(aliased, ksize=blur_size, sigmaX=alias_blur)
    kernel.setflags(write=False)
    return kernel


def next_power_of_two(value: int) -> int:
    """Smallest power of two >= value (and >= 1)."""
    return 1 if value <= 1 else 1 << (int(value) - 1).bit_length()


def plasma_fractal(map_size: int, wibble_decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map of side ``map_size`` (a power of two), scaled to [0, 1]."""
    if map_size & (map_size - 1):
        raise ValueError(f"plasma map size must be a power of two, got {map_size}")
    height_map = np.empty((map_size, map_size), dtype=np.float64)
    height_map[0, 0] = 0
    step = map_size
    wibble = 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        # Squares: each centre gets the mean of its four corners.
        corners = height_map[0:map_size:step, 0:map_size:step]
        square_sum = corners + np.roll(corners, shift=-1, axis=0)
        square_sum += np.roll(square_sum, shift=-1, axis=1)
        height_map[half:map_size:step, half:map_size:step] = wibbled_mean(square_sum)
        # Diamonds: edge midpoints get the mean of their two corners and two centres.
        centres = height_map[half:map_size:step, half:map_size:step]
        corners = height_map[0:map_size:step, 0:map_size:step]
        left_sum = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        height_map[0:map_size:step, half:map_size:step] = wibbled_mean(left_sum)
        top_sum = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        height_map[half:map_size:step, 0:map_size:step] = wibbled_mean(top_sum)
        step //= 2
        wibble /= wibble_decay

    height_map -= height_map.min()
    return height_map / height_map.max()


@functools.lru_cache(maxsize=512)
def _zoom_operator(length: int, zoom_factor: float) -> np.ndarray:
    """One axis of ``clipped_zoom`` as a (length x length) matrix.

    Centre crop of ``ceil(length / zoom)``, linear zoom exactly as
    ``scipy.ndimage.zoom(order=1)`` does it (output size ``round(crop * zoom)``, first and
    last samples aligned), then a centre trim back to ``length``. Zoom blur applies up to
    26 zooms per image; two small matrix products are far cheaper than scipy's zoom.
    """
    crop = int(np.ceil(length / zoom_factor))
    start = (length - crop) // 2
    zoomed = int(round(crop * zoom_factor))
    step = (crop - 1) / (zoomed - 1) if zoomed > 1 else 1.0
    trim = (zoomed - length) // 2
    positions = (np.arange(length) + trim) * step
    lower = np.minimum(np.floor(positions).astype(np.int64), crop - 1)
    fraction = positions - lower
    upper = np.minimum(lower + 1, crop - 1)
    operator = np.zeros((length, length), dtype=np.float64)
    rows = np.arange(length)
    np.add.at(operator, (rows, start + lower), 1 - fraction)
    np.add.at(operator, (rows, start + upper), fraction)
    operator.setflags(write=False)
    return operator


def clipped_zoom(image: np.ndarray, zoom_factor: float) -> np.ndarray:
    """Zoom into the centre of an HxWxC array by ``zoom_factor`` (>= 1), keeping H and W.

    Same result as the generator's crop / ``scipy.ndimage.zoom(order=1)`` / trim (up to
    float rounding); the generator assumed square images, here each axis gets its own
    centred crop and trim.
    """
    height, width, channels = image.shape
    row_operator = _zoom_operator(height, float(zoom_factor))
    column_operator = _zoom_operator(width, float(zoom_factor))
    rows_zoomed = (row_operator @ image.reshape(height, width * channels)).reshape(height, width, channels)
    return np.matmul(column_operator, rows_zoomed).astype(image.dtype, copy=False)


def motion_blur_line(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage, in numpy (the generator called it through Wand).

    We avoid the Wand/ImageMagick dependency by reproducing its kernel: ``2*ceil(radius)+1``
    taps with one-sided Gaussian weights ``exp(-i^2 / 2 sigma^2)`` (normalised), tap ``i``
    sampling the pixel ``round(i*sin(angle))`` rows and ``round(i*cos(angle))`` columns
    away (ImageMagick's ``ceil(x - 0.5)`` rounding), with edge pixels repeated beyond the
    border (ImageMagick's default virtual-pixel method). Returns floats, not rounded.
    """
    taps = np.arange(2 * math.ceil(radius) + 1)
    weights = np.exp(-(taps.astype(np.float64) ** 2) / (2.0 * sigma * sigma))
    weights /= weights.sum()
    angle_radians = math.radians(angle)
    row_offsets = np.ceil(taps * math.sin(angle_radians) - 0.5).astype(np.int64)
    column_offsets = np.ceil(taps * math.cos(angle_radians) - 0.5).astype(np.int64)

    height, width = image.shape[:2]
    rows = np.arange(height)
    columns = np.arange(width)
    blurred = np.zeros(image.shape, dtype=np.float64)
    for weight, row_offset, column_offset in zip(weights, row_offsets, column_offsets):
        source_rows = np.clip(rows + row_offset, 0, height - 1)
        source_columns = np.clip(columns + column_offset, 0, width - 1)
        blurred += weight * image[source_rows[:, None], source_columns[None, :]]
    return blurred


def imagemagick_to_uint8(values: np.ndarray) -> np.ndarray:
    """8-bit pixels from 0..255 floats, as the generator got them back from ImageMagick.

    The generator ran MotionBlurImage through Wand on an 8-bit PNG and decoded the PNG that
    ImageMagick wrote. A Q16 build (checked against ImageMagick 6.9.11-60 Q16 through Wand:
    identical on 553,000 blurred values) rounds each blurred value to 16 bits,
    ``round(257 * value)``, and the PNG writer then truncates that to 8 bits
    (``quantum // 257``). The result is the floor of the value except within 1/514 below
    an integer; plain rounding would be one level too high on about half of the pixels.

    Args:
        values: Floats on the 0..255 scale (any shape).

    Returns:
        uint8 array of the same shape.
    """
    quantum = np.clip(np.floor(np.asarray(values, dtype=np.float64) * 257.0 + 0.5), 0, 65535)
    return (quantum // 257).astype(np.uint8)


def wrap_to_uint8(values: np.ndarray) -> np.ndarray:
    """``values.astype(np.uint8)`` as it behaved where the reference data sets were made.

    Casting floats outside 0..255 to uint8 is undefined in C and numpy leaves it to the
    platform; on x86 it truncates toward zero and keeps the low 8 bits, so 300.7 becomes
    44. We do that explicitly, so the result is the same on every platform.

    Args:
        values: Floats (any shape) within the int64 range.

    Returns:
        uint8 array of the same shape.
    """
    return (np.asarray(values).astype(np.int64) % 256).astype(np.uint8)


def shuffle_pixels_once(image: np.ndarray, max_delta: int, offsets: np.ndarray) -> None:
    """One in-place pass of glass blur's local pixel shuffle.

    The generator visits rows ``H-d .. d+1`` and, within each, columns ``W-d .. d+1``
    (both descending) and "swaps" pixel (h, w) with (h+dy, w+dx) via
    ``x[h, w], x[h2, w2] = x[h2, w2], x[h, w]``. On numpy arrays the right-hand side holds
    views, so that statement copies pixel (h2, w2) into (h, w) and leaves (h2, w2)
    unchanged. CIFAR-10-C (and the imagecorruptions package) were made with that effect,
    so we reproduce the copy, not a true swap.

    ``offsets[i, j] = (dx, dy)`` for the i-th visited row and j-th visited column, drawn
    from [-d, d). With d == 1 every source pixel is either the pixel itself or one the
    pass has not visited yet, so the sequential pass equals one vectorised gather of the
    pre-pass values; larger d falls back to the ordered loop.
    """
    height, width = image.shape[:2]
    rows = np.arange(height - max_delta, max_delta, -1)
    columns = np.arange(width - max_delta, max_delta, -1)
    if rows.size == 0 or columns.size == 0:
        return
    if max_delta == 1:
        source_rows = rows[:, None] + offsets[..., 1]
        source_columns = columns[None, :] + offsets[..., 0]
        image[rows[:, None], columns[None, :]] = image[source_rows, source_columns]
        return
    for row_position, row in enumerate(rows):
        for column_position, column in enumerate(columns):
            column_offset, row_offset = offsets[row_position, column_position]
            image[row, column] = image[row + row_offset, column + column_offset]


@functools.cache
def _frost_directory() -> Path:
    # find_spec locates the package without importing it (its import pulls in numba).
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the imagecorruptions package (which ships the frost images) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "frost"


@functools.cache
def _frost_photograph(index: int) -> np.ndarray:
    path = _frost_directory() / FROST_FILES[index]
    photograph = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photograph is None:
        raise RuntimeError(f"cannot read frost image {path}")
    photograph.setflags(write=False)
    return photograph  # BGR, as OpenCV reads it


@functools.cache
def _frost_layer(index: int) -> np.ndarray:
    layer = cv2.resize(_frost_photograph(index), (0, 0), fx=FROST_RESIZE_FACTOR, fy=FROST_RESIZE_FACTOR)
    layer = np.ascontiguousarray(layer[..., ::-1])  # BGR -> RGB
    layer.setflags(write=False)
    return layer


def _frost_layer_for(index: int, height: int, width: int) -> np.ndarray:
    layer = _frost_layer(index)
    if layer.shape[0] > height and layer.shape[1] > width:
        return layer
    # Images too large for the 0.2-scaled photograph (the generator only knew 32 px):
    # scale the photograph just enough that a random crop still has room to move.
    photograph = _frost_photograph(index)
    factor = max((height + 1) / photograph.shape[0], (width + 1) / photograph.shape[1])
    size = (
        max(math.ceil(photograph.shape[1] * factor), width + 1),
        max(math.ceil(photograph.shape[0] * factor), height + 1),
    )
    return cv2.resize(photograph, size, interpolation=cv2.INTER_LINEAR)[..., ::-1]


# ---------------------------------------------------------------- noise


@CIFAR_PROFILE.register("gaussian_noise")
def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise."""
    sigma = CIFAR_SEVERITIES["gaussian_noise"][severity - 1]
    x = _unit_float(image)
    return np.clip(x + rng.normal(scale=sigma, size=x.shape), 0, 1) * 255


@CIFAR_PROFILE.register("shot_noise")
def shot_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson (photon) noise; fewer photons per unit intensity at higher severity."""
    photons = CIFAR_SEVERITIES["shot_noise"][severity - 1]
    x = _unit_float(image)
    return np.clip(rng.poisson(x * photons) / photons, 0, 1) * 255


@CIFAR_PROFILE.register("impulse_noise")
def impulse_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise on individual channel values (skimage's random_noise)."""
    amount = CIFAR_SEVERITIES["impulse_noise"][severity - 1]
    x = skimage_util.random_noise(_unit_float(image), mode="s&p", rng=rng, amount=amount)
    return np.clip(x, 0, 1) * 255


@CIFAR_PROFILE.register("speckle_noise")
def speckle_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative Gaussian noise."""
    sigma = CIFAR_SEVERITIES["speckle_noise"][severity - 1]
    x = _unit_float(image)
    return np.clip(x + x * rng.normal(scale=sigma, size=x.shape), 0, 1) * 255


# ---------------------------------------------------------------- blur


@CIFAR_PROFILE.register("gaussian_blur")
def gaussian_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur."""
    sigma = CIFAR_SEVERITIES["gaussian_blur"][severity - 1]
    return np.clip(gaussian_filter(_unit_float(image), sigma), 0, 1) * 255


@CIFAR_PROFILE.register("glass_blur")
def glass_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur, locally shuffle pixels, blur again."""
    sigma, max_delta, iterations = CIFAR_SEVERITIES["glass_blur"][severity - 1]
    # The generator truncates the first blur back to uint8 before shuffling.
    shuffled = (gaussian_filter(_unit_float(image), sigma) * 255).astype(np.uint8)
    height, width = image.shape[:2]
    visited_rows = len(range(height - max_delta, max_delta, -1))
    visited_columns = len(range(width - max_delta, max_delta, -1))
    for _ in range(iterations):
        offsets = rng.integers(-max_delta, max_delta, size=(visited_rows, visited_columns, 2))
        shuffle_pixels_once(shuffled, max_delta, offsets)
    return np.clip(gaussian_filter(_unit_float(shuffled), sigma), 0, 1) * 255


@CIFAR_PROFILE.register("defocus_blur")
def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Convolution with an anti-aliased disk (out-of-focus lens)."""
    radius, alias_blur = CIFAR_SEVERITIES["defocus_blur"][severity - 1]
    # filter2D filters each channel separately, as the generator's per-channel loop did.
    blurred = cv2.filter2D(_unit_float(image), -1, _disk_kernel(radius, alias_blur))
    return np.clip(blurred, 0, 1) * 255


@CIFAR_PROFILE.register("motion_blur")
def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur along a line at a random angle in [-45, 45) degrees (numpy line kernel, no Wand)."""
    radius, sigma = CIFAR_SEVERITIES["motion_blur"][severity - 1]
    angle = rng.uniform(-45, 45)
    return imagemagick_to_uint8(motion_blur_line(image, radius, sigma, angle))


@CIFAR_PROFILE.register("zoom_blur")
def zoom_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Average of the image and centred zooms of it (camera moving toward the scene)."""
    zoom_factors = CIFAR_SEVERITIES["zoom_blur"][severity - 1]
    x = _unit_float(image, np.float32)
    total = np.zeros_like(x)
    for zoom_factor in zoom_factors:
        total += clipped_zoom(x, zoom_factor)
    return np.clip((x + total) / (len(zoom_factors) + 1), 0, 1) * 255


# ---------------------------------------------------------------- weather


@CIFAR_PROFILE.register("snow")
def snow(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Motion-blurred random flakes over a whitened image."""
    flake_mean, flake_spread, flake_zoom, flake_threshold, blur_radius, blur_sigma, image_weight = CIFAR_SEVERITIES[
        "snow"
    ][severity - 1]
    x = _unit_float(image, np.float32)
    flakes = rng.normal(loc=flake_mean, scale=flake_spread, size=x.shape[:2])
    flakes = clipped_zoom(flakes[..., np.newaxis], flake_zoom)[..., 0]
    flakes[flakes < flake_threshold] = 0
    # The generator passes the layer through an 8-bit PNG before and after ImageMagick.
    flakes_8bit = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)
    angle = rng.uniform(-135, -45)
    flakes = imagemagick_to_uint8(motion_blur_line(flakes_8bit, blur_radius, blur_sigma, angle)) / 255.0
    flakes = flakes[..., np.newaxis]

    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., np.newaxis]
    x = image_weight * x + (1 - image_weight) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255


@CIFAR_PROFILE.register("frost")
def frost(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blend with a random crop of one of the frost photographs shipped by imagecorruptions."""
    image_weight, frost_weight = CIFAR_SEVERITIES["frost"][severity - 1]
    height, width = image.shape[:2]
    layer = _frost_layer_for(int(rng.integers(len(FROST_FILES))), height, width)
    # randint's exclusive upper bound: the generator never picks the last offset; kept.
    top = int(rng.integers(0, layer.shape[0] - height))
    left = int(rng.integers(0, layer.shape[1] - width))
    crop = layer[top : top + height, left : left + width]
    return np.clip(image_weight * image.astype(np.float64) + frost_weight * crop, 0, 255)


@CIFAR_PROFILE.register("fog")
def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add a plasma-fractal haze, then rescale to keep the brightest value."""
    strength, wibble_decay = CIFAR_SEVERITIES["fog"][severity - 1]
    height, width = image.shape[:2]
    x = _unit_float(image)
    max_value = x.max()
    haze = plasma_fractal(next_power_of_two(max(height, width)), wibble_decay, rng)[:height, :width]
    x = x + strength * haze[..., np.newaxis]
    return np.clip(x * max_value / (max_value + strength), 0, 1) * 255


def spatter_wetness(liquid: np.ndarray, intensity: float) -> np.ndarray:
    """The water branch of spatter: embossed distance-to-drop-edge map of a liquid layer,
    scaled to ``intensity`` (shared with the spatter perturbation sequence)."""
    # No clipping: the generator cast liquid * 255 to uint8 unclipped, so drops thicker
    # than 1 (mostly at severity 3, whose spread is 0.3) wrap around to dark values.
    liquid_8bit = wrap_to_uint8(liquid * 255)
    distance = 255 - cv2.Canny(liquid_8bit, 50, 150)
    distance = cv2.distanceTransform(distance, cv2.DIST_L2, 5)
    _, distance = cv2.threshold(distance, 20, 20, cv2.THRESH_TRUNC)
    distance = cv2.blur(distance, (3, 3)).astype(np.uint8)
    distance = cv2.equalizeHist(distance)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
    distance = cv2.filter2D(distance, cv2.CV_8U, emboss)
    distance = cv2.blur(distance, (3, 3)).astype(np.float32)
    wetness = liquid_8bit * distance
    peak = wetness.max()
    # An image without any drop would divide 0 by 0 in the generator; leave it clean.
    return wetness / peak * intensity if peak > 0 else wetness


@CIFAR_PROFILE.register("spatter")
def spatter(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Water drops (severities 1-3) or mud (4-5) splashed over the image."""
    mean, spread, smoothing, threshold, intensity, is_mud = CIFAR_SEVERITIES["spatter"][severity - 1]
    x = _unit_float(image, np.float32)
    liquid = gaussian_filter(rng.normal(loc=mean, scale=spread, size=x.shape[:2]), smoothing)
    liquid[liquid < threshold] = 0

    if not is_mud:
        wetness = spatter_wetness(liquid, intensity)
        # Pale turquoise (175, 238, 238). The generator builds it as "BGR" but adds it to
        # the RGB image channel by channel, so it lands in RGB order; we do the same.
        water = np.array([175, 238, 238], dtype=np.float32) / 255
        return np.clip(x + wetness[..., np.newaxis] * water, 0, 1) * 255

    mud_mask = gaussian_filter((liquid > threshold).astype(np.float32), intensity)
    mud_mask[mud_mask < 0.8] = 0
    mud = np.array([63, 42, 20], dtype=np.float32) / 255 * mud_mask[..., np.newaxis]
    x = x * (1 - mud_mask[..., np.newaxis])
    return np.clip(x + mud, 0, 1) * 255


# ---------------------------------------------------------------- digital


@CIFAR_PROFILE.register("brightness")
def brightness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Raise the HSV value channel."""
    shift = CIFAR_SEVERITIES["brightness"][severity - 1]
    hsv = skimage_color.rgb2hsv(_unit_float(image))
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + shift, 0, 1)
    return np.clip(skimage_color.hsv2rgb(hsv), 0, 1) * 255


@CIFAR_PROFILE.register("saturate")
def saturate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Scale and shift the HSV saturation channel."""
    scale, shift = CIFAR_SEVERITIES["saturate"][severity - 1]
    hsv = skimage_color.rgb2hsv(_unit_float(image))
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * scale + shift, 0, 1)
    return np.clip(skimage_color.hsv2rgb(hsv), 0, 1) * 255


@CIFAR_PROFILE.register("contrast")
def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pull every channel toward its mean."""
    factor = CIFAR_SEVERITIES["contrast"][severity - 1]
    x = _unit_float(image)
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * factor + means, 0, 1) * 255


@CIFAR_PROFILE.register("elastic_transform")
def elastic_transform(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Random affine warp followed by a smooth random displacement field."""
    # The generator scales these by its image size (32); we use the shorter side.
    size = min(image.shape[:2])
    alpha, sigma, affine_jitter = (size * value for value in CIFAR_SEVERITIES["elastic_transform"][severity - 1])
    x = _unit_float(image, np.float32)
    shape = x.shape
    height, width = shape[:2]

    # Like the generator, the (row, column) centre is used as OpenCV's (x, y) point.
    centre = np.array([height, width], dtype=np.float32) // 2
    half_side = min(height, width) // 3
    source_points = np.array(
        [centre + half_side, [centre[0] + half_side, centre[1] - half_side], centre - half_side], dtype=np.float32
    )
    target_points = source_points + rng.uniform(-affine_jitter, affine_jitter, size=source_points.shape).astype(
        np.float32
    )
    affine = cv2.getAffineTransform(source_points, target_points)
    x = cv2.warpAffine(x, affine, (width, height), borderMode=cv2.BORDER_REFLECT_101)

    # Drawn even when alpha is 0 (severity 1), so the draw order matches the generator.
    dx = (gaussian_filter(rng.uniform(-1, 1, size=(height, width)), sigma, mode="reflect", truncate=3) * alpha).astype(
        np.float32
    )
    dy = (gaussian_filter(rng.uniform(-1, 1, size=(height, width)), sigma, mode="reflect", truncate=3) * alpha).astype(
        np.float32
    )
    grid_column, grid_row, grid_channel = np.meshgrid(np.arange(width), np.arange(height), np.arange(shape[2]))
    coordinates = (
        (grid_row + dy[..., np.newaxis]).reshape(-1),
        (grid_column + dx[..., np.newaxis]).reshape(-1),
        grid_channel.reshape(-1),
    )
    warped = ndimage.map_coordinates(x, coordinates, order=1, mode="reflect").reshape(shape)
    return np.clip(warped, 0, 1) * 255


@CIFAR_PROFILE.register("pixelate")
def pixelate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Box-downsample then box-upsample back (PIL)."""
    factor = CIFAR_SEVERITIES["pixelate"][severity - 1]
    height, width = image.shape[:2]
    small_size = (max(1, int(width * factor)), max(1, int(height * factor)))
    picture = (
        Image.fromarray(image).resize(small_size, Image.Resampling.BOX).resize((width, height), Image.Resampling.BOX)
    )
    return np.array(picture)


@CIFAR_PROFILE.register("jpeg_compression")
def jpeg_compression(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Round trip through PIL's JPEG encoder at a low quality."""
    quality = CIFAR_SEVERITIES["jpeg_compression"][severity - 1]
    buffer = BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.array(decoded.convert("RGB"))
