"""Tests for the corruption engine (corruptions/)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

import corruptions
from corruptions import (
    COMMON_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    PROFILES,
    SEVERITIES,
    cifar_profile,
    corrupt_batch,
    corrupt_image,
    corrupt_many,
    corruption_names,
    engine,
)
from corruptions.errors import CorruptionError as UserError

ALL = COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient plus noise texture, so blurs and noises both have an effect."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    base = np.stack([rows * 180 / height, columns * 180 / width, (rows + columns) * 90 / (height + width)], -1)
    return np.clip(base + 40 + rng.integers(0, 60, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def small_images() -> list[np.ndarray]:
    # Square CIFAR size, a non-square one, and a larger one that needs an upscaled frost layer.
    return [textured_image(32, 32, 0), textured_image(24, 40, 1), textured_image(72, 96, 2)]


# ---------------------------------------------------------------- vocabulary


def test_names_and_constants() -> None:
    assert COMMON_CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
        "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
        "elastic_transform", "pixelate", "jpeg_compression",
    )  # fmt: skip
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert SEVERITIES == (1, 2, 3, 4, 5)
    assert PROFILES == ("cifar", "imagenet")
    assert corruption_names("common") == list(COMMON_CORRUPTIONS)
    assert corruption_names("extra") == list(EXTRA_CORRUPTIONS)
    assert corruption_names() == list(ALL)
    with pytest.raises(UserError, match="bogus"):
        corruption_names("bogus")


# ---------------------------------------------------------------- shapes, dtypes, determinism


@pytest.mark.parametrize("corruption", ALL)
def test_cifar_profile_every_severity(corruption: str, small_images: list[np.ndarray]) -> None:
    for image in small_images:
        for severity in SEVERITIES:
            first = corrupt_image(image, corruption, severity, seed=3, index=7)
            again = corrupt_image(image, corruption, severity, seed=3, index=7)
            assert first.dtype == np.uint8 and first.shape == image.shape
            assert first.tobytes() == again.tobytes()
    # The input is never modified in place.
    assert small_images[0].tobytes() == textured_image(32, 32, 0).tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("corruption", ALL)
def test_imagenet_profile_every_severity(corruption: str) -> None:
    image = textured_image(64, 64, 4)
    np.random.seed(123)
    caller_state = np.random.get_state()
    for severity in SEVERITIES:
        first = corrupt_image(image, corruption, severity, profile="imagenet", index=2)
        again = corrupt_image(image, corruption, severity, profile="imagenet", index=2)
        assert first.dtype == np.uint8 and first.shape == image.shape
        assert first.tobytes() == again.tobytes()
    # Seeding around imagecorruptions leaves the caller's global random state untouched.
    after = np.random.get_state()
    assert after[0] == caller_state[0] and np.array_equal(after[1], caller_state[1]) and after[2:] == caller_state[2:]


CONDITIONS = [("gaussian_noise", 3), ("glass_blur", 5), ("frost", 2), ("fog", 4), ("spatter", 5), ("snow", 3)]


@pytest.mark.slow
def test_workers_do_not_change_results() -> None:
    images = np.stack([textured_image(32, 32, seed) for seed in range(6)])
    in_process = corrupt_many(images, CONDITIONS, seed=5, workers=1)
    pooled = corrupt_many(images, CONDITIONS, seed=5, workers=2)
    assert set(in_process) == set(pooled) == set(CONDITIONS)
    for condition in CONDITIONS:
        assert in_process[condition].tobytes() == pooled[condition].tobytes()
    single = corrupt_batch(images, "frost", 2, seed=5, workers=2)
    assert single.tobytes() == in_process[("frost", 2)].tobytes()


def test_result_does_not_depend_on_the_rest_of_the_batch() -> None:
    images = np.stack([textured_image(32, 32, seed) for seed in range(6)])
    full = corrupt_batch(images, "shot_noise", 4, seed=1)
    subset = corrupt_batch(images[2:5], "shot_noise", 4, seed=1, indices=np.arange(2, 5))
    assert subset.tobytes() == full[2:5].tobytes()
    alone = corrupt_image(images[3], "shot_noise", 4, seed=1, index=3)
    assert alone.tobytes() == full[3].tobytes()


def test_seed_and_index_change_the_noise() -> None:
    image = textured_image(32, 32)
    base = corrupt_image(image, "gaussian_noise", 3, seed=0, index=0)
    assert not np.array_equal(base, corrupt_image(image, "gaussian_noise", 3, seed=1, index=0))
    assert not np.array_equal(base, corrupt_image(image, "gaussian_noise", 3, seed=0, index=1))
    imagenet = corrupt_image(textured_image(64, 64), "gaussian_noise", 3, profile="imagenet", seed=0)
    assert not np.array_equal(
        imagenet, corrupt_image(textured_image(64, 64), "gaussian_noise", 3, profile="imagenet", seed=1)
    )


# ---------------------------------------------------------------- effect of severity, known values


@pytest.mark.parametrize("corruption", ["gaussian_noise", "contrast", "defocus_blur", "shot_noise", "pixelate"])
def test_effect_grows_with_severity(corruption: str) -> None:
    image = textured_image(32, 32, 9)
    distances = [
        np.abs(corrupt_image(image, corruption, severity).astype(np.int64) - image).mean() for severity in SEVERITIES
    ]
    assert all(weaker < stronger for weaker, stronger in zip(distances, distances[1:])), distances


def test_contrast_known_value() -> None:
    # Channel ch, column c: 100 + 2c + 10ch, so the channel mean is 131 + 10ch and
    # severity 1 (factor 0.75) gives 131 + 10ch + 0.75 (2c - 31) = 107.75 + 1.5c + 10ch,
    # truncated to uint8 as the CIFAR-10-C generator does.
    columns = np.arange(32)
    image = np.empty((32, 32, 3), dtype=np.uint8)
    for channel in range(3):
        image[:, :, channel] = 100 + 2 * columns + 10 * channel
    expected = np.empty_like(image)
    for channel in range(3):
        expected[:, :, channel] = np.floor(107.75 + 1.5 * columns + 10 * channel)
    assert np.array_equal(corrupt_image(image, "contrast", 1), expected)


def test_glass_blur_shuffle_matches_the_reference_loop() -> None:
    rng = np.random.default_rng(0)
    for max_delta in (1, 2):
        image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        rows = range(12 - max_delta, max_delta, -1)
        columns = range(10 - max_delta, max_delta, -1)
        offsets = rng.integers(-max_delta, max_delta, size=(len(rows), len(columns), 2))
        reference = image.copy()
        for row_position, row in enumerate(rows):
            for column_position, column in enumerate(columns):
                dx, dy = offsets[row_position, column_position]
                # The generator's statement, verbatim in effect (numpy views make it a copy).
                reference[row, column], reference[row + dy, column + dx] = (
                    reference[row + dy, column + dx],
                    reference[row, column],
                )
        ours = image.copy()
        cifar_profile.shuffle_pixels_once(ours, max_delta, offsets)
        assert np.array_equal(ours, reference)


def test_motion_blur_follows_the_angle() -> None:
    impulse = np.zeros((15, 15), dtype=np.float64)
    impulse[7, 10] = 255
    horizontal = cifar_profile.motion_blur_line(impulse, radius=3, sigma=2, angle=0)
    assert np.isclose(horizontal.sum(), 255)
    assert np.count_nonzero(horizontal[7]) == 7 and np.count_nonzero(horizontal) == 7
    # Tap i reads the pixel i columns to the right, so the streak extends to the left.
    assert horizontal[7, 10] == horizontal[7].max() and horizontal[7, 4] > 0 and horizontal[7, 11] == 0
    vertical = cifar_profile.motion_blur_line(impulse, radius=3, sigma=2, angle=90)
    assert np.count_nonzero(vertical[:, 10]) == 7 and np.count_nonzero(vertical) == 7


def test_plasma_fractal_size_follows_the_image() -> None:
    assert cifar_profile.next_power_of_two(32) == 32 and cifar_profile.next_power_of_two(33) == 64
    fractal = cifar_profile.plasma_fractal(64, 2, np.random.default_rng(0))
    assert fractal.shape == (64, 64) and fractal.min() == 0 and fractal.max() == 1


# ---------------------------------------------------------------- errors and progress


def test_bad_arguments_raise_user_errors() -> None:
    image = textured_image(32, 32)
    with pytest.raises(UserError, match="unknown corruption 'foo'"):
        corrupt_image(image, "foo", 1)
    for severity in (0, 6, 2.5, True, "3"):
        with pytest.raises(UserError, match="gaussian_noise"):
            corrupt_image(image, "gaussian_noise", severity)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="profile 'svhn'"):
        corrupt_image(image, "fog", 1, profile="svhn")
    with pytest.raises(UserError, match="dtype uint8"):
        corrupt_image(image.astype(np.float32), "fog", 1)
    with pytest.raises(UserError, match="shape"):
        corrupt_image(image[..., 0], "fog", 1)
    with pytest.raises(UserError, match="shape"):
        corrupt_batch(image, "fog", 1)
    with pytest.raises(UserError, match="at least 32x32"):
        corrupt_image(image[:16, :16], "fog", 1, profile="imagenet")
    with pytest.raises(UserError, match="seed"):
        corrupt_image(image, "fog", 1, seed=-1)
    with pytest.raises(UserError, match="index"):
        corrupt_image(image, "fog", 1, index=-1)
    with pytest.raises(UserError, match="indices"):
        corrupt_batch(image[None], "fog", 1, indices=np.arange(2))
    with pytest.raises(UserError, match="unknown corruption 'mist'"):
        corrupt_many(image[None], [("fog", 1), ("mist", 2)])
    with pytest.raises(UserError, match="severity"):
        corrupt_many(image[None], [("fog", 9)])


def test_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    images = np.stack([textured_image(32, 32, seed) for seed in range(2)])
    result = corrupt_many(images, [("contrast", 2), ("contrast", 2), ("brightness", 1)], progress=True)
    assert sorted(result) == [("brightness", 1), ("contrast", 2)]
    captured = capsys.readouterr()
    assert captured.out == "" and "corrupting" in captured.err
    assert corruptions.corrupt_many(images[:0], [("fog", 1)])[("fog", 1)].shape == (0, 32, 32, 3)


def test_clipped_zoom_matches_scipy_crop_zoom_trim() -> None:
    from scipy import ndimage

    def generator_zoom(image: np.ndarray, zoom_factor: float) -> np.ndarray:
        height, width = image.shape[:2]
        crop_height, crop_width = int(np.ceil(height / zoom_factor)), int(np.ceil(width / zoom_factor))
        top, left = (height - crop_height) // 2, (width - crop_width) // 2
        zoomed = ndimage.zoom(
            image[top : top + crop_height, left : left + crop_width], (zoom_factor, zoom_factor, 1), order=1
        )
        trim_top, trim_left = (zoomed.shape[0] - height) // 2, (zoomed.shape[1] - width) // 2
        return zoomed[trim_top : trim_top + height, trim_left : trim_left + width]

    rng = np.random.default_rng(0)
    for shape in [(32, 32, 3), (24, 40, 3), (32, 32, 1)]:
        image = rng.random(shape).astype(np.float32)
        for zoom_factor in [1.0, 1.01, 1.07, 1.13, 1.25, 1.75, 2.25]:
            ours = cifar_profile.clipped_zoom(image, zoom_factor)
            assert ours.dtype == image.dtype
            np.testing.assert_allclose(ours, generator_zoom(image, zoom_factor), atol=1e-6)


# ---------------------------------------------------------------- 8-bit conversions as the generator made them
#
# make_cifar_c.py (hendrycks/robustness) gets motion_blur and snow's flake layer back from
# ImageMagick as 8-bit PNGs, and casts spatter's liquid layer with an unclipped
# ``(liquid * 255).astype(np.uint8)``. The expected values below are computed from those
# formulas written out here, independently of corruptions/.


def imagemagick_8bit(value: float) -> int:
    """ImageMagick Q16: round to 16 bits (ClampToQuantum), then the PNG writer keeps quantum // 257."""
    quantum = min(max(math.floor(value * 257 + 0.5), 0), 65535)
    return quantum // 257


def x86_uint8_cast(value: float) -> int:
    """numpy's float -> uint8 cast on x86: truncate toward zero, keep the low 8 bits."""
    return int(value) % 256


def reference_motion_blur_value(
    image: np.ndarray, row: int, column: int, channel: int, radius: float, sigma: float, angle: float
) -> float:
    """ImageMagick's MotionBlurImage at one pixel: one-sided Gaussian taps along the angle, edges repeated."""
    width = 2 * math.ceil(radius) + 1
    weights = [math.exp(-(tap * tap) / (2 * sigma * sigma)) for tap in range(width)]
    total = sum(weights)
    value = 0.0
    for tap, weight in enumerate(weights):
        source_row = min(max(row + math.ceil(tap * math.sin(math.radians(angle)) - 0.5), 0), image.shape[0] - 1)
        source_column = min(max(column + math.ceil(tap * math.cos(math.radians(angle)) - 0.5), 0), image.shape[1] - 1)
        value += weight / total * float(image[source_row, source_column, channel])
    return value


def test_imagemagick_and_x86_conversions_on_constructed_values() -> None:
    values = np.array([0.0, 0.4, 12.5, 172.4, 172.9979, 172.9981, 254.999, 255.0, 300.0, -3.0])
    # Floor, except within 1/514 below the next integer (172.9981 -> 173).
    assert cifar_profile.imagemagick_to_uint8(values).tolist() == [imagemagick_8bit(v) for v in values]
    assert cifar_profile.imagemagick_to_uint8(values).tolist() == [0, 0, 12, 172, 172, 173, 255, 255, 255, 0]
    wrapping = np.array([0.0, 175.95, 255.9, 256.0, 300.7, 511.99, 600.0, -1.5])
    assert cifar_profile.wrap_to_uint8(wrapping).tolist() == [x86_uint8_cast(v) for v in wrapping]
    assert cifar_profile.wrap_to_uint8(wrapping).tolist() == [0, 175, 255, 0, 44, 255, 88, 255]


def test_motion_blur_matches_imagemagick_output() -> None:
    # ImageMagick 6.9.11-60 Q16 through Wand (the generator's path: PIL PNG -> MotionImage.
    # motion_blur(radius=6, sigma=2, angle=30) -> make_blob -> cv2.imdecode -> RGB) on this
    # 12x12 image gave these bytes. Rounding instead of ImageMagick's conversion matches
    # only about half of them.
    rows, columns, channels = np.mgrid[0:12, 0:12, 0:3]
    image = ((rows * 37 + columns * 91 + channels * 53 + rows * columns * 7) % 256).astype(np.uint8)
    imagemagick = bytes.fromhex(
        "5b598d81ab796da24a3e729c90a99387846458819aaa74759f3c716389be9c76abba40755286afaa78aaa5507974a97773a44f4a74"
        "a8a46ea29e3e726c866ebf5938b142767d62967ea87678a9545780999b818284588d8fa98e9091656780b1b56b918f6e947b658b9e"
        "3359a16fa0a9547e87a0868e8f646d866c74764a53889ea690868c6c86957f6590705661967b679899547d96a78c8d9d718b978081"
        "86657f8a747579597280b56b659a7a5b907982b74c9092667d967b9294687f957d958a6a659680638c6c639882578c6c6ca18b70a5"
        "85457aaf8a5e78927b7c8f6f84a18b819f6393b16791af6ea3776ca14c80b53d71a63b6fa4679bd05770a17b7ca55a8a74658e5373"
        "a85e78ad6c917b7195568bb0578ca778ad5e84b9385e936999837ba565907a709c5c9171679c5388715e92537fb35e88a080ae477c"
        "bf4e839b7fb4937b7da4659a8176906a9e547b9171a34d829675aa53839d7ca1577ea3838a6398bd41767172a764957f849171a75c"
        "91a4806a6f7c5c92477c8f6a9f5c64998d624ca77c5c875c918a8b6b81679ca65e938283b8795f949e568b7b7bb072578c984c8183"
        "588d972156cf0439"
    )
    blurred = cifar_profile.motion_blur_line(image, 6, 2, 30)
    assert cifar_profile.imagemagick_to_uint8(blurred).tobytes() == imagemagick
    assert np.clip(np.rint(blurred), 0, 255).astype(np.uint8).tobytes() != imagemagick


def test_motion_blur_corruption_uses_imagemagicks_conversion() -> None:
    image = textured_image(32, 32, 4)
    severity, radius, sigma = 4, 8, 2
    ours = corrupt_image(image, "motion_blur", severity, seed=5, index=2)
    angle = engine.image_generator(5, 2, "motion_blur", severity).uniform(-45, 45)
    pixels = [(0, 0, 0), (5, 17, 1), (16, 16, 2), (31, 3, 0), (20, 31, 1), (9, 9, 2), (27, 12, 0), (13, 25, 1)]
    floats = [reference_motion_blur_value(image, r, c, ch, radius, sigma, angle) for r, c, ch in pixels]
    assert [int(ours[r, c, ch]) for r, c, ch in pixels] == [imagemagick_8bit(value) for value in floats]
    # The pixels were chosen so that rounding would differ somewhere.
    assert [imagemagick_8bit(value) for value in floats] != [round(value) for value in floats]


def test_snow_flakes_pass_through_imagemagicks_conversion() -> None:
    image = textured_image(32, 32, 6)
    severity = 3
    mean, spread, zoom, threshold, radius, sigma, image_weight = (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9)
    ours = corrupt_image(image, "snow", severity, seed=1, index=0)

    # make_cifar_c.py's snow, replaying the same random draws.
    rng = engine.image_generator(1, 0, "snow", severity)
    flakes = rng.normal(loc=mean, scale=spread, size=(32, 32))
    flakes = cifar_profile.clipped_zoom(flakes[..., np.newaxis], zoom)[..., 0]
    flakes[flakes < threshold] = 0
    flakes_8bit = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)
    angle = rng.uniform(-135, -45)
    layer = np.zeros((32, 32))
    for row in range(32):
        for column in range(32):
            flake = reference_motion_blur_value(flakes_8bit[..., np.newaxis], row, column, 0, radius, sigma, angle)
            layer[row, column] = imagemagick_8bit(flake) / 255.0
    x = image.astype(np.float32) / 255.0
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., np.newaxis]
    x = image_weight * x + (1 - image_weight) * np.maximum(x, gray * 1.5 + 0.5)
    layer = layer[..., np.newaxis]
    expected = (np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255).astype(np.uint8)
    assert ours.tobytes() == expected.tobytes()


def reference_spatter_water(image: np.ndarray, liquid: np.ndarray, intensity: float) -> np.ndarray:
    """make_cifar_c.py's water branch after the liquid layer, with the cast written out."""
    cast = [x86_uint8_cast(value) for value in (liquid * 255).ravel()]
    liquid_8bit = np.array(cast, dtype=np.uint8).reshape(liquid.shape)
    distance = cv2.distanceTransform(255 - cv2.Canny(liquid_8bit, 50, 150), cv2.DIST_L2, 5)
    _, distance = cv2.threshold(distance, 20, 20, cv2.THRESH_TRUNC)
    distance = cv2.equalizeHist(cv2.blur(distance, (3, 3)).astype(np.uint8))
    distance = cv2.filter2D(distance, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32))
    distance = cv2.blur(distance, (3, 3)).astype(np.float32)
    wetness = liquid_8bit * distance
    wetness /= wetness.max()
    wetness *= intensity
    water = np.array([175, 238, 238], dtype=np.float32) / 255
    x = image.astype(np.float32) / 255
    return (np.clip(x + wetness[..., np.newaxis] * water, 0, 1) * 255).astype(np.uint8)


def test_spatter_wetness_wraps_like_the_generator_on_a_constructed_layer() -> None:
    # Two drops; the centre of the second is thicker than 1, so liquid * 255 passes 255.
    rows, columns = np.mgrid[0:32, 0:32]
    thick = 1.3 - ((rows - 20) ** 2 + (columns - 18) ** 2) / 40
    liquid = np.maximum(thick, 0.9 - ((rows - 8) ** 2 + (columns - 8) ** 2) / 60)
    liquid[liquid < 0.69] = 0
    assert (liquid * 255 > 256).sum() > 20
    image = textured_image(32, 32, 8)
    water = np.array([175, 238, 238], dtype=np.float32) / 255
    wet = image.astype(np.float32) / 255 + cifar_profile.spatter_wetness(liquid, 0.5)[..., np.newaxis] * water
    ours = (np.clip(wet, 0, 1) * 255).astype(np.uint8)
    assert ours.tobytes() == reference_spatter_water(image, liquid, 0.5).tobytes()
    clipped = reference_spatter_water(image, np.clip(liquid, 0, 1), 0.5)
    assert clipped.tobytes() != ours.tobytes()


def test_spatter_severity_3_wraps_like_the_generator() -> None:
    image = textured_image(32, 32, 3)
    rng = np.random.default_rng(9)  # a draw whose liquid layer passes 1 at one pixel
    ours = np.clip(cifar_profile.spatter(image, 3, rng), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(9)
    liquid = ndimage.gaussian_filter(rng.normal(loc=0.65, scale=0.3, size=(32, 32)), 1, mode="nearest", truncate=4.0)
    liquid[liquid < 0.69] = 0
    assert liquid.max() > 1
    assert ours.tobytes() == reference_spatter_water(image, liquid, 0.5).tobytes()
    assert ours.tobytes() != reference_spatter_water(image, np.clip(liquid, 0, 1), 0.5).tobytes()


@pytest.mark.parametrize("corruption", ALL)
def test_cifar_profile_values_need_no_clipping(corruption: str) -> None:
    # The generator saved np.uint8(corruption(image)) without clipping; the engine clips
    # first. That is the same only while every value lies in [0, 256).
    function = cifar_profile.CIFAR_PROFILE.get(corruption)
    images = [textured_image(32, 32, 10), np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)]
    for seed, image in enumerate(images):
        for severity in SEVERITIES:
            values = np.asarray(function(image, severity, np.random.default_rng(seed)), dtype=np.float64)
            assert values.min() >= 0 and values.max() < 256, (corruption, severity, seed)
