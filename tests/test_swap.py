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
    if kind == "haar_sum":
        pools = [module for module in layer.modules() if isinstance(module, LiftDownPool)]
        return any(pool.scheme == "haar" and pool.combine == "sum" for pool in pools)
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
    if kind == "blur":
        # antialiased-cnns: a max site keeps a stride-1 max before its blur, an average
        # site becomes the blur alone.
        max_sites = [layer for layer in names if isinstance(original.get_submodule(layer), nn.MaxPool2d)]
        remaining = [module for module in swapped.modules() if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d))]
        assert len(remaining) == len(max_sites)
        assert all(isinstance(module, nn.MaxPool2d) and module.stride in (1, (1, 1)) for module in remaining)
    else:
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
@pytest.mark.parametrize("kind", ["lift", "blur", "haar_sum"])
def test_mobilenet_strided_convolutions_pool_after_their_batch_norm_and_activation(built, kind, size) -> None:
    original = built["mobilenet_v2"]
    strided = [
        name for name, module in original.named_modules() if isinstance(module, nn.Conv2d) and module.stride == (2, 2)
    ]
    assert len(strided) == 5
    x = torch.rand(1, 3, size, size)
    swapped, report = swap_pooling(original, kind, input_size=(3, size, size), include_strided_convolutions=True)
    swapped.eval()
    assert sorted(name for name, _ in report.replaced) == sorted(strided)
    placed = dict(report.placed)
    for name in strided:
        # Each strided convolution sits in a Conv2dNormActivation (conv, BN, ReLU6): it
        # stays in place at stride 1 and the pooling follows the ReLU6.
        convolution = swapped.get_submodule(name)
        assert isinstance(convolution, nn.Conv2d) and convolution.stride == (1, 1)
        torch.testing.assert_close(convolution.weight, original.get_submodule(name).weight)
        block = name.rpartition(".")[0]
        assert placed[name] == f"after {block}.2"
        activation = swapped.get_submodule(f"{block}.2")
        assert isinstance(activation, nn.Sequential) and isinstance(activation[0], nn.ReLU6)
        assert expected_layer(kind, activation[1])
        assert isinstance(swapped.get_submodule(f"{block}.1"), nn.BatchNorm2d)
    assert not any(isinstance(m, nn.Conv2d) and m.stride != (1, 1) for m in swapped.modules())
    assert output_shapes(swapped, strided, x)[""] == output_shapes(original, strided, x)[""]


# ---------------------------------------------------------------- blur as antialiased-cnns builds it


def copy_weights_in_order(source: nn.Module, target: nn.Module) -> None:
    """Copies every parameter and batch-norm buffer of ``source`` into ``target`` in
    registration order; the blur filters (fixed binomial buffers) are left out."""
    source_state = [(key, value) for key, value in source.state_dict().items() if not key.endswith("filt")]
    target_keys = [key for key in target.state_dict() if not key.endswith("filt")]
    assert len(source_state) == len(target_keys)
    state = {}
    for (source_key, value), target_key in zip(source_state, target_keys):
        assert value.shape == target.state_dict()[target_key].shape, (source_key, target_key)
        state[target_key] = value
    missing, unexpected = target.load_state_dict(state, strict=False)
    assert unexpected == [] and all(key.endswith("filt") for key in missing)


def randomise_batch_norms(model: nn.Module, seed: int) -> None:
    """Non-trivial running statistics, so that where the blur sits relative to BN matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.3)


def antialiased(name: str, **kwargs) -> nn.Module:
    import antialiased_cnns

    torch.manual_seed(1)
    return getattr(antialiased_cnns, name)(pretrained=False, filter_size=4, **kwargs).eval()


def blur_sites(model: nn.Module) -> dict[str, nn.Module]:
    import antialiased_cnns

    return {name: module for name, module in model.named_modules() if isinstance(module, antialiased_cnns.BlurPool)}


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_blur_blocks_compute_what_antialiased_cnns_blocks_compute(built, name) -> None:
    original = built[name]
    swapped, report = swap_pooling(original, "blur", input_size=(3, SIZE, SIZE), include_strided_convolutions=True)
    swapped.eval()
    assert report.failed == []
    reference = antialiased(name)
    randomise_batch_norms(reference, 2)
    copy_weights_in_order(reference, swapped)
    strided = "conv2" if name == "resnet50" else "conv1"  # torchvision v1.5 Bottleneck strides in conv2
    following = "conv3" if name == "resnet50" else "conv2"
    placed = dict(report.placed)
    for stage in ("layer2", "layer3", "layer4"):
        block = swapped.get_submodule(f"{stage}.0")
        assert getattr(block, strided).stride == (1, 1)
        # The blur follows the strided convolution's BN and (shared) ReLU: it sits in front
        # of the next convolution, exactly where antialiased-cnns puts it.
        assert placed[f"{stage}.0.{strided}"] == f"before {stage}.0.{following}"
        sequence = getattr(block, following)
        assert [type(module).__name__ for module in sequence] == ["BlurPool", "Conv2d"]
        # The shortcut: blur, then the 1x1 convolution at stride 1, then BN.
        assert placed[f"{stage}.0.downsample.0"] == f"before {stage}.0.downsample.0"
        shortcut = block.downsample[0]
        assert type(shortcut[0]).__name__ == "BlurPool" and shortcut[1].stride == (1, 1)
        assert not any(isinstance(module, nn.MaxPool2d) for module in block.modules())
    # Stem (antialiased-cnns' pool_only=False): conv at stride 1, BN, ReLU, blur; then the
    # max site, MaxPool(3, stride 1) + blur (antialiased-cnns uses a 2x2 max there; the
    # swap keeps the replaced layer's 3x3 kernel and padding so sizes match torchvision's).
    assert placed["conv1"] == "after relu" and swapped.conv1.stride == (1, 1)
    assert [type(module).__name__ for module in swapped.relu] == ["ReLU", "BlurPool"]
    assert [type(module).__name__ for module in swapped.maxpool] == ["MaxPool2d", "BlurPool"]
    assert all(module.filt_size == 4 for module in blur_sites(swapped).values())
    # Same weights, same numbers: every stage of the swapped torchvision model equals the
    # antialiased-cnns stage.
    x = torch.randn(2, swapped.layer1[0].conv1.in_channels, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, theirs = x, x
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            ours, theirs = swapped.get_submodule(stage)(ours), reference.get_submodule(stage)(theirs)
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_resnet18_blur_for_strided_convolutions_has_no_max_before_it(built) -> None:
    swapped, report = swap_pooling(
        built["resnet18"], "blur", input_size=(3, SIZE, SIZE), include_strided_convolutions=True
    )
    assert len(report.placed) == 1 + 3 * 2  # stem conv; conv1 and downsample of layers 2-4
    for _, where in report.placed:
        site = swapped.get_submodule(where.split()[1])
        assert any(type(module).__name__ == "BlurPool" for module in site)
        assert not any(isinstance(module, nn.MaxPool2d) for module in site.modules())
    # The only max left is the stem's, at stride 1 in front of its blur.
    maxima = [name for name, module in swapped.named_modules() if isinstance(module, nn.MaxPool2d)]
    assert maxima == ["maxpool.0"] and swapped.maxpool[0].stride == 1


@pytest.mark.parametrize("strided", [False, True])
def test_densenet121_blur_equals_antialiased_cnns(built, strided) -> None:
    original = built["densenet121"]
    swapped, report = swap_pooling(original, "blur", input_size=(3, SIZE, SIZE), include_strided_convolutions=strided)
    swapped.eval()
    for index in (1, 2, 3):
        pool = swapped.get_submodule(f"features.transition{index}.pool")
        assert any(type(module).__name__ == "BlurPool" for module in pool.modules())
        assert not any(isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) for module in pool.modules())
    if strided:
        assert dict(report.placed) == {"features.conv0": "after features.relu0"}
    # antialiased-cnns' pool_only=True leaves the stem convolution strided; pool_only=False
    # antialiases it with a blur after norm0 and relu0, as the swap does.
    reference = antialiased("densenet121", pool_only=not strided)
    randomise_batch_norms(reference, 4)
    copy_weights_in_order(reference, swapped)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), reference(x), atol=1e-5, rtol=1e-4)


def test_mobilenet_v2_blur_blocks_equal_antialiased_cnns(built) -> None:
    swapped, _ = swap_pooling(
        built["mobilenet_v2"], "blur", input_size=(3, SIZE, SIZE), include_strided_convolutions=True
    )
    swapped.eval()
    reference = antialiased("mobilenet_v2")
    randomise_batch_norms(reference, 6)
    copy_weights_in_order(reference, swapped)
    # antialiased-cnns leaves MobileNetV2's stem convolution strided; from the first
    # inverted residual block on, the two networks are the same function.
    x = torch.randn(2, 32, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(swapped.features[1:](x), reference.features[1:](x), atol=1e-5, rtol=1e-4)
    for index in (2, 4, 7, 14):  # the stride-2 blocks: dw conv, BN, ReLU6, blur, pw conv, BN
        block = swapped.features[index].conv
        assert [type(module).__name__ for module in block[1]] == ["Conv2d", "BatchNorm2d", "Sequential"]
        assert [type(module).__name__ for module in block[1][2]] == ["ReLU6", "BlurPool"]


@pytest.mark.slow
def test_vgg16_blur_features_equal_antialiased_cnns() -> None:
    from antialiased_cnns.vgg import cfg, make_layers

    torch.manual_seed(8)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"]).eval()
    swapped, report = swap_pooling(features, "blur", input_size=(3, SIZE, SIZE))
    assert len(report.replaced) == 5
    reference = make_layers(cfg["D"], filter_size=4).eval()
    copy_weights_in_order(reference, swapped)
    # 64 px: the last blur sees 4x4 maps, large enough for antialiased-cnns' reflection.
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), reference(x), atol=1e-5, rtol=1e-4)


def conv_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """(input shape, output shape) of every convolution and linear layer's first call."""
    shapes: dict[str, tuple] = {}

    def recorder(name: str):
        def record(module: nn.Module, inputs, output) -> None:
            shapes.setdefault(name, (inputs[0].shape, output.shape))

        return record

    hooks = [
        module.register_forward_hook(recorder(name))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            shapes[""] = (x.shape, model(x).shape)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "densenet121", "mobilenet_v2", "vgg16"])
@pytest.mark.parametrize("kind", ["blur", "lift", "skip"])
def test_strided_convolution_swap_keeps_every_layers_input_shape(built, name, kind) -> None:
    original = built[name]
    x = torch.rand(1, 3, 57, 57, generator=torch.Generator().manual_seed(10))
    swapped, report = swap_pooling(original, kind, input_size=(3, 57, 57), include_strided_convolutions=True)
    swapped.eval()
    assert report.failed == []
    assert not any(isinstance(m, nn.Conv2d) and m.stride != (1, 1) for m in swapped.modules())
    before = conv_shapes(original, x)
    after = {}
    for layer, shapes in conv_shapes(swapped, x).items():
        head, _, tail = layer.rpartition(".")
        if layer not in before and tail.isdigit() and head in before:
            layer = head  # wrapped as Sequential(pooling, layer)
        if layer in before:
            after[layer] = shapes
    assert after.keys() == before.keys()
    pooled_first = {where.split()[1] for _, where in report.placed if where.startswith("before")}
    for layer, (input_shape, output_shape) in before.items():
        if layer in pooled_first:
            # pooling -> 1x1 convolution: the convolution sees the pooled map, and gives
            # the size the strided 1x1 convolution gave.
            assert after[layer][1] == output_shape, layer
        else:
            # Everything else, the classifier included, sees the map size it saw before.
            assert after[layer][0] == input_shape, layer
    assert after[""][1] == before[""][1]


@pytest.mark.parametrize("filter_size", [1, 2, 3, 4, 5])
def test_blur_filter_size_reaches_every_blur(built, filter_size) -> None:
    swapped, _ = swap_pooling(
        built["resnet18"], "blur", input_size=(3, 32, 32), include_strided_convolutions=True, filter_size=filter_size
    )
    sites = blur_sites(swapped)
    assert len(sites) == 8 and all(module.filt_size == filter_size for module in sites.values())
    with torch.no_grad():
        assert swapped.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 1000)


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
