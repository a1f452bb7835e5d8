"""Tests for the pooling registry (robustbench_lift/nn/kinds.py and pooling.py, docs/layers.md)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_lift.errors import UserError
from robustbench_lift.nn.lifting import LiftDownPool
from robustbench_lift.nn.pooling import (
    DEPRECATED_KINDS,
    POOLINGS,
    PoolGeometry,
    canonical_kind,
    make_pooling,
    pooling_table,
    recorded_options,
    resolve_options,
)

SPEC_KINDS = {"max", "avg", "skip", "blur", "lift", "haar_sum", "haar_ll", "cdf53_sum", "cdf53_ll"}

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


@pytest.mark.parametrize(
    "options", [{}, {"kernel_size": 5, "groups": "dense"}, {"kernel_size": 7, "combine": "HH"}, {"kernel_size": 1}]
)
def test_lift_options_keep_shapes(options) -> None:
    geometry = PoolGeometry(3, 2, 1)
    layer = make_pooling("lift", 4, geometry, **options)
    x = torch.randn(1, 4, 11, 10)
    assert layer(x).shape == torch_pool(geometry)(x).shape


def test_blur_filter_sizes_keep_shapes() -> None:
    for filter_size in (1, 2, 3, 4, 5):
        for geometry in GEOMETRIES:
            layer = make_pooling("blur", 2, geometry, filter_size=filter_size)
            x = torch.randn(1, 2, 9, 10)
            assert layer(x).shape == torch_pool(geometry)(x).shape, (filter_size, geometry)


@pytest.mark.parametrize(
    "geometry",
    [
        PoolGeometry(2, 2, 0, replaces="avg"),
        PoolGeometry(3, 2, 1, replaces="avg"),
        PoolGeometry(3, 2, 0, replaces="avg"),
        PoolGeometry(2, 2, 0, ceil_mode=True, replaces="avg"),
    ],
    ids=str,
)
def test_blur_at_an_average_site_is_the_blur_alone(geometry) -> None:
    import antialiased_cnns

    layer = make_pooling("blur", 3, geometry)
    assert not any(isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) for module in layer.modules())
    blurs = [module for module in layer.modules() if isinstance(module, antialiased_cnns.BlurPool)]
    assert len(blurs) == 1 and blurs[0].filt_size == 4
    reference = nn.AvgPool2d(geometry.kernel_size, geometry.stride, geometry.padding, ceil_mode=geometry.ceil_mode)
    for height, width in SIZES:
        x = torch.randn(2, 3, height, width)
        out = layer(x)
        assert out.shape == reference(x).shape, (height, width)
        # The blur of the whole map, cropped to the average pooling's output size.
        full = antialiased_cnns.BlurPool(3, filt_size=4, stride=2)(x) if min(height, width) > 2 else None
        if full is not None:
            torch.testing.assert_close(out, full[..., : out.shape[-2], : out.shape[-1]])


def test_blur_at_a_max_site_keeps_a_dense_max_in_front() -> None:
    layer = make_pooling("blur", 3, PoolGeometry(3, 2, 1))
    assert [type(module).__name__ for module in layer] == ["MaxPool2d", "BlurPool"]
    assert layer[0].kernel_size == 3 and layer[0].stride == 1 and layer[0].padding == 1
    assert layer[1].filt_size == 4 and layer[1].stride == 2


def test_blur_at_a_convolution_site_is_the_blur_alone() -> None:
    layer = make_pooling("blur", 3, PoolGeometry(2, 2, 0, ceil_mode=True, replaces="conv"), filter_size=3)
    assert type(layer).__name__ == "BlurPool" and layer.filt_size == 3
    for size in (6, 7):
        # A stride-2 convolution's output is ceil(M/2) of the stride-1 output M.
        assert layer(torch.randn(1, 3, size, size)).shape[-1] == (size + 1) // 2


def test_unknown_site_is_refused() -> None:
    with pytest.raises(ValueError, match="replaces"):
        PoolGeometry(2, 2, 0, replaces="dilated")


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


@pytest.mark.parametrize("size", [(8, 6), (7, 9), (2, 2)])
def test_haar_ll_is_two_by_two_average_pooling(size) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    out = make_pooling("haar_ll", 3, PoolGeometry(2, 2, 0))(x)
    torch.testing.assert_close(out, nn.AvgPool2d(2)(x), atol=1e-6, rtol=1e-6)


def test_haar_sum_is_the_high_pass_dominated_two_by_two_filter() -> None:
    x = torch.randn(2, 3, 8, 10, generator=torch.Generator().manual_seed(1))
    kernel = torch.tensor([[0.25, -0.75], [-0.75, 2.25]]).expand(3, 1, 2, 2)
    out = make_pooling("haar_sum", 3, PoolGeometry(2, 2, 0))(x)
    torch.testing.assert_close(out, nn.functional.conv2d(x, kernel, stride=2, groups=3), atol=1e-5, rtol=1e-5)


def checkerboard(size: int) -> torch.Tensor:
    index = torch.arange(size)
    return ((-1.0) ** (index[:, None] + index[None, :])).view(1, 1, size, size)


@pytest.mark.parametrize("kind", ["haar_sum", "cdf53_sum"])
def test_summed_fixed_lifting_passes_the_checkerboard_four_times_amplified(kind) -> None:
    layer = make_pooling(kind, 1, PoolGeometry(2, 2, 0))
    torch.testing.assert_close(layer(torch.full((1, 1, 8, 8), 3.0)), torch.full((1, 1, 4, 4), 3.0))
    torch.testing.assert_close(layer(checkerboard(8)), torch.full((1, 1, 4, 4), 4.0))


@pytest.mark.parametrize("kind", ["haar_ll", "cdf53_ll"])
def test_ll_fixed_lifting_removes_the_checkerboard(kind) -> None:
    layer = make_pooling(kind, 1, PoolGeometry(2, 2, 0))
    torch.testing.assert_close(layer(torch.full((1, 1, 8, 8), 3.0)), torch.full((1, 1, 4, 4), 3.0))
    torch.testing.assert_close(layer(checkerboard(8)), torch.zeros(1, 1, 4, 4), atol=1e-6, rtol=0)


def test_cdf53_ll_is_the_five_three_low_pass_at_stride_two() -> None:
    x = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(2))
    taps = torch.tensor([-1.0, 2.0, 6.0, 2.0, -1.0]) / 8
    kernel = (taps[:, None] * taps[None, :]).expand(3, 1, 5, 5)
    # Whole-sample symmetric borders, which is torch's "reflect".
    expected = nn.functional.conv2d(nn.functional.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, stride=2, groups=3)
    out = make_pooling("cdf53_ll", 3, PoolGeometry(2, 2, 0))(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_lifting_kinds_build_lift_down_pools_with_their_scheme() -> None:
    expected = {
        "lift": ("learned", "sum"),
        "haar_sum": ("haar", "sum"),
        "haar_ll": ("haar", "LL"),
        "cdf53_sum": ("cdf53", "sum"),
        "cdf53_ll": ("cdf53", "LL"),
    }
    for kind, (scheme, combine) in expected.items():
        pools = [module for module in make_pooling(kind, 3).modules() if isinstance(module, LiftDownPool)]
        assert len(pools) == 1 and pools[0].scheme == scheme and pools[0].combine == combine, kind
    dense = [
        m for m in make_pooling("lift", 4, groups="dense", kernel_size=5).modules() if isinstance(m, LiftDownPool)
    ][0]
    assert dense.groups == 1 and dense.kernel_size == 5 and dense.share == "all"
    shared = make_pooling("lift", 4)
    per_direction = make_pooling("lift", 4, share="per_direction")
    assert [m.share for m in per_direction.modules() if isinstance(m, LiftDownPool)] == ["per_direction"]
    # One P/U pair for the three lifts has half the parameters of one pair per direction.
    assert sum(p.numel() for p in per_direction.parameters()) == 2 * sum(p.numel() for p in shared.parameters())


# ---------------------------------------------------------------- deprecated names and recorded options


@pytest.mark.parametrize(
    "old, options, new",
    [
        ("haar", {}, "haar_sum"),
        ("haar", {"combine": "sum"}, "haar_sum"),
        ("haar", {"combine": "LL"}, "haar_ll"),
        ("lift53", {}, "cdf53_sum"),
        ("lift53", {"combine": "LL"}, "cdf53_ll"),
    ],
)
def test_deprecated_kinds_resolve_to_the_kind_they_compute(old, options, new) -> None:
    with pytest.warns(DeprecationWarning, match=new):
        assert canonical_kind(old, options) == (new, {})
    x = torch.randn(1, 2, 8, 8)
    with pytest.warns(DeprecationWarning):
        layer = make_pooling(old, 2, **options)
    torch.testing.assert_close(layer(x), make_pooling(new, 2)(x))
    with pytest.warns(DeprecationWarning):
        assert resolve_options(old, options) == {}


def test_deprecated_kind_with_another_band_is_a_user_error() -> None:
    with pytest.raises(UserError, match="combine='HH'"):
        make_pooling("haar", 2, combine="HH")


def test_recorded_options_rebuild_old_checkpoints() -> None:
    # A lift checkpoint from before `share` existed had one P/U pair per direction.
    assert recorded_options("lift", {"combine": "sum", "kernel_size": 3, "groups": "depthwise"}) == (
        "lift",
        {"combine": "sum", "kernel_size": 3, "groups": "depthwise", "share": "per_direction"},
    )
    assert recorded_options("lift", {"share": "all"})[1]["share"] == "all"
    with pytest.warns(DeprecationWarning):
        assert recorded_options("lift53", {"combine": "sum"}) == ("cdf53_sum", {})
    assert recorded_options("blur", {"filter_size": 3}) == ("blur", {"filter_size": 3})


# ---------------------------------------------------------------- errors


def test_unknown_kind_is_a_user_error_naming_it() -> None:
    with pytest.raises(UserError, match="'nope'") as error:
        make_pooling("nope", 3)
    assert "\n" not in str(error.value)
    assert "lift" in str(error.value)  # lists the known kinds


@pytest.mark.parametrize(
    "kind, option",
    [
        ("lift", "bogus"),
        ("max", "filter_size"),
        ("blur", "kernel_size"),
        ("haar_sum", "groups"),
        ("cdf53_ll", "combine"),
    ],
)
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
        ("lift", {"share": "horizontal"}),
        ("haar", {"combine": "mean"}),
        ("blur", {"filter_size": 6}),
        ("blur", {"filter_size": 0}),
    ],
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bad_option_values_are_user_errors(kind, options) -> None:
    with pytest.raises(UserError):
        make_pooling(kind, 3, **options)


def test_unsupported_stride_is_a_user_error() -> None:
    with pytest.raises(UserError, match="stride-3"):
        make_pooling("lift", 3, PoolGeometry(3, 3, 0))
    assert make_pooling("max", 3, PoolGeometry(3, 3, 0))(torch.zeros(1, 3, 9, 9)).shape == (1, 3, 3, 3)


def test_resolve_options_fills_defaults_and_converts_types() -> None:
    defaults = {"combine": "sum", "kernel_size": 3, "groups": "depthwise", "share": "all"}
    assert resolve_options("lift", None) == defaults
    assert resolve_options("lift", {"kernel_size": "5"}) == defaults | {"kernel_size": 5}
    assert resolve_options("max", {}) == {}
    assert resolve_options("blur", {}) == {"filter_size": 4}


def test_pooling_table_lists_every_kind_with_its_options() -> None:
    rows = pooling_table()
    assert [row["kind"] for row in rows] == list(POOLINGS) + list(DEPRECATED_KINDS)
    by_kind = {row["kind"]: row for row in rows}
    assert "deprecated name of haar_sum" in by_kind["haar"]["description"]
    assert "cdf53_sum" in by_kind["lift53"]["description"]
    assert "2x2 average" in by_kind["haar_ll"]["description"]
    for kind in POOLINGS:
        row = by_kind[kind]
        assert row["description"]
        options = POOLINGS.get(kind).options
        if options:
            for name in options:
                assert name in row["options"], (kind, name)
        else:
            assert row["options"] == "-"
    assert "filter_size=4" in by_kind["blur"]["options"]
    assert "share='all'" in by_kind["lift"]["options"]
    assert "kernel_size=3" in by_kind["lift"]["options"]
