"""Tests for the batched torch corruption engine (corruptions/torch_engine/)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import corruptions
from corruptions import cifar_profile
from corruptions.errors import CorruptionError
from corruptions.imagenet_profile import IMAGENET_SEVERITIES
from corruptions.torch_engine import TORCH_PROFILES, corrupt_batch, draw_batch, image_seeds, is_random
from corruptions.torch_engine.blur import copy_pass
from corruptions.torch_engine.replay import REPLAYABLE, replay_reference

ALL = corruptions.corruption_names("all")
RANDOM = {
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur",
    "snow", "frost", "fog", "elastic_transform", "spatter",
}  # fmt: skip
DETERMINISTIC = [name for name in ALL if name not in RANDOM]

# Largest differences measured against the reference (benchmarks/corruption_fidelity.py:
# at most 0.11 grey levels on average, never more than 1), with some room.
DETERMINISTIC_MEAN_TOLERANCE = 0.15
DETERMINISTIC_MAX_TOLERANCE = 1


def photographs(side: int, count: int = 2) -> np.ndarray:
    """scikit-image sample photographs, centre-cropped and resized to ``side``."""
    from skimage import data, transform

    images = []
    for name in ("astronaut", "coffee", "chelsea", "rocket")[:count]:
        image = getattr(data, name)()
        height, width = image.shape[:2]
        square = min(height, width)
        crop = image[(height - square) // 2 :, (width - square) // 2 :][:square, :square, :3]
        images.append(np.rint(transform.resize(crop, (side, side), anti_aliasing=True, preserve_range=True)))
    return np.clip(np.stack(images), 0, 255).astype(np.uint8)


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(0, 2, 3, 1).cpu().numpy()


# ---------------------------------------------------------------- registry and tables


def test_registry_covers_both_profiles_and_classifies() -> None:
    assert TORCH_PROFILES.names() == list(corruptions.PROFILES)
    for profile in corruptions.PROFILES:
        assert TORCH_PROFILES.get(profile).names() == ALL
        assert {name for name in ALL if is_random(name, profile)} == RANDOM


def _evaluate(node: ast.AST) -> object:
    """The value of the constant table expressions imagecorruptions uses (numbers, lists,
    arithmetic, ``np.arange`` of numbers), without executing its code."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return tuple(_evaluate(element) for element in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)  # type: ignore[operator]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add, ast.Sub, ast.Div)):
        left, right = _evaluate(node.left), _evaluate(node.right)
        operations = {ast.Mult: np.multiply, ast.Add: np.add, ast.Sub: np.subtract, ast.Div: np.divide}
        return operations[type(node.op)](left, right)
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "np.arange":
        return np.arange(*[_evaluate(argument) for argument in node.args])
    raise ValueError(f"unexpected expression {ast.unparse(node)}")


def test_imagenet_table_matches_the_installed_imagecorruptions() -> None:
    spec = importlib.util.find_spec("imagecorruptions")
    assert spec is not None and spec.submodule_search_locations
    source = (Path(next(iter(spec.submodule_search_locations))) / "corruptions.py").read_text()
    found = {}
    for function in ast.parse(source).body:
        if not isinstance(function, ast.FunctionDef):
            continue
        for statement in ast.walk(function):
            if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Subscript):
                target = ast.unparse(statement.targets[0])
                if target in ("c", "alpha"):
                    found[function.name] = _evaluate(statement.value.value)
    assert set(found) == set(ALL)
    for name in ALL:
        ours = IMAGENET_SEVERITIES[name]
        if name == "elastic_transform":
            assert tuple(entry[0] for entry in ours) == pytest.approx(found[name])
            assert {entry[1:] for entry in ours} == {(0.01, 0.005)}
        elif name == "zoom_blur":
            for mine, theirs in zip(ours, found[name]):
                np.testing.assert_array_equal(mine, theirs)
        else:
            assert tuple(ours) == found[name], name


# ---------------------------------------------------------------- fidelity


@pytest.mark.parametrize("corruption", DETERMINISTIC)
def test_deterministic_cifar_matches_reference(corruption: str) -> None:
    images = photographs(32, 4)
    for severity in corruptions.SEVERITIES:
        reference = corruptions.corrupt_batch(images, corruption, severity, profile="cifar").astype(np.int16)
        ours = nhwc(corrupt_batch(nchw(images), corruption, severity, profile="cifar")).astype(np.int16)
        difference = np.abs(ours - reference)
        assert difference.mean() <= DETERMINISTIC_MEAN_TOLERANCE, (severity, difference.mean())
        assert difference.max() <= DETERMINISTIC_MAX_TOLERANCE, (severity, difference.max())


@pytest.mark.slow
@pytest.mark.parametrize("corruption", DETERMINISTIC)
def test_deterministic_imagenet_matches_reference(corruption: str) -> None:
    images = photographs(224, 2)
    for severity in corruptions.SEVERITIES:
        reference = corruptions.corrupt_batch(images, corruption, severity, profile="imagenet").astype(np.int16)
        ours = nhwc(corrupt_batch(nchw(images), corruption, severity, profile="imagenet")).astype(np.int16)
        difference = np.abs(ours - reference)
        assert difference.mean() <= DETERMINISTIC_MEAN_TOLERANCE, (severity, difference.mean())
        assert difference.max() <= DETERMINISTIC_MAX_TOLERANCE, (severity, difference.max())


@pytest.mark.parametrize("profile, corruption", sorted(REPLAYABLE))
def test_random_corruptions_match_reference_given_the_same_draws(profile: str, corruption: str) -> None:
    side = 32 if profile == "cifar" else 64
    images = photographs(side, 2)
    batch = nchw(images)
    for severity in (1, 3, 5):
        draws = draw_batch(batch, corruption, severity, profile=profile, seed=5)
        ours = nhwc(corrupt_batch(batch, corruption, severity, profile=profile, draws=draws)).astype(np.int16)
        for position, image in enumerate(images):
            one = {key: value[position] for key, value in draws.items()}
            reference = replay_reference(image, corruption, severity, profile, one).astype(np.int16)
            difference = np.abs(ours[position] - reference)
            assert difference.mean() <= 0.02, (severity, difference.mean())
            assert difference.max() <= 1, (severity, difference.max())


@pytest.mark.parametrize("max_delta", [1, 2, 4])
def test_parallel_copy_pass_equals_the_sequential_loop(max_delta: int) -> None:
    rng = np.random.default_rng(max_delta)
    images = rng.integers(0, 256, (2, 20, 23, 3), dtype=np.uint8)
    shape = (20 - 2 * max_delta, 23 - 2 * max_delta, 2)
    offsets = rng.integers(-max_delta, max_delta, size=(2,) + shape)
    expected = []
    for image, image_offsets in zip(images, offsets):
        copy = image.copy()
        cifar_profile.shuffle_pixels_once(copy, max_delta, image_offsets)
        expected.append(copy)
    ours = copy_pass(nchw(images).float(), torch.from_numpy(offsets), max_delta)
    np.testing.assert_array_equal(nhwc(ours).astype(np.uint8), np.stack(expected))


# ---------------------------------------------------------------- determinism


def _small(profile: str) -> torch.Tensor:
    return nchw(photographs(32 if profile == "cifar" else 40, 4))


@pytest.mark.parametrize("profile", corruptions.PROFILES)
@pytest.mark.parametrize("corruption", sorted(RANDOM))
def test_same_seed_same_bytes_for_any_batch_split(profile: str, corruption: str) -> None:
    images = _small(profile)
    indices = np.array([10, 11, 12, 13])
    whole = corrupt_batch(images, corruption, 4, profile=profile, seed=3, indices=indices)
    singles = torch.cat(
        [
            corrupt_batch(images[i : i + 1], corruption, 4, profile=profile, seed=3, indices=indices[i : i + 1])
            for i in range(4)
        ]
    )
    assert torch.equal(whole, singles)
    again = corrupt_batch(images, corruption, 4, profile=profile, seed=3, indices=torch.tensor(indices))
    assert torch.equal(whole, again)
    other_seed = corrupt_batch(images, corruption, 4, profile=profile, seed=4, indices=indices)
    assert not torch.equal(whole, other_seed)
    # The image index, not the position in the batch, selects the draws.
    reversed_batch = corrupt_batch(images.flip(0), corruption, 4, profile=profile, seed=3, indices=indices[::-1].copy())
    assert torch.equal(reversed_batch.flip(0), whole)


def test_seeds_depend_on_every_argument() -> None:
    base = image_seeds(0, [0, 1], "fog", 1)
    assert base[0] != base[1]
    assert image_seeds(0, [0, 1], "fog", 1) == base
    assert image_seeds(1, [0, 1], "fog", 1) != base
    assert image_seeds(0, [0, 1], "snow", 1) != base
    assert image_seeds(0, [0, 1], "fog", 2) != base


@pytest.mark.parametrize("corruption", DETERMINISTIC)
def test_deterministic_corruptions_ignore_seed_and_index(corruption: str) -> None:
    images = _small("cifar")
    first = corrupt_batch(images, corruption, 3, seed=0)
    assert torch.equal(first, corrupt_batch(images, corruption, 3, seed=9, indices=[5, 6, 7, 8]))


# ---------------------------------------------------------------- types and shapes


@pytest.mark.parametrize("profile", corruptions.PROFILES)
@pytest.mark.parametrize("corruption", ALL)
def test_dtype_shape_and_device_are_preserved(profile: str, corruption: str) -> None:
    images = _small(profile)[:2]
    out = corrupt_batch(images, corruption, 2, profile=profile, seed=1)
    assert out.dtype == torch.uint8 and out.shape == images.shape and out.device == images.device
    for dtype in (torch.float32, torch.float64):
        floats = corrupt_batch(images.to(dtype) / 255, corruption, 2, profile=profile, seed=1)
        assert floats.dtype == dtype and floats.shape == images.shape
        assert torch.equal(torch.round(floats * 255).to(torch.uint8), out)


def test_non_square_and_empty_batches() -> None:
    images = torch.randint(0, 256, (2, 3, 24, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for corruption in ALL:
        assert corrupt_batch(images, corruption, 5).shape == images.shape
    empty = torch.zeros((0, 3, 32, 32), dtype=torch.uint8)
    assert corrupt_batch(empty, "fog", 1).shape == empty.shape


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"images": np.zeros((1, 32, 32, 3), np.uint8)}, "torch tensor"),
        ({"images": torch.zeros((1, 3, 32, 32), dtype=torch.int32)}, "dtype"),
        ({"images": torch.zeros((1, 1, 32, 32), dtype=torch.uint8)}, "N x 3 x H x W"),
        ({"images": torch.zeros((3, 32, 32), dtype=torch.uint8)}, "N x 3 x H x W"),
        ({"images": torch.full((1, 3, 32, 32), 2.0)}, r"\[0, 1\]"),
        ({"corruption": "bogus"}, "bogus"),
        ({"severity": 0}, "severity"),
        ({"severity": 6}, "severity"),
        ({"severity": 2.0}, "severity"),
        ({"profile": "tiny"}, "tiny"),
        ({"seed": -1}, "seed"),
        ({"indices": [1, 2]}, "indices"),
        ({"profile": "imagenet", "images": torch.zeros((1, 3, 16, 16), dtype=torch.uint8)}, "at least 32x32"),
    ],
)
def test_bad_input_raises_corruption_error(arguments: dict, message: str) -> None:
    call = {"images": torch.zeros((1, 3, 32, 32), dtype=torch.uint8), "corruption": "fog", "severity": 1} | arguments
    images, corruption, severity = call.pop("images"), call.pop("corruption"), call.pop("severity")
    with pytest.raises(CorruptionError, match=message):
        corrupt_batch(images, corruption, severity, **call)


# ---------------------------------------------------------------- GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("profile", corruptions.PROFILES)
def test_cuda_matches_cpu(profile: str) -> None:
    images = _small(profile)
    for corruption in ALL:
        cpu = corrupt_batch(images, corruption, 3, profile=profile, seed=2)
        gpu = corrupt_batch(images.cuda(), corruption, 3, profile=profile, seed=2)
        assert gpu.device.type == "cuda" and gpu.dtype == torch.uint8
        assert torch.equal(gpu, corrupt_batch(images.cuda(), corruption, 3, profile=profile, seed=2))
        if corruption in DETERMINISTIC:
            difference = (gpu.cpu().short() - cpu.short()).abs()
            assert difference.float().mean() <= DETERMINISTIC_MEAN_TOLERANCE and difference.max() <= 1, corruption
