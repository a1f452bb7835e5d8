"""Tests for checkpoint files (robustbench_lift/models/checkpoints.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_lift.errors import CheckpointError, UserError
from robustbench_lift.models import NormalizedModel, build_model
from robustbench_lift.models.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from robustbench_lift.nn.lifting import LiftDownPool

MEAN = [0.3, 0.4, 0.5]
STD = [0.2, 0.25, 0.3]


def metadata_for(pooling: str, options: dict | None = None, num_classes: int = 10) -> dict:
    return {
        "architecture": "small_cnn",
        "pooling": pooling,
        "pooling_options": options or {},
        "num_classes": num_classes,
        "preprocessing": {"mean": MEAN, "std": STD},
        "clean_test_accuracy": 0.875,
        "validation_accuracy_per_epoch": [0.5, 0.75],
    }


def trained_like(pooling: str, options: dict | None = None, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A small_cnn with random (non-default) weights and batch-norm statistics."""
    torch.manual_seed(seed)
    model = build_model("small_cnn", pooling, num_classes=num_classes, pooling_options=options, mean=MEAN, std=STD)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model.train()
    model(torch.rand(4, 3, 32, 32))  # moves the batch-norm running statistics
    return model.eval()


def assert_same_weights(first: nn.Module, second: nn.Module) -> None:
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def lift_checkpoint(tmp_path) -> tuple[Path, nn.Module]:
    model = trained_like("lift", {"kernel_size": 5})
    path = tmp_path / "lift.safetensors"
    options = {"combine": "sum", "kernel_size": 5, "groups": "depthwise", "share": "all"}
    save_checkpoint(model, metadata_for("lift", options), path)
    return path, model


def test_checkpoints_from_before_share_and_the_kind_renames_still_load(tmp_path) -> None:
    """Lift checkpoints written before `share` existed have one P/U pair per direction;
    `haar`/`lift53` are the old names of haar_sum/cdf53_sum."""
    model = trained_like("lift", {"share": "per_direction"}, seed=1)
    path = tmp_path / "old-lift.safetensors"
    save_checkpoint(model, metadata_for("lift", {"combine": "sum", "kernel_size": 3, "groups": "depthwise"}), path)
    loaded, metadata = load_checkpoint(path, expect={"pooling": "lift"})
    assert_same_weights(loaded, model)
    assert [pool.share for pool in loaded.modules() if isinstance(pool, LiftDownPool)] == ["per_direction"] * 3
    for old, new in (("haar", "haar_sum"), ("lift53", "cdf53_sum")):
        fixed = trained_like(new, seed=2)
        path = tmp_path / f"old-{old}.safetensors"
        save_checkpoint(fixed, metadata_for(old, {"combine": "sum"}), path)
        with pytest.warns(DeprecationWarning, match=new):
            loaded, metadata = load_checkpoint(path)
        assert metadata["pooling"] == old
        x = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), fixed(x))


def test_round_trip_restores_weights_metadata_and_outputs(lift_checkpoint) -> None:
    path, model = lift_checkpoint
    loaded, metadata = load_checkpoint(path)
    options = {"combine": "sum", "kernel_size": 5, "groups": "depthwise", "share": "all"}
    assert metadata == metadata_for("lift", options)
    assert isinstance(loaded, NormalizedModel)
    assert not loaded.training
    assert_same_weights(loaded, model)
    # The pooling options in the metadata rebuild the same layers.
    pools = [module for module in loaded.modules() if isinstance(module, LiftDownPool)]
    assert len(pools) == 3 and all(pool.kernel_size == 5 for pool in pools)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    # The normalisation lives inside the model.
    torch.testing.assert_close(loaded.mean.flatten(), torch.tensor(MEAN))
    torch.testing.assert_close(loaded.std.flatten(), torch.tensor(STD))


def test_read_checkpoint_returns_state_and_metadata_without_a_model(lift_checkpoint) -> None:
    path, model = lift_checkpoint
    state, metadata = read_checkpoint(path)
    assert metadata["pooling"] == "lift"
    assert state.keys() == model.state_dict().keys()


def test_save_leaves_no_temporary_files(tmp_path) -> None:
    path = tmp_path / "nested" / "model.safetensors"
    save_checkpoint(trained_like("max"), metadata_for("max"), path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]


def test_expect_accepts_matching_metadata(lift_checkpoint) -> None:
    path, _ = lift_checkpoint
    _, metadata = load_checkpoint(path, expect={"architecture": "small_cnn", "pooling": "lift"})
    assert metadata["pooling"] == "lift"


def test_expect_refuses_other_pooling(tmp_path) -> None:
    path = tmp_path / "max.safetensors"
    save_checkpoint(trained_like("max"), metadata_for("max"), path)
    with pytest.raises(CheckpointError, match="pooling") as error:
        load_checkpoint(path, expect={"pooling": "lift"})
    assert "'max'" in str(error.value) and "'lift'" in str(error.value)
    assert isinstance(error.value, UserError)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.0])
def test_truncated_safetensors_file(tmp_path, lift_checkpoint, fraction) -> None:
    path, _ = lift_checkpoint
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(truncated)
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError):
        read_checkpoint(truncated)


def test_truncated_torch_file(tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"state_dict": trained_like("max").state_dict(), "metadata": metadata_for("max")}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_state_dict_of_another_architecture_is_refused_in_one_line(tmp_path) -> None:
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 10))
    path = tmp_path / "other.safetensors"
    save_checkpoint(other, metadata_for("max"), path)
    with pytest.raises(CheckpointError, match="does not fit") as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message
    assert "missing" in message and "unexpected" in message


def test_weights_of_another_pooling_are_refused(tmp_path) -> None:
    # Lifting weights under metadata that says max pooling: unexpected P/U keys.
    path = tmp_path / "mislabelled.safetensors"
    save_checkpoint(trained_like("lift"), metadata_for("max"), path)
    with pytest.raises(CheckpointError, match="does not fit") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)


def test_shape_mismatch_is_refused_in_one_line(tmp_path) -> None:
    path = tmp_path / "classes.safetensors"
    save_checkpoint(trained_like("max", num_classes=10), metadata_for("max", num_classes=5), path)
    with pytest.raises(CheckpointError, match="shape") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)


def test_metadata_without_architecture_is_refused(tmp_path) -> None:
    path = tmp_path / "bare.safetensors"
    save_checkpoint(trained_like("max"), {"pooling": "max"}, path)
    with pytest.raises(CheckpointError, match="architecture"):
        load_checkpoint(path)


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_torch_files_with_wrapped_and_data_parallel_state_dicts_load(tmp_path, suffix, wrapper) -> None:
    model = trained_like("haar_sum", seed=3)
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    path = tmp_path / f"wrapped{suffix}"
    torch.save({wrapper: state, "metadata": metadata_for("haar_sum"), "epoch": 7}, path)
    loaded, metadata = load_checkpoint(path, expect={"pooling": "haar_sum"})
    assert metadata["architecture"] == "small_cnn"
    assert_same_weights(loaded, model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_bare_torch_state_dict_reads_but_needs_metadata_to_load(tmp_path) -> None:
    model = trained_like("max")
    path = tmp_path / "bare.pt"
    torch.save(model.state_dict(), path)
    state, metadata = read_checkpoint(path)
    assert metadata == {} and state.keys() == model.state_dict().keys()
    with pytest.raises(CheckpointError, match="metadata"):
        load_checkpoint(path)


class NotATensor:
    pass


def test_torch_file_with_arbitrary_objects_is_not_unpickled(tmp_path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save(
        {"state_dict": trained_like("max").state_dict(), "metadata": metadata_for("max"), "extra": NotATensor()}, path
    )
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_torch_file_without_a_state_dict(tmp_path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="no state dict"):
        read_checkpoint(path)
