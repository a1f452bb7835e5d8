"""Tests for the ImageNet-P-style perturbation sequences and shift pairs (corruptions/perturbations.py)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import color as skimage_color

from corruptions import perturbations
from corruptions.cifar_profile import motion_blur_line
from corruptions.errors import CorruptionError as UserError
from corruptions.perturbations import (
    ALL_PERTURBATIONS,
    EXTRA_PERTURBATIONS,
    MAIN_PERTURBATIONS,
    NOISE_PERTURBATIONS,
    PROFILES,
    frame_count,
    perturb_many,
    perturbation_names,
    perturbation_sequence,
    shift_pairs,
)

GRADUAL = tuple(name for name in ALL_PERTURBATIONS if name not in NOISE_PERTURBATIONS)
# Perturbations that draw random numbers (the others are fixed functions of the image).
RANDOM = ("gaussian_noise", "shot_noise", "speckle_noise", "snow", "spatter")
# Image side per profile in these tests: the imagenet profile works at any size.
TEST_SIDE = {"cifar": 32, "imagenet": 64}
EXPECTED_FRAMES = {
    "cifar": {name: 31 for name in ALL_PERTURBATIONS} | {"motion_blur": 21, "translate": 16},
    "imagenet": {name: 31 for name in ALL_PERTURBATIONS} | {"translate": 41},
}


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient plus noise texture, so every perturbation has an effect."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    base = np.stack([rows * 180 / height, columns * 180 / width, (rows + columns) * 90 / (height + width)], -1)
    return np.clip(base + 40 + rng.integers(0, 60, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.stack([textured_image(32, 32, seed) for seed in range(4)])


def mean_absolute_difference(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first.astype(np.float64) - second.astype(np.float64)).mean())


# ---------------------------------------------------------------- vocabulary


def test_names_and_constants() -> None:
    assert MAIN_PERTURBATIONS == (
        "gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
        "brightness", "translate", "rotate", "tilt", "scale",
    )  # fmt: skip
    assert EXTRA_PERTURBATIONS == ("speckle_noise", "gaussian_blur", "spatter", "shear")
    assert NOISE_PERTURBATIONS == frozenset({"gaussian_noise", "shot_noise", "speckle_noise"})
    assert PROFILES == ("cifar", "imagenet")
    assert perturbation_names("main") == list(MAIN_PERTURBATIONS)
    assert perturbation_names("extra") == list(EXTRA_PERTURBATIONS)
    assert perturbation_names() == list(MAIN_PERTURBATIONS + EXTRA_PERTURBATIONS)
    with pytest.raises(UserError, match="bogus"):
        perturbation_names("bogus")


# ---------------------------------------------------------------- shapes and frame counts


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("perturbation", ALL_PERTURBATIONS)
def test_frame_count_and_shape(perturbation: str, profile: str) -> None:
    side = TEST_SIDE[profile]
    image = textured_image(side, side)
    frames = perturbation_sequence(image, perturbation, profile=profile)
    assert frame_count(perturbation, profile) == EXPECTED_FRAMES[profile][perturbation]
    assert frames.shape == (EXPECTED_FRAMES[profile][perturbation], side, side, 3)
    assert frames.dtype == np.uint8


@pytest.mark.parametrize("perturbation", ALL_PERTURBATIONS)
def test_non_square_and_tiny_images(perturbation: str) -> None:
    for shape in ((24, 40, 3), (3, 5, 3)):
        image = textured_image(*shape[:2])
        frames = perturbation_sequence(image, perturbation, profile="imagenet")
        assert frames.shape == (frame_count(perturbation, "imagenet"),) + shape


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("perturbation", ALL_PERTURBATIONS)
def test_same_call_gives_same_bytes(perturbation: str) -> None:
    image = textured_image(32, 32)
    first = perturbation_sequence(image, perturbation, seed=3, index=7)
    second = perturbation_sequence(image, perturbation, seed=3, index=7)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("perturbation", RANDOM)
def test_random_draws_depend_on_index_and_seed(perturbation: str) -> None:
    image = textured_image(32, 32)
    reference = perturbation_sequence(image, perturbation, seed=0, index=0)
    assert not np.array_equal(reference, perturbation_sequence(image, perturbation, seed=0, index=1))
    assert not np.array_equal(reference, perturbation_sequence(image, perturbation, seed=1, index=0))
    other_profile = perturbation_sequence(image, perturbation, seed=0, index=0, profile="imagenet")
    assert not np.array_equal(reference, other_profile)


@pytest.mark.slow
def test_perturb_many_matches_single_sequences_for_any_workers(batch: np.ndarray) -> None:
    names = list(ALL_PERTURBATIONS)
    indices = np.array([10, 3, 42, 7])
    serial = perturb_many(batch, names, seed=5, indices=indices, workers=1)
    parallel = perturb_many(batch, names, seed=5, indices=indices, workers=2)
    assert list(serial) == names
    for name in names:
        assert serial[name].shape == (len(batch), frame_count(name), 32, 32, 3)
        assert np.array_equal(serial[name], parallel[name]), name
        for position in (0, 2):
            single = perturbation_sequence(batch[position], name, seed=5, index=int(indices[position]))
            assert np.array_equal(serial[name][position], single), name


def test_perturb_many_subset_independence(batch: np.ndarray) -> None:
    names = ["gaussian_noise", "snow", "spatter", "rotate"]
    full = perturb_many(batch, names, seed=2, difficulty=2)
    subset = perturb_many(batch[[3, 1]], names, seed=2, difficulty=2, indices=np.array([3, 1]))
    only_snow = perturb_many(batch, ["snow"], seed=2, difficulty=2)
    for name in names:
        assert np.array_equal(full[name][[3, 1]], subset[name]), name
    assert np.array_equal(full["snow"], only_snow["snow"])


def test_perturb_many_empty_inputs(batch: np.ndarray) -> None:
    empty = perturb_many(batch[:0], ["rotate"])
    assert empty["rotate"].shape == (0, 31, 32, 32, 3)
    assert perturb_many(batch, []) == {}


# ---------------------------------------------------------------- noise perturbations


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("perturbation", sorted(NOISE_PERTURBATIONS))
def test_noise_frames_are_independent_draws_of_one_strength(perturbation: str, profile: str) -> None:
    image = textured_image(64, 64)
    frames = perturbation_sequence(image, perturbation, profile=profile)
    assert np.array_equal(frames[0], image)  # the generators start with the clean image
    noisy = frames[1:]
    for first, second in zip(noisy[:-1], noisy[1:]):
        assert not np.array_equal(first, second)
    strengths = np.array([mean_absolute_difference(frame, image) for frame in noisy])
    assert strengths.min() > 0
    # One strength for all frames: per-frame deviations scatter only by sampling noise.
    assert strengths.std() < 0.05 * strengths.mean()


@pytest.mark.parametrize("perturbation", sorted(NOISE_PERTURBATIONS))
def test_noise_difficulty_raises_strength(perturbation: str) -> None:
    image = textured_image(32, 32)
    strengths = [
        mean_absolute_difference(perturbation_sequence(image, perturbation, difficulty=difficulty)[1:], image)
        for difficulty in (1, 2, 3)
    ]
    assert strengths[0] < strengths[1] < strengths[2]


# ---------------------------------------------------------------- gradual perturbations


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("perturbation", GRADUAL)
def test_gradual_frames_change_step_by_step(perturbation: str, profile: str) -> None:
    side = TEST_SIDE[profile]
    frames = perturbation_sequence(textured_image(side, side), perturbation, profile=profile)
    steps = [mean_absolute_difference(first, second) for first, second in zip(frames[:-1], frames[1:])]
    end_to_end = mean_absolute_difference(frames[0], frames[-1])
    assert max(steps) < end_to_end
    assert np.mean(steps) > 0


@pytest.mark.parametrize("perturbation", GRADUAL)
def test_gradual_frames_do_not_depend_on_difficulty(perturbation: str) -> None:
    image = textured_image(32, 32)
    easy = perturbation_sequence(image, perturbation, difficulty=1, index=4)
    hard = perturbation_sequence(image, perturbation, difficulty=3, index=4)
    assert np.array_equal(easy, hard)


@pytest.mark.parametrize("profile", PROFILES)
def test_translate_frames_are_exact_shifts(profile: str) -> None:
    image = textured_image(48, 48)
    frames = perturbation_sequence(image, "translate", profile=profile)
    first_shift = {"cifar": -7, "imagenet": -20}[profile]
    for position, frame in enumerate(frames):
        shift = first_shift + position
        expected = np.zeros_like(image)
        if shift >= 0:
            expected[:, shift:] = image[:, : 48 - shift]
        else:
            expected[:, :shift] = image[:, -shift:]
        assert np.array_equal(frame, expected), shift


def test_identity_frames_reproduce_the_image() -> None:
    image = textured_image(32, 32)
    # Frame 15 is angle 0 (rotate, shear) and scale 1.0 (scale); frame 0 of zoom blur is unzoomed.
    for name, frame in (("rotate", 15), ("shear", 15), ("scale", 15), ("zoom_blur", 0)):
        assert np.array_equal(perturbation_sequence(image, name)[frame], image), name


def test_fast_motion_blur_equals_the_engine_kernel() -> None:
    image = textured_image(24, 40)
    angles = np.array([-180.0, -99.0, -45.0, 0.0, 36.0])
    stacked = perturbations._motion_blur_stack(image, 6, 1.8, angles)
    for frame, angle in zip(stacked, angles):
        assert np.array_equal(frame, motion_blur_line(image, 6, 1.8, angle))


def test_fast_brightness_equals_per_frame_hsv() -> None:
    image = textured_image(32, 32)
    shifts = (np.arange(31) - 15) * 1.5 / 100
    frames = perturbation_sequence(image, "brightness")
    for frame, shift in zip(frames, shifts):
        hsv = skimage_color.rgb2hsv(image / 255.0)
        hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0, 1)
        assert np.array_equal(frame, np.uint8(skimage_color.hsv2rgb(hsv) * 255))


@pytest.mark.parametrize("kernel", [(0.2, 0.8), (0.05, 0.1, 0.15, 0.7)])
def test_spatter_drip_equals_column_convolution(kernel: tuple[float, ...]) -> None:
    liquid = np.random.default_rng(0).random((12, 5))
    expected = np.apply_along_axis(lambda column: np.convolve(column, kernel, mode="same"), 0, liquid)
    assert np.allclose(perturbations._drip(liquid, np.array(kernel)), expected)


# ---------------------------------------------------------------- shift pairs


def test_shift_pairs_offsets_and_content(batch: np.ndarray) -> None:
    first, second, offsets = shift_pairs(batch, max_shift=4, seed=1)
    assert first.shape == second.shape == batch.shape and first.dtype == np.uint8
    assert offsets.shape == (len(batch), 2, 2) and np.abs(offsets).max() <= 4
    for position, image in enumerate(batch):
        for shifted, (row_offset, column_offset) in zip((first[position], second[position]), offsets[position]):
            # Content moves by the offset; the uncovered border is black.
            expected = np.zeros_like(image)
            target_rows = slice(max(row_offset, 0), 32 + min(row_offset, 0))
            target_columns = slice(max(column_offset, 0), 32 + min(column_offset, 0))
            source_rows = slice(max(-row_offset, 0), 32 - max(row_offset, 0))
            source_columns = slice(max(-column_offset, 0), 32 - max(column_offset, 0))
            expected[target_rows, target_columns] = image[source_rows, source_columns]
            assert np.array_equal(shifted, expected)


def test_shift_pairs_offsets_cover_the_range() -> None:
    images = np.zeros((400, 8, 8, 3), dtype=np.uint8)
    _, _, offsets = shift_pairs(images, max_shift=2)
    assert set(np.unique(offsets)) == {-2, -1, 0, 1, 2}


def test_shift_pairs_determinism_and_subset_independence(batch: np.ndarray) -> None:
    full = shift_pairs(batch, seed=4)
    again = shift_pairs(batch, seed=4)
    subset = shift_pairs(batch[[2, 0]], seed=4, indices=np.array([2, 0]))
    for whole, repeat, part in zip(full, again, subset):
        assert np.array_equal(whole, repeat)
        assert np.array_equal(whole[[2, 0]], part)
    assert not np.array_equal(full[2], shift_pairs(batch, seed=5)[2])


def test_shift_pairs_reflect_fill(batch: np.ndarray) -> None:
    first, _, offsets = shift_pairs(batch, max_shift=3, fill="reflect", seed=2)
    for position, image in enumerate(batch):
        row_offset, column_offset = offsets[position, 0]
        padded = np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="reflect")
        expected = padded[3 - row_offset : 35 - row_offset, 3 - column_offset : 35 - column_offset]
        assert np.array_equal(first[position], expected)
    with pytest.raises(UserError, match="40"):
        shift_pairs(batch, max_shift=40, fill="reflect")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "bad_value"),
    [
        (lambda image: perturbation_sequence(image, "fog"), "fog"),
        (lambda image: perturbation_sequence(image, "rotate", profile="tiny"), "tiny"),
        (lambda image: frame_count("fog"), "fog"),
        (lambda image: perturbation_sequence(image, "rotate", difficulty=0), "0"),
        (lambda image: perturbation_sequence(image, "rotate", difficulty=True), "True"),
        (lambda image: perturbation_sequence(image, "gaussian_noise", difficulty=4), "4"),
        (lambda image: perturbation_sequence(image, "translate", difficulty=16), "16"),
        (lambda image: perturbation_sequence(image.astype(np.float32), "rotate"), "float32"),
        (lambda image: perturbation_sequence(image[..., 0], "rotate"), r"\(32, 32\)"),
        (lambda image: perturbation_sequence(image.tolist(), "rotate"), "list"),
        (lambda image: perturbation_sequence(image, "rotate", seed=-1), "-1"),
        (lambda image: perturb_many(image, ["rotate"]), r"\(32, 32, 3\)"),
        (lambda image: perturb_many(image[np.newaxis], ["rotate", "nope"]), "nope"),
        (lambda image: perturb_many(image[np.newaxis], ["shot_noise"], difficulty=5), "5"),
        (lambda image: perturbations.validate_difficulty(["rotate", "speckle_noise"], 3.0), "3.0"),
        (lambda image: perturbations.validate_difficulty(["translate"], 41, "imagenet"), "41"),
        (lambda image: shift_pairs(image[np.newaxis], fill="wrap"), "wrap"),
        (lambda image: shift_pairs(image[np.newaxis], max_shift=-2), "-2"),
        (lambda image: shift_pairs(image[np.newaxis], indices=np.array([0, 1])), r"\(2,\)"),
    ],
)
def test_errors_are_one_line_user_errors_naming_the_value(call, bad_value: str) -> None:
    with pytest.raises(UserError, match=bad_value) as caught:
        call(textured_image(32, 32))
    assert "\n" not in str(caught.value)
