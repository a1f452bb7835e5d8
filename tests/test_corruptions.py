"""Tests for the corruption engine (corruptions/)."""
from __future__ import annotations

import numpy as np
import pytest

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
    assert not np.array_equal(imagenet, corrupt_image(textured_image(64, 64), "gaussian_noise", 3, profile="imagenet", seed=1))


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
        zoomed = ndimage.zoom(image[top : top + crop_height, left : left + crop_width], (zoom_factor, zoom_factor, 1), order=1)
        trim_top, trim_left = (zoomed.shape[0] - height) // 2, (zoomed.shape[1] - width) // 2
        return zoomed[trim_top : trim_top + height, trim_left : trim_left + width]

    rng = np.random.default_rng(0)
    for shape in [(32, 32, 3), (24, 40, 3), (32, 32, 1)]:
        image = rng.random(shape).astype(np.float32)
        for zoom_factor in [1.0, 1.01, 1.07, 1.13, 1.25, 1.75, 2.25]:
            ours = cifar_profile.clipped_zoom(image, zoom_factor)
            assert ours.dtype == image.dtype
            np.testing.assert_allclose(ours, generator_zoom(image, zoom_factor), atol=1e-6)
