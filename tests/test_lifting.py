"""Tests for the lifting layers (robustbench_lift/nn/lifting.py, docs/layers.md)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from robustbench_lift.models import build_model
from robustbench_lift.nn.lifting import (
    HORIZONTAL,
    SHARING,
    VERTICAL,
    Cdf53Predict,
    Cdf53Update,
    HaarPredict,
    HaarUpdate,
    LearnedLiftingOperator,
    LiftDownPool,
    LiftingStep,
    LiftUpPool,
    SubBands,
    _StepTerms,
    lift_pools,
    lifting_regularization,
)

SCHEMES = ("learned", "haar", "cdf53")


def randomise(module: torch.nn.Module, generator: torch.Generator, scale: float) -> None:
    """Overwrites every parameter with scaled standard-normal values."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


# ---------------------------------------------------------------- invertibility


ROUND_TRIP = dict(
    n=st.integers(1, 2),
    c=st.integers(1, 4),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    kernel_size=st.sampled_from([1, 3, 5, 7]),
    dense=st.booleans(),
    scheme=st.sampled_from(SCHEMES),
    share=st.sampled_from(SHARING),
    training=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)


def round_trip(n, c, h, w, kernel_size, dense, scheme, share, scale, training, seed, dtype) -> tuple:
    """(input, down-then-up output) of a LiftDownPool with random P/U of ``scale``."""
    generator = torch.Generator().manual_seed(seed)
    groups = 1 if dense else None
    down = LiftDownPool(c, combine="bands", kernel_size=kernel_size, groups=groups, scheme=scheme, share=share)
    randomise(down, generator, scale)
    down.to(dtype).train(training)
    x = torch.randn(n, c, h, w, generator=generator, dtype=dtype)

    bands = down(x)

    assert isinstance(bands, tuple) and len(bands) == 4
    for band in bands:
        assert band.shape == (n, c, math.ceil(h / 2), math.ceil(w / 2)) and band.dtype == dtype
    restored = LiftUpPool(down)(*bands, output_size=(h, w))
    assert restored.shape == x.shape
    return x, restored


@settings(max_examples=50, deadline=None)
@given(scale=st.floats(0.05, 3.0), **ROUND_TRIP)
def test_down_then_up_reproduces_the_input_exactly_in_float64(scale, **case) -> None:
    # Large P/U weights (scale 3, dense 7-tap) drive the bands to tens; in float32 the
    # round trip then carries their rounding (a few 1e-5, on main's code too). In float64
    # the inverse must hold to 1e-10 whatever the weights.
    x, restored = round_trip(scale=scale, dtype=torch.float64, **case)
    torch.testing.assert_close(restored, x, atol=1e-10, rtol=1e-10)


@settings(max_examples=50, deadline=None)
@given(scale=st.floats(0.05, 1.0), **ROUND_TRIP)
def test_down_then_up_reproduces_the_input_in_float32(scale, **case) -> None:
    """The float32 path (channels-last, sigmoid form of tanh on the CPU) with P/U weights
    of a trained layer's size."""
    x, restored = round_trip(scale=scale, dtype=torch.float32, **case)
    torch.testing.assert_close(restored, x, atol=1e-5, rtol=1e-5)


def test_up_pool_without_crop_gives_the_even_padded_size() -> None:
    down = LiftDownPool(2, combine="bands", scheme="cdf53")
    x = torch.randn(1, 2, 5, 7)
    restored = LiftUpPool(down)(*down(x))
    assert restored.shape == (1, 2, 6, 8)
    torch.testing.assert_close(restored[..., :5, :7], x, atol=1e-5, rtol=1e-5)
    # The padding is a reflection: the extra row/column repeat row/column H-2 / W-2.
    torch.testing.assert_close(restored[..., 5, :7], x[..., 3, :], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(restored[..., :5, 7], x[..., :, 5], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("share", SHARING)
@pytest.mark.parametrize("size", [(8, 8), (7, 10), (1, 3)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_float64_round_trip_is_exact_in_both_sharing_modes(share, size, memory_format) -> None:
    generator = torch.Generator().manual_seed(11)
    down = LiftDownPool(5, kernel_size=5, share=share).double()
    randomise(down, generator, 1.0)
    x = torch.randn(2, 5, *size, generator=generator, dtype=torch.float64).contiguous(memory_format=memory_format)
    bands = down.forward_bands(x)
    assert isinstance(bands, SubBands) and bands.LL.dtype == torch.float64
    # The bands come back in the input's memory order.
    assert all(band.is_contiguous(memory_format=memory_format) for band in bands)
    restored = LiftUpPool(down)(*bands, output_size=size)
    torch.testing.assert_close(restored, x, atol=1e-12, rtol=1e-12)


def test_up_pool_uses_the_down_layers_own_parameters() -> None:
    down = LiftDownPool(3)
    up = LiftUpPool(down)
    assert {id(parameter) for parameter in up.parameters()} == {id(parameter) for parameter in down.parameters()}
    # A decoder that trains through the up pool trains the encoder's P/U.
    x = torch.randn(1, 3, 8, 8)
    bands = down.forward_bands(x)
    up(*(band.detach() for band in bands)).pow(2).sum().backward()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in down.parameters())


@pytest.mark.parametrize("combine", ["sum", "LL", "HH", "bands"])
def test_forward_bands_ignores_combine(combine) -> None:
    generator = torch.Generator().manual_seed(12)
    reference = LiftDownPool(2, combine="bands")
    randomise(reference, generator, 0.5)
    layer = LiftDownPool(2, combine=combine)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(1, 2, 6, 6, generator=generator)
    for ours, theirs in zip(layer.forward_bands(x), reference(x)):
        torch.testing.assert_close(ours, theirs)
    assert layer.sub_bands(x).keys() == {"LL", "LH", "HL", "HH"}


def test_inverse_needs_the_same_parameters() -> None:
    """The round trip is exact because P/U are shared: another layer's P/U do not invert."""
    generator = torch.Generator().manual_seed(0)
    down = LiftDownPool(3, combine="bands")
    other = LiftDownPool(3, combine="bands")
    randomise(down, generator, 1.0)
    randomise(other, generator, 1.0)
    x = torch.randn(2, 3, 8, 8, generator=generator)
    wrong = LiftUpPool(other)(*down(x))
    assert (wrong - x).abs().max() > 1e-2


# ---------------------------------------------------------------- fixed schemes


def test_haar_low_band_is_two_by_two_average_pooling() -> None:
    x = torch.randn(2, 3, 8, 10, generator=torch.Generator().manual_seed(1))
    low = LiftDownPool(3, combine="LL", scheme="haar")(x)
    torch.testing.assert_close(low, F.avg_pool2d(x, 2), atol=1e-6, rtol=1e-6)


def test_haar_odd_sizes_are_reflect_padded_before_averaging() -> None:
    x = torch.randn(1, 2, 7, 9, generator=torch.Generator().manual_seed(2))
    low = LiftDownPool(2, combine="LL", scheme="haar")(x)
    expected = F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode="reflect"), 2)
    assert low.shape == (1, 2, 4, 5)
    torch.testing.assert_close(low, expected, atol=1e-6, rtol=1e-6)


def test_haar_sub_bands_of_one_block_by_hand() -> None:
    # [[a, b], [c, d]] = [[1, 2], [3, 5]]. Horizontal: s_h = pair means (1.5, 4),
    # d_h = odd - even (1, 2). Vertical on s_h: LL = 2.75, LH = 4 - 1.5 = 2.5;
    # vertical on d_h: HL = (1 + 2) / 2 = 1.5, HH = 2 - 1 = 1.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    low_low, low_high, high_low, high_high = LiftDownPool(1, combine="bands", scheme="haar")(x)
    assert low_low.item() == pytest.approx(2.75)
    assert low_high.item() == pytest.approx(2.5)
    assert high_low.item() == pytest.approx(1.5)
    assert high_high.item() == pytest.approx(1.0)
    assert LiftDownPool(1, combine="sum", scheme="haar")(x).item() == pytest.approx(2.75 + 2.5 + 1.5 + 1.0)


def test_haar_operators() -> None:
    even = torch.tensor([1.0, 5.0])
    detail = torch.tensor([2.0, -4.0])
    torch.testing.assert_close(HaarPredict(HORIZONTAL)(even), even)
    torch.testing.assert_close(HaarUpdate(HORIZONTAL)(detail), torch.tensor([1.0, -2.0]))


# x = [1, 4, 2, 8, 5, 7, 3, 6]: even = [1, 2, 5, 3], odd = [4, 8, 7, 6].
# P(even)[n] = (even[n] + even[n+1]) / 2, right border mirrored (even[4] := even[3]):
#   [1.5, 3.5, 4, 3]  ->  detail = odd - P = [2.5, 4.5, 3, 3]
# U(detail)[n] = (detail[n-1] + detail[n]) / 4, left border mirrored (detail[-1] := detail[0]):
#   [1.25, 1.75, 1.875, 1.5]  ->  approximation = even + U = [2.25, 3.75, 6.875, 4.5]
CDF53_SIGNAL = [1.0, 4.0, 2.0, 8.0, 5.0, 7.0, 3.0, 6.0]
CDF53_DETAIL = [2.5, 4.5, 3.0, 3.0]
CDF53_APPROXIMATION = [2.25, 3.75, 6.875, 4.5]
# A ramp: every interior detail is 0 (linear signals are predicted exactly); the last
# odd sample 8 is predicted from 7 and the mirrored 7, detail 1; U = [0, 0, 0, 1/4].
RAMP_DETAIL = [0.0, 0.0, 0.0, 1.0]
RAMP_APPROXIMATION = [1.0, 3.0, 5.0, 7.25]


@pytest.mark.parametrize(
    "signal, detail, approximation",
    [
        (CDF53_SIGNAL, CDF53_DETAIL, CDF53_APPROXIMATION),
        ([1.0, 2, 3, 4, 5, 6, 7, 8], RAMP_DETAIL, RAMP_APPROXIMATION),
    ],
)
@pytest.mark.parametrize("axis", [HORIZONTAL, VERTICAL])
def test_cdf53_step_by_hand(signal, detail, approximation, axis) -> None:
    step = LiftingStep(Cdf53Predict(axis), Cdf53Update(axis), axis)
    x = torch.tensor(signal).view(1, 1, 1, -1)
    if axis == VERTICAL:
        x = x.transpose(-1, -2)
    s, d, _ = step(x)
    if axis == VERTICAL:
        s, d = s.transpose(-1, -2), d.transpose(-1, -2)
    torch.testing.assert_close(d.flatten(), torch.tensor(detail))
    torch.testing.assert_close(s.flatten(), torch.tensor(approximation))
    restored = step.inverse(*step(x)[:2])
    torch.testing.assert_close(restored, x)


def test_cdf53_pool_on_rows_repeating_one_signal() -> None:
    # Two identical rows: the vertical step predicts them exactly (zero LH/HH), so LL is
    # the horizontal approximation and HL the horizontal detail.
    x = torch.tensor([CDF53_SIGNAL, CDF53_SIGNAL]).view(1, 1, 2, 8)
    low_low, low_high, high_low, high_high = LiftDownPool(1, combine="bands", scheme="cdf53")(x)
    torch.testing.assert_close(low_low.flatten(), torch.tensor(CDF53_APPROXIMATION))
    torch.testing.assert_close(high_low.flatten(), torch.tensor(CDF53_DETAIL))
    assert low_high.abs().max() == 0 and high_high.abs().max() == 0


# ---------------------------------------------------------------- combinations and shapes


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("size", [(8, 8), (7, 10), (5, 3), (1, 1)])
def test_combine_options_pick_or_sum_the_bands(scheme, size) -> None:
    generator = torch.Generator().manual_seed(3)
    bands_layer = LiftDownPool(4, combine="bands", scheme=scheme)
    randomise(bands_layer, generator, 0.5)
    x = torch.randn(2, 4, *size, generator=generator)
    bands = dict(zip(("LL", "LH", "HL", "HH"), bands_layer(x)))
    for combine in ("sum", "LL", "LH", "HL", "HH"):
        layer = LiftDownPool(4, combine=combine, scheme=scheme)
        layer.load_state_dict(bands_layer.state_dict())
        out = layer(x)
        assert out.shape == (2, 4, math.ceil(size[0] / 2), math.ceil(size[1] / 2))
        expected = bands["LL"] + bands["LH"] + bands["HL"] + bands["HH"] if combine == "sum" else bands[combine]
        torch.testing.assert_close(out, expected)


def test_unknown_combine_is_refused() -> None:
    with pytest.raises(ValueError, match="combine"):
        LiftDownPool(2, combine="mean")


def test_groups_choose_depthwise_or_dense_convolutions() -> None:
    depthwise = LiftDownPool(4, kernel_size=5, share="per_direction")
    dense = LiftDownPool(4, kernel_size=5, groups=1, share="per_direction")
    assert depthwise.horizontal.predict.spatial.weight.shape == (4, 1, 1, 5)
    assert depthwise.vertical.update.spatial.weight.shape == (4, 1, 5, 1)
    assert dense.horizontal.predict.spatial.weight.shape == (4, 4, 1, 5)
    assert dense.vertical.update.spatial.weight.shape == (4, 4, 5, 1)
    shared = LiftDownPool(4, kernel_size=5, groups=1)
    assert shared.predict.spatial.weight.shape == (4, 4, 1, 5) and shared.update.spatial.weight.shape == (4, 4, 1, 5)


def test_shared_pair_is_the_horizontal_pair_transposed_for_the_vertical_lifts() -> None:
    generator = torch.Generator().manual_seed(13)
    shared = LiftDownPool(3, combine="bands", share="all")
    randomise(shared, generator, 1.0)
    per_direction = LiftDownPool(3, combine="bands", share="per_direction")
    with torch.no_grad():
        for step in (per_direction.horizontal, per_direction.vertical):
            for mine, theirs in ((step.predict, shared.predict), (step.update, shared.update)):
                taps = theirs.spatial.weight if step.axis == HORIZONTAL else theirs.spatial.weight.transpose(-1, -2)
                mine.spatial.weight.copy_(taps)
                mine.spatial.bias.copy_(theirs.spatial.bias)
                mine.mix.load_state_dict(theirs.mix.state_dict())
    x = torch.randn(2, 3, 10, 6, generator=generator)
    for ours, theirs in zip(shared(x), per_direction(x)):
        torch.testing.assert_close(ours, theirs)
    # The state is one pair, named predict/update.
    assert sorted(shared.state_dict()) == sorted(
        f"{op}.{conv}.{p}" for op in ("predict", "update") for conv in ("spatial", "mix") for p in ("weight", "bias")
    )


@pytest.mark.parametrize("sign", [-1, 1])
@pytest.mark.parametrize("axis", [HORIZONTAL, VERTICAL])
def test_fused_shift_equals_base_plus_sign_times_tanh_operator(sign, axis) -> None:
    """The CPU path computes tanh(a) as 2 sigmoid(2a) - 1 inside base + sign * P(z)."""
    generator = torch.Generator().manual_seed(14)
    operator = LearnedLiftingOperator(4, HORIZONTAL, 3).double()
    randomise(operator, generator, 1.0)
    base = torch.randn(2, 4, 6, 6, generator=generator, dtype=torch.float64)
    z = torch.randn(2, 4, 6, 6, generator=generator, dtype=torch.float64)
    expected = base + sign * operator(z, axis)
    torch.testing.assert_close(operator.shifted(base, z, sign, axis), expected, atol=1e-12, rtol=1e-12)


def test_memory_format_of_the_output_follows_the_input() -> None:
    layer = LiftDownPool(4)
    x = torch.randn(2, 4, 8, 8)
    assert layer(x).is_contiguous()
    channels_last = x.contiguous(memory_format=torch.channels_last)
    out = layer(channels_last)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, layer(x))


# ---------------------------------------------------------------- regularisation


def test_regularisation_terms_recorded_in_training_only() -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    layer = LiftDownPool(3).eval()
    layer(x)
    with pytest.raises(RuntimeError):
        layer.regularization_terms()
    assert all(term.item() == 0 for term in lifting_regularization(layer))
    layer.train()
    layer(x)
    detail, approximation = layer.regularization_terms()
    assert detail.dim() == 0 and approximation.dim() == 0
    assert detail.item() > 0 and approximation.item() > 0


def test_haar_regularisation_terms_by_hand() -> None:
    x = torch.randn(2, 3, 6, 10, generator=torch.Generator().manual_seed(5))
    layer = LiftDownPool(3, combine="bands", scheme="haar").train()
    _, low_high, _, high_high = layer(x)
    detail, approximation = layer.regularization_terms()
    # Haar's approximation is exactly the pair mean: zero approximation term.
    assert approximation.item() == pytest.approx(0.0, abs=1e-10)
    # Detail term: mean squared detail of each of the three lifting steps, summed.
    horizontal_detail = x[..., 1::2] - x[..., 0::2]
    expected = horizontal_detail.pow(2).mean() + low_high.pow(2).mean() + high_high.pow(2).mean()
    assert detail.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cdf53_approximation_term_is_not_zero() -> None:
    layer = LiftDownPool(1, scheme="cdf53").train()
    layer(torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(6)))
    assert layer.regularization_terms()[1].item() > 1e-4


def test_model_regularisation_sums_every_lift_pool_and_reaches_parameters() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", "lift").train()
    pools = lift_pools(model)
    assert len(pools) == 3
    model(torch.rand(2, 3, 32, 32))
    detail, approximation = lifting_regularization(model)
    expected_detail = sum(pool.regularization_terms()[0] for pool in pools)
    expected_approximation = sum(pool.regularization_terms()[1] for pool in pools)
    assert detail.item() == pytest.approx(expected_detail.item(), rel=1e-6)
    assert approximation.item() == pytest.approx(expected_approximation.item(), rel=1e-6)
    assert detail.item() > 0 and approximation.item() > 0
    # The terms are differentiable in the predict/update parameters, so their weights
    # in the training loss change the update those parameters get.
    (detail + approximation).backward()
    for pool in pools:
        for name, parameter in pool.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_regularisation_weights_change_training(tmp_path, monkeypatch) -> None:
    """training.train adds weight x term to the loss: a non-zero weight changes the
    trained model, zero weights switch the terms off, and fixed lifting ignores them."""
    import numpy as np

    from robustbench_lift import training
    from robustbench_lift.data.datasets import ImageDataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 40).astype(np.int64)
    tiny = ImageDataset("tiny", images, labels, [str(i) for i in range(10)])
    monkeypatch.setattr(training, "load_dataset", lambda *args, **kwargs: tiny)

    def trained(pooling: str, detail_weight: float, approximation_weight: float):
        config = training.TrainingConfig(
            pooling=pooling,
            epochs=1,
            batch_size=16,
            validation_size=8,
            detail_weight=detail_weight,
            approximation_weight=approximation_weight,
        )
        path = tmp_path / f"{pooling}-{detail_weight}-{approximation_weight}.safetensors"
        metadata = training.train(config, path)
        from safetensors.torch import load_file

        return load_file(str(path)), metadata

    def same(first, second) -> bool:
        return all(torch.equal(first[key], second[key]) for key in first)

    off, metadata = trained("lift", 0.0, 0.0)
    assert metadata["training"]["detail_weight"] == 0.0
    assert same(off, trained("lift", 0.0, 0.0)[0])  # training is deterministic
    with_detail, metadata = trained("lift", 5.0, 0.0)
    assert metadata["training"]["detail_weight"] == 5.0
    assert not same(off, with_detail)
    assert not same(off, trained("lift", 0.0, 5.0)[0])
    # Haar has no parameters to regularise: the weights are recorded as 0 and ignored.
    haar_off, _ = trained("haar_sum", 0.0, 0.0)
    haar_on, metadata = trained("haar_sum", 5.0, 5.0)
    assert metadata["training"]["detail_weight"] == 0.0
    assert same(haar_off, haar_on)


# ---------------------------------------------------------------- gradients


def test_step_terms_backward_matches_autograd() -> None:
    generator = torch.Generator().manual_seed(15)
    inputs = tuple(
        torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(4)
    )
    assert torch.autograd.gradcheck(_StepTerms.apply, inputs)
    even, odd, approximation, detail = inputs
    detail_term, approximation_term = _StepTerms.apply(*inputs)
    torch.testing.assert_close(detail_term, detail.pow(2).mean())
    torch.testing.assert_close(approximation_term, (approximation - (even + odd) / 2).pow(2).mean())


@pytest.mark.parametrize("share", SHARING)
@pytest.mark.parametrize("groups", [None, 1])
def test_gradients_reach_every_predict_and_update_parameter(groups, share) -> None:
    generator = torch.Generator().manual_seed(7)
    layer = LiftDownPool(3, kernel_size=3, groups=groups, share=share)
    x = torch.randn(2, 3, 9, 8, generator=generator, requires_grad=True)
    layer(x).pow(2).sum().backward()
    names = [name for name, _ in layer.named_parameters()]
    assert len(names) == (16 if share == "per_direction" else 8)
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("share", SHARING)
def test_gradients_match_a_float64_reference(share) -> None:
    """The fused CPU path (channels-last, sigmoid form of tanh, hand-written regulariser
    backward) gives the gradients of the textbook float64 computation to 1e-5."""
    generator = torch.Generator().manual_seed(16)
    layer = LiftDownPool(4, share=share).train()
    randomise(layer, generator, 0.5)
    reference = LiftDownPool(4, share=share).train().double()
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 12, 10, generator=generator, requires_grad=True)
    x64 = x.detach().double().requires_grad_()

    def loss(module, inputs):
        out = module(inputs)
        detail, approximation = module.regularization_terms()
        return out.pow(2).sum() + detail + approximation

    loss(layer, x).backward()
    loss(reference, x64).backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-5, rtol=1e-5)
    for (name, parameter), reference_parameter in zip(layer.named_parameters(), reference.parameters()):
        torch.testing.assert_close(parameter.grad.double(), reference_parameter.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_fixed_schemes_have_no_parameters() -> None:
    assert list(LiftDownPool(3, scheme="haar").parameters()) == []
    assert list(LiftDownPool(3, scheme="cdf53").parameters()) == []
    assert (
        len(list(LiftDownPool(3, scheme="learned", share="per_direction").parameters())) == 16
    )  # 4 operators x 2 convs x (w, b)
    assert len(list(LiftDownPool(3, scheme="learned", share="all").parameters())) == 8  # one P/U pair


def test_unknown_sharing_is_refused() -> None:
    with pytest.raises(ValueError, match="share"):
        LiftDownPool(2, share="vertical")
