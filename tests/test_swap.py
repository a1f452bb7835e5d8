"""Tests for swapping the pooling of built models (robustbench_lift/nn/swap.py, docs/layers.md)."""
from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
import torch
import torchvision
from torch import nn

from robustbench_lift.errors import UserError
from robustbench_lift.nn.lifting import LiftDownPool
from robustbench_lift.nn.pooling import StridedSubsample
from robustbench_lift.nn.swap import swap_pooling

SIZE = 64
# (torchvision model, how many MaxPool2d/AvgPool2d it has)
POOLED_MODELS = {
    "resnet18": 1,  # the 3x3/2 stem max pooling
    "resnet50": 1,
    "vgg11": 5,
    "vgg13": 5,
    "vgg16": 5,
    "alexnet": 3,
    "densenet121": 4,  # stem max pooling + three transition average poolings
}
# Every model gets the learned lifting; the cheaper models also blur and skip (each
# swap deep-copies the model, which is slow for VGG's classifier).
CASES = [(name, "lift") for name in POOLED_MODELS] + [
    (name, kind) for name in ("resnet18", "vgg11", "alexnet", "densenet121") for kind in ("blur", "skip")
]


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    """Each torchvision model built once per module, lazily (weights=None, eval mode)."""

    class Lazy(dict):
        def __missing__(self, name: str) -> nn.Module:
            torch.manual_seed(0)
            model = getattr(torchvision.models, name)(weights=None).eval()
            self[name] = model
            return model

    return Lazy()


def pooling_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d))]


def output_shapes(model: nn.Module, names: Sequence[str], x: torch.Tensor) -> dict[str, torch.Size]:
    """Output shape of each named layer, and of the whole model under key ''."""
    modules = dict(model.named_modules())
    shapes: dict[str, torch.Size] = {}

    def recorder(name: str):
        def record(module: nn.Module, inputs, output: torch.Tensor) -> None:
            shapes.setdefault(name, output.shape)

        return record

    hooks = [modules[name].register_forward_hook(recorder(name)) for name in names]
    try:
        with torch.no_grad():
            shapes[""] = model(x).shape
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def expected_layer(kind: str, layer: nn.Module) -> bool:
    if kind == "lift":
        return any(isinstance(module, LiftDownPool) and module.scheme == "learned" for module in layer.modules())
    if kind == "skip":
        return any(isinstance(module, StridedSubsample) for module in layer.modules())
    if kind == "blur":
        import antialiased_cnns

        return any(isinstance(module, antialiased_cnns.BlurPool) for module in layer.modules())
    raise AssertionError(kind)


@pytest.mark.slow
@pytest.mark.parametrize("name, kind", CASES)
def test_swap_replaces_every_pooling_layer_and_keeps_shapes(built, name, kind) -> None:
    original = built[name]
    names = pooling_names(original)
    assert len(names) == POOLED_MODELS[name]
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))

    swapped, report = swap_pooling(original, kind, input_size=(3, SIZE, SIZE))
    swapped.eval()

    assert sorted(layer for layer, _ in report.replaced) == sorted(names)
    assert report.failed == []
    for layer in names:
        assert not isinstance(swapped.get_submodule(layer), (nn.MaxPool2d, nn.AvgPool2d)), layer
        assert expected_layer(kind, swapped.get_submodule(layer)), layer
    if kind != "blur":  # blur keeps a stride-1 max pooling inside its replacement
        assert pooling_names(swapped) == []
    # Every replaced layer, and the model, give the shapes the original pooling gave.
    assert output_shapes(swapped, names, x) == output_shapes(original, names, x)
    # The original model is left alone (inplace=False).
    assert pooling_names(original) == names


@pytest.mark.parametrize("size", [64, 57])
def test_resnet_stem_max_pooling_is_replaced_and_adaptive_pooling_kept(built, size) -> None:
    original = built["resnet18"]
    swapped, report = swap_pooling(original, "lift", input_size=(3, size, size))
    assert [name for name, _ in report.replaced] == ["maxpool"]
    assert "MaxPool2d" in dict(report.replaced)["maxpool"]
    assert not isinstance(swapped.maxpool, nn.MaxPool2d)
    assert isinstance(original.maxpool, nn.MaxPool2d)
    assert [name for name, _ in report.kept] == ["avgpool"]
    assert "AdaptiveAvgPool2d" in report.kept[0][1]
    assert isinstance(swapped.avgpool, nn.AdaptiveAvgPool2d)
    assert "kept avgpool" in str(report) and "replaced maxpool" in str(report)
    # The stem pooling sees 64 channels: its lifting operators are built for them.
    pool = [module for module in swapped.maxpool.modules() if isinstance(module, LiftDownPool)][0]
    assert pool.channels == 64
    x = torch.rand(2, 3, size, size)
    swapped.eval()
    assert output_shapes(swapped, ["maxpool", "layer1"], x) == output_shapes(original, ["maxpool", "layer1"], x)


def test_swap_can_change_the_model_in_place(built) -> None:
    model = torchvision.models.resnet18(weights=None)
    swapped, _ = swap_pooling(model, "skip", input_size=(3, 32, 32), inplace=True)
    assert swapped is model and not isinstance(model.maxpool, nn.MaxPool2d)


def test_mobilenet_without_pooling_is_refused(built) -> None:
    with pytest.raises(UserError, match="no MaxPool2d/AvgPool2d") as error:
        swap_pooling(built["mobilenet_v2"], "lift", input_size=(3, SIZE, SIZE))
    assert "include_strided_convolutions" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 57])
@pytest.mark.parametrize("kind", ["lift", "blur", "haar"])
def test_mobilenet_strided_convolutions_become_convolution_plus_pooling(built, kind, size) -> None:
    original = built["mobilenet_v2"]
    strided = [name for name, module in original.named_modules() if isinstance(module, nn.Conv2d) and module.stride == (2, 2)]
    assert len(strided) == 5
    x = torch.rand(1, 3, size, size)
    swapped, report = swap_pooling(original, kind, input_size=(3, size, size), include_strided_convolutions=True)
    swapped.eval()
    assert sorted(name for name, _ in report.replaced) == sorted(strided)
    for name in strided:
        replacement = swapped.get_submodule(name)
        assert isinstance(replacement, nn.Sequential)
        assert isinstance(replacement[0], nn.Conv2d) and replacement[0].stride == (1, 1)
        torch.testing.assert_close(replacement[0].weight, original.get_submodule(name).weight)
    assert not any(isinstance(m, nn.Conv2d) and m.stride != (1, 1) for m in swapped.modules())
    assert output_shapes(swapped, strided, x) == output_shapes(original, strided, x)


class Mixed(nn.Module):
    """One replaceable pooling, one non-square pooling, a 1-D pooling, and an unused one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.good = nn.MaxPool2d(2)
        self.odd_shape = nn.MaxPool2d((2, 3), (2, 3))
        self.one_d = nn.MaxPool1d(2)
        self.unused = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.odd_shape(self.good(self.conv(x)))
        return self.one_d(x.flatten(2)).sum(-1)


def test_strict_swap_raises_on_layers_it_cannot_replace() -> None:
    with pytest.raises(UserError) as error:
        swap_pooling(Mixed(), "lift", input_size=(3, 12, 12))
    message = str(error.value)
    assert "\n" not in message
    for name in ("odd_shape", "one_d", "unused"):
        assert name in message


def test_non_strict_swap_logs_and_lists_failures(caplog) -> None:
    model = Mixed()
    with caplog.at_level(logging.WARNING, logger="robustbench_lift.nn.swap"):
        swapped, report = swap_pooling(model, "lift", input_size=(3, 12, 12), strict=False)
    assert [name for name, _ in report.replaced] == ["good"]
    failed = dict(report.failed)
    assert set(failed) == {"odd_shape", "one_d", "unused"}
    assert "non-square" in failed["odd_shape"]
    assert "not reached" in failed["unused"]
    assert isinstance(swapped.odd_shape, nn.MaxPool2d) and isinstance(swapped.unused, nn.AvgPool2d)
    assert expected_layer("lift", swapped.good)
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings and all(name in warnings[0].getMessage() for name in ("odd_shape", "one_d", "unused"))
    assert "could not replace odd_shape" in str(report)
    with torch.no_grad():
        assert swapped(torch.rand(1, 3, 12, 12)).shape == model(torch.rand(1, 3, 12, 12)).shape


def test_unknown_kind_or_option_fails_before_any_work() -> None:
    model = Mixed()
    with pytest.raises(UserError, match="'nope'"):
        swap_pooling(model, "nope", input_size=(3, 12, 12), strict=False)
    with pytest.raises(UserError, match="'bogus'"):
        swap_pooling(model, "lift", input_size=(3, 12, 12), strict=False, bogus=1)


@pytest.mark.slow
def test_swap_passes_options_to_every_layer(built) -> None:
    swapped, _ = swap_pooling(built["vgg11"], "lift", input_size=(3, SIZE, SIZE), kernel_size=5, groups="dense")
    pools = [module for module in swapped.modules() if isinstance(module, LiftDownPool)]
    assert len(pools) == 5
    assert all(pool.kernel_size == 5 and pool.groups == 1 for pool in pools)
    assert [pool.channels for pool in pools] == [64, 128, 256, 512, 512]
