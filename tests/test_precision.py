"""Inference precision (autocast) and channels-last: name checks, the CPU's fp16 refusal,
and bf16 / channels-last predictions against fp32 on a zoo model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.precision import PRECISIONS, channels_last_for, check_precision
from robustbench_lift.run.config import RunConfig, config_from_mapping


def test_precision_names_and_the_cpu_fp16_refusal() -> None:
    assert PRECISIONS == ("fp32", "bf16", "fp16")
    for precision in PRECISIONS:
        check_precision(precision, "cuda")
    check_precision("bf16", "cpu")
    with pytest.raises(UserError, match="precision 'half' is not one of fp32, bf16, fp16"):
        check_precision("half")
    with pytest.raises(UserError, match="fp16 needs a CUDA device; on the CPU use bf16"):
        check_precision("fp16", "cpu")


def test_config_checks_precisions() -> None:
    base = RunConfig()
    assert (base.precision, base.attack_precision, base.channels_last) == ("fp32", "fp32", None)
    config = config_from_mapping({"precision": "bf16", "attack_precision": "bf16", "channels_last": True}, base)
    assert config.to_dict()["precision"] == "bf16" and config.channels_last is True
    with pytest.raises(UserError, match="attack_precision 'fp64' is not one of"):
        config_from_mapping({"attack_precision": "fp64"}, base)
    with pytest.raises(UserError, match="attack_precision fp16 needs a CUDA device"):
        config_from_mapping({"attack_precision": "fp16", "device": "cpu"}, base)
    with pytest.raises(UserError, match="channels_last"):
        config_from_mapping({"channels_last": "yes"}, base)


def test_channels_last_is_on_by_default() -> None:
    assert channels_last_for(None, "cuda") and channels_last_for(None, "cpu")  # null = on
    assert channels_last_for(True, "cpu") and not channels_last_for(False, "cuda")


@pytest.fixture(scope="module")
def zoo_and_images():
    from robustbench_lift import load_model
    from robustbench_lift.data.datasets import load_dataset

    data = load_dataset("fashion_mnist", "test")
    return load_model("small_cnn-max-s0"), data.images[:200], data.labels[:200]


@pytest.mark.needs_data
def test_bf16_autocast_agrees_with_fp32_on_a_zoo_model(zoo_and_images) -> None:
    from robustbench_lift.evaluation.inference import predict_logits

    model, images, labels = zoo_and_images
    full = predict_logits(model, images, 100, "cpu")
    half = predict_logits(model, images, 100, "cpu", precision="bf16")
    assert half.dtype == torch.float32  # logits come back in fp32 whatever ran inside
    assert not torch.equal(full, half)  # bf16 really ran
    agreement = float((full.argmax(1) == half.argmax(1)).float().mean())
    assert agreement >= 0.95
    accuracy = float((full.argmax(1).numpy() == labels).mean())
    assert abs(float((half.argmax(1).numpy() == labels).mean()) - accuracy) <= 0.05


@pytest.mark.needs_data
def test_channels_last_on_the_cpu_gives_the_same_predictions(zoo_and_images) -> None:
    import copy

    from robustbench_lift.evaluation.inference import predict_logits

    model, images, _ = zoo_and_images
    model = copy.deepcopy(model)
    plain = predict_logits(model, images, 100, "cpu")
    nhwc = predict_logits(model, images, 100, "cpu", channels_last=True)
    assert np.array_equal(plain.argmax(1).numpy(), nhwc.argmax(1).numpy())
    assert torch.allclose(plain, nhwc, atol=1e-4)


@pytest.mark.needs_data
def test_attack_precision_bf16_runs_and_fp32_is_the_default(zoo_and_images) -> None:
    from robustbench_lift.evaluation.attacks import evaluate_attack
    from robustbench_lift.evaluation.inference import to_tensor

    model, images, labels = zoo_and_images
    inputs, targets = to_tensor(images[:16]), torch.from_numpy(labels[:16]).long()
    rows = evaluate_attack(model, inputs, targets, "fgsm", [0, 8 / 255], precision="bf16")
    assert all(row["status"] == "ok" for row in rows)
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        evaluate_attack(model, inputs, targets, "fgsm", [0, 8 / 255], precision="fp16")


@pytest.mark.needs_data
def test_attacks_run_after_channels_last_inference() -> None:
    """Channels-last conversion inside inference mode must not turn the parameters into
    inference tensors: an attack on the same model afterwards needs their autograd."""
    from robustbench_lift.evaluation.attacks.evaluate import evaluate_attack
    from robustbench_lift.evaluation.inference import predict_logits
    from robustbench_lift.models import load_model

    model = load_model("small_cnn-lift-s0").eval()
    pixels = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    predict_logits(model, pixels, channels_last=True)
    assert all(not parameter.is_inference() for parameter in model.parameters())
    rows = evaluate_attack(model, torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)), "pgd_linf")
    assert {row["status"] for row in rows} == {"ok"}
