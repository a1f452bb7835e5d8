"""Tests for training (robustbench_lift/training.py) and scripts/train_zoo.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_lift import training
from robustbench_lift.data.base import ImageDataset
from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.inference import accuracy
from robustbench_lift.models.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def augment_one_by_one(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The per-image loop the batched augmentation replaces (same draws, same order)."""
    count, _, height, width = batch.shape
    padded = F.pad(batch, (2, 2, 2, 2))
    shifts = torch.randint(0, 5, (count, 2), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5
    out = torch.empty_like(batch)
    for index in range(count):
        top, left = int(shifts[index, 0]), int(shifts[index, 1])
        crop = padded[index, :, top : top + height, left : left + width]
        out[index] = crop.flip(-1) if flips[index] else crop
    return out


def test_batched_augmentation_equals_the_per_image_loop() -> None:
    batch = torch.rand(64, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    ours = training._augment(batch, torch.Generator().manual_seed(5))
    theirs = augment_one_by_one(batch, torch.Generator().manual_seed(5))
    assert ours.shape == batch.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    # Deterministic in the generator, and it does move and flip images.
    torch.testing.assert_close(training._augment(batch, torch.Generator().manual_seed(5)), ours, rtol=0, atol=0)
    assert not torch.equal(training._augment(batch, torch.Generator().manual_seed(6)), ours)
    assert not torch.equal(ours, batch)


def tiny_dataset(count: int = 48, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, count).astype(np.int64)
    return ImageDataset("tiny", images, labels, [str(i) for i in range(10)])


@pytest.fixture
def tiny(monkeypatch) -> ImageDataset:
    data = tiny_dataset()
    monkeypatch.setattr(training, "load_dataset", lambda *args, **kwargs: data)
    return data


def test_training_a_tiny_model_writes_a_loadable_checkpoint(tiny, tmp_path) -> None:
    config = training.TrainingConfig(pooling="lift", epochs=2, batch_size=8, validation_size=8, train_size=16, seed=3)
    path = tmp_path / "tiny.safetensors"
    metadata = training.train(config, path, progress=False)
    assert metadata["training_images"] == 16 and len(metadata["validation_accuracy_per_epoch"]) == 2
    assert (
        metadata["seed"] == 3 and metadata["training"]["device"] == "cpu" and metadata["training"]["train_size"] == 16
    )
    assert metadata["pooling_options"]["share"] == "all"
    model, loaded = load_checkpoint(path)
    assert loaded == metadata
    assert accuracy(model, tiny.images, tiny.labels) == pytest.approx(metadata["clean_test_accuracy"], abs=1e-6)


def test_training_records_todays_kind_for_a_deprecated_name(tiny, tmp_path) -> None:
    config = training.TrainingConfig(pooling="lift53", epochs=1, batch_size=16, validation_size=8)
    with pytest.warns(DeprecationWarning):
        metadata = training.train(config, tmp_path / "old-name.safetensors", progress=False)
    assert metadata["pooling"] == "cdf53_sum" and metadata["training"]["pooling"] == "cdf53_sum"


def test_training_is_deterministic_in_its_seed(tiny, tmp_path) -> None:
    from safetensors.torch import load_file

    def weights(seed: int, name: str):
        config = training.TrainingConfig(pooling="max", epochs=1, batch_size=16, validation_size=8, seed=seed)
        training.train(config, tmp_path / name, progress=False)
        return load_file(str(tmp_path / name))

    first, again, other = weights(0, "a.safetensors"), weights(0, "b.safetensors"), weights(1, "c.safetensors")
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


@pytest.mark.parametrize(
    "device, message", [("cuda:0", "CUDA"), ("tpu", "cpu or cuda"), ("nonsense", "unknown device")]
)
def test_unusable_devices_are_user_errors(device, message) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(UserError, match=message):
        training.training_device(device)


@needs_cuda
def test_training_on_cuda(tiny, tmp_path) -> None:
    batch = torch.rand(32, 3, 8, 8, device="cuda")
    first = training._augment(batch, torch.Generator(device="cuda").manual_seed(1))
    torch.testing.assert_close(
        training._augment(batch, torch.Generator(device="cuda").manual_seed(1)), first, rtol=0, atol=0
    )
    config = training.TrainingConfig(pooling="lift", epochs=1, batch_size=8, validation_size=8, device="cuda")
    metadata = training.train(config, tmp_path / "cuda.safetensors", progress=False)
    model, _ = load_checkpoint(tmp_path / "cuda.safetensors")
    assert accuracy(model, tiny.images, tiny.labels) == pytest.approx(metadata["clean_test_accuracy"], abs=1e-6)


# ---------------------------------------------------------------- scripts/train_zoo.py


@pytest.fixture
def train_zoo():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train_zoo

        yield train_zoo
    finally:
        sys.path.remove(str(ROOT / "scripts"))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--kinds", "nope"], "unknown pooling kind 'nope'"),
        (["--seeds", "-1"], "non-negative"),
        (["--jobs", "0"], "--jobs"),
        (["--device", "tpu"], "cpu or cuda"),
    ],
)
def test_train_zoo_refuses_bad_input_in_one_line(train_zoo, tmp_path, capsys, arguments, message) -> None:
    assert train_zoo.main([*arguments, "--output-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_train_zoo_names_files_by_kind_and_seed_and_resumes(train_zoo, tiny, tmp_path) -> None:
    arguments = [
        "--kinds",
        "max",
        "haar_sum",
        "--seeds",
        "0",
        "1",
        "--epochs",
        "1",
        "--train-size",
        "16",
        "--validation-size",
        "8",
        "--output-dir",
        str(tmp_path),
    ]
    assert train_zoo.main(arguments) == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [
        f"fashion_mnist-small_cnn-{kind}-s{seed}.safetensors" for kind in ("haar_sum", "max") for seed in (0, 1)
    ]
    for path in tmp_path.iterdir():
        _, metadata = load_checkpoint(path)
        assert path.name.endswith(f"-s{metadata['seed']}.safetensors") and f"-{metadata['pooling']}-" in path.name
    stamps = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    assert train_zoo.main(arguments) == 0  # everything present: nothing retrained
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == stamps


@pytest.mark.needs_data
@pytest.mark.slow
def test_train_zoo_smoke_run_with_parallel_jobs(train_zoo, tmp_path) -> None:
    arguments = [
        "--kinds",
        "max",
        "--seeds",
        "0",
        "1",
        "--epochs",
        "1",
        "--train-size",
        "256",
        "--jobs",
        "2",
        "--threads",
        "1",
        "--output-dir",
        str(tmp_path),
    ]
    assert train_zoo.main(arguments) == 0
    for seed in (0, 1):
        _, metadata = load_checkpoint(tmp_path / f"fashion_mnist-small_cnn-max-s{seed}.safetensors")
        assert metadata["seed"] == seed and metadata["training_images"] == 256 and metadata["test_size"] == 10000
