"""Tests for the pooling registry (robustbench_lift/nn/kinds.py and pooling.py, docs/layers.md)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_lift.errors import UserError
from robustbench_lift.nn.lifting import LiftDownPool
from robustbench_lift.nn.pooling import POOLINGS, PoolGeometry, make_pooling, pooling_table, resolve_options

SPEC_KINDS = {"max", "avg", "skip", "blur", "lift", "haar", "lift53"}

GEOMETRIES = [
    PoolGeometry(2, 2, 0),
    PoolGeometry(3, 2, 1),
    PoolGeometry(3, 2, 0),
    PoolGeometry(2, 2, 0, ceil_mode=True),
    PoolGeometry(3, 2, 0, ceil_mode=True),  # GoogLeNet / SqueezeNet
    PoolGeometry(3, 2, 1, ceil_mode=True),
]
SIZES = [(4, 4), (5, 5), (6, 7), (8, 8), (9, 12), (15, 16)]


def torch_pool(geometry: PoolGeometry) -> nn.MaxPool2d:
    return nn.MaxPool2d(geometry.kernel_size, geometry.stride, geometry.padding, ceil_mode=geometry.ceil_mode)


def test_registry_holds_the_spec_kinds() -> None:
    assert set(POOLINGS) == SPEC_KINDS


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("kind", sorted(SPEC_KINDS))
def test_every_kind_keeps_the_replaced_layers_output_shape(kind, geometry) -> None:
    layer = make_pooling(kind, 3, geometry)
    reference = torch_pool(geometry)
    for training in (True, False):
        layer.train(training)
        for height, width in SIZES:
            x = torch.randn(2, 3, height, width)
            expected = reference(x).shape
            assert layer(x).shape == expected, (kind, geometry, height, width)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_output_length_matches_torch(geometry) -> None:
    reference = torch_pool(geometry)
    for length in range(3, 40):
        expected = reference(torch.zeros(1, 1, length, length)).shape[-1]
        assert geometry.output_length(length) == expected, length


@pytest.mark.parametrize("options", [{}, {"kernel_size": 5, "groups": "dense"}, {"kernel_size": 7, "combine": "HH"}, {"kernel_size": 1}])
def test_lift_options_keep_shapes(options) -> None:
    geometry = PoolGeometry(3, 2, 1)
    layer = make_pooling("lift", 4, geometry, **options)
    x = torch.randn(1, 4, 11, 10)
    assert layer(x).shape == torch_pool(geometry)(x).shape


def test_blur_filter_sizes_keep_shapes() -> None:
    for filter_size in (1, 3, 5, 7):
        for geometry in GEOMETRIES:
            layer = make_pooling("blur", 2, geometry, filter_size=filter_size)
            x = torch.randn(1, 2, 9, 10)
            assert layer(x).shape == torch_pool(geometry)(x).shape, (filter_size, geometry)


def test_max_and_avg_are_the_torch_layers() -> None:
    geometry = PoolGeometry(3, 2, 1)
    x = torch.randn(1, 2, 9, 8)
    torch.testing.assert_close(make_pooling("max", 2, geometry)(x), torch_pool(geometry)(x))
    # Average pooling does not count the padding, so border outputs are true means.
    torch.testing.assert_close(make_pooling("avg", 2, geometry)(x), nn.AvgPool2d(3, 2, 1, count_include_pad=False)(x))
    ones = torch.ones(1, 1, 6, 6)
    torch.testing.assert_close(make_pooling("avg", 1, geometry)(ones), torch.ones(1, 1, 3, 3))


def test_skip_keeps_every_second_sample() -> None:
    x = torch.arange(2 * 7 * 9, dtype=torch.float32).view(1, 2, 7, 9)
    out = make_pooling("skip", 2, PoolGeometry(2, 2, 0))(x)
    # 2x2 stride 2 without ceil mode gives floor(7/2) x floor(9/2).
    torch.testing.assert_close(out, x[..., 0:6:2, 0:8:2])


def test_padded_ceil_mode_layer_gets_its_extra_border_output() -> None:
    # 3x3/2, padding 1, ceil mode on 8 px: torch gives 5 outputs, the last one centred on
    # the (missing) sample 8, i.e. seeing only the border sample 7.
    x = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    out = make_pooling("skip", 1, PoolGeometry(3, 2, 1, ceil_mode=True))(x)
    assert out.shape == (1, 1, 5, 5)
    torch.testing.assert_close(out[..., :4, :4], x[..., ::2, ::2])
    torch.testing.assert_close(out[0, 0, 4, :4], x[0, 0, 7, ::2])


def test_haar_pooling_low_band_is_average_pooling() -> None:
    x = torch.randn(1, 3, 8, 6)
    out = make_pooling("haar", 3, PoolGeometry(2, 2, 0), combine="LL")(x)
    torch.testing.assert_close(out, nn.functional.avg_pool2d(x, 2), atol=1e-6, rtol=1e-6)


def test_lifting_kinds_build_lift_down_pools_with_their_scheme() -> None:
    for kind, scheme in (("lift", "learned"), ("haar", "haar"), ("lift53", "cdf53")):
        pools = [module for module in make_pooling(kind, 3).modules() if isinstance(module, LiftDownPool)]
        assert len(pools) == 1 and pools[0].scheme == scheme and pools[0].combine == "sum"
    dense = [m for m in make_pooling("lift", 4, groups="dense", kernel_size=5).modules() if isinstance(m, LiftDownPool)][0]
    assert dense.groups == 1 and dense.kernel_size == 5


# ---------------------------------------------------------------- errors


def test_unknown_kind_is_a_user_error_naming_it() -> None:
    with pytest.raises(UserError, match="'nope'") as error:
        make_pooling("nope", 3)
    assert "\n" not in str(error.value)
    assert "lift" in str(error.value)  # lists the known kinds


@pytest.mark.parametrize("kind, option", [("lift", "bogus"), ("max", "filter_size"), ("blur", "kernel_size"), ("haar", "groups")])
def test_unknown_option_is_a_user_error_naming_it(kind, option) -> None:
    with pytest.raises(UserError, match=repr(option)):
        make_pooling(kind, 3, **{option: 3})
    with pytest.raises(UserError, match=repr(option)):
        resolve_options(kind, {option: 3})


@pytest.mark.parametrize(
    "kind, options",
    [
        ("lift", {"kernel_size": 4}),
        ("lift", {"groups": "half"}),
        ("lift", {"combine": "bands"}),
        ("haar", {"combine": "mean"}),
        ("blur", {"filter_size": 9}),
    ],
)
def test_bad_option_values_are_user_errors(kind, options) -> None:
    with pytest.raises(UserError):
        make_pooling(kind, 3, **options)


def test_unsupported_stride_is_a_user_error() -> None:
    with pytest.raises(UserError, match="stride-3"):
        make_pooling("lift", 3, PoolGeometry(3, 3, 0))
    assert make_pooling("max", 3, PoolGeometry(3, 3, 0))(torch.zeros(1, 3, 9, 9)).shape == (1, 3, 3, 3)


def test_resolve_options_fills_defaults_and_converts_types() -> None:
    assert resolve_options("lift", None) == {"combine": "sum", "kernel_size": 3, "groups": "depthwise"}
    assert resolve_options("lift", {"kernel_size": "5"}) == {"combine": "sum", "kernel_size": 5, "groups": "depthwise"}
    assert resolve_options("max", {}) == {}
    assert resolve_options("blur", {}) == {"filter_size": 3}


def test_pooling_table_lists_every_kind_with_its_options() -> None:
    rows = pooling_table()
    assert [row["kind"] for row in rows] == list(POOLINGS)
    by_kind = {row["kind"]: row for row in rows}
    for kind in POOLINGS:
        row = by_kind[kind]
        assert row["description"]
        options = POOLINGS.get(kind).options
        if options:
            for name in options:
                assert name in row["options"], (kind, name)
        else:
            assert row["options"] == "-"
    assert "filter_size=3" in by_kind["blur"]["options"]
    assert "kernel_size=3" in by_kind["lift"]["options"]
