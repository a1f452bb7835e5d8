"""Lifting-scheme pooling (see ``docs/layers.md``): LiftDownPool, its exact inverse LiftUpPool, and the
predict/update operators they are built from, learned or fixed (Haar, CDF 5/3).

One lifting step along an axis splits x into even and odd samples and computes
``detail = odd - P(even)`` and ``approximation = even + U(detail)``. The inverse is
exact for any P and U, which is what makes the pooling invertible.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_lift.registry import Registry

__all__ = [
    "HORIZONTAL",
    "VERTICAL",
    "SUB_BANDS",
    "SHARING",
    "SubBands",
    "LiftingOperator",
    "LearnedLiftingOperator",
    "HaarPredict",
    "HaarUpdate",
    "Cdf53Predict",
    "Cdf53Update",
    "LiftingScheme",
    "LIFTING_SCHEMES",
    "LiftingStep",
    "lift_step",
    "unlift_step",
    "LiftDownPool",
    "LiftUpPool",
    "lifting_regularization",
    "lifting_regularisation",
    "lift_pools",
]

HORIZONTAL = -1  # the W axis of an NCHW tensor
VERTICAL = -2  # the H axis

SUB_BANDS = ("LL", "LH", "HL", "HH")
# How the predict/update operators are shared across the three 1-D lifts of a LiftDownPool.
SHARING = ("all", "per_direction")


class SubBands(NamedTuple):
    """The four sub-bands of a 2-D lifting: LL and LH from the horizontal approximation,
    HL and HH from the horizontal detail, each ceil(H/2) x ceil(W/2)."""

    LL: Tensor
    LH: Tensor
    HL: Tensor
    HH: Tensor


def _pad_along(x: Tensor, axis: int, before: int, after: int) -> Tensor:
    """Reflect-pad ``x`` along one spatial axis; replicate where the axis is too short.

    Reflection needs more samples than the pad width; tiny maps (a 2-pixel axis under a
    7-tap kernel) fall back to replicating the border so every shape stays valid.
    """
    if before == 0 and after == 0:
        return x
    length = x.shape[axis]
    mode = "reflect" if length > max(before, after) else "replicate"
    pad = (before, after, 0, 0) if axis == HORIZONTAL else (0, 0, before, after)
    return F.pad(x, pad, mode=mode)


class LiftingOperator(nn.Module):
    """P or U of a lifting step, acting along ``axis`` (the one it was built for, unless
    a call names another: a shared operator serves both axes)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def shifted(self, base: Tensor, z: Tensor, sign: int, axis: int | None = None) -> Tensor:
        """``base + sign * self(z)``: the detail (sign -1, from odd and even) or the
        approximation (sign +1, from even and detail). Subclasses may fuse the two."""
        return torch.add(base, self(z, axis), alpha=sign)


class LearnedLiftingOperator(LiftingOperator):
    """P or U of a learned lifting step: ``tanh(conv1x1(relu(convK(reflect_pad(z)))))``.

    The K-tap convolution runs along the lifting axis only (1xK horizontally, Kx1
    vertically), so the operator keeps the map's size and mixes no samples across the
    other axis. ``groups`` = channels gives a depthwise K-tap convolution. The weights are
    stored for ``axis``; applied along the other axis, the same taps are used transposed
    (how one P/U pair is shared by the horizontal and the vertical lifts).
    """

    def __init__(self, channels: int, axis: int, kernel_size: int = 3, groups: int | None = None) -> None:
        super().__init__(axis)
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        groups = channels if groups is None else groups
        if channels % groups:
            raise ValueError(f"groups {groups} must divide channels {channels}")
        self.kernel_size = kernel_size
        shape = (1, kernel_size) if axis == HORIZONTAL else (kernel_size, 1)
        self.spatial = nn.Conv2d(channels, channels, shape, groups=groups, bias=True)
        self.mix = nn.Conv2d(channels, channels, 1, bias=True)

    def _hidden(self, z: Tensor, axis: int | None) -> Tensor:
        axis = self.axis if axis is None else axis
        half = self.kernel_size // 2
        weight = self.spatial.weight if axis == self.axis else self.spatial.weight.transpose(-1, -2)
        # The convolution's output is not needed by its backward pass: relu in place.
        return F.relu_(F.conv2d(_pad_along(z, axis, half, half), weight, self.spatial.bias, groups=self.spatial.groups))

    def forward(self, z: Tensor, axis: int | None = None) -> Tensor:
        return torch.tanh(self.mix(self._hidden(z, axis)))

    def shifted(self, base: Tensor, z: Tensor, sign: int, axis: int | None = None) -> Tensor:
        hidden = self._hidden(z, axis)
        if z.device.type != "cpu":
            return torch.add(base, torch.tanh(self.mix(hidden)), alpha=sign)
        # tanh(a) = 2 sigmoid(2a) - 1: torch's CPU tanh costs about four sigmoids (measured
        # 12 vs 3 ms on 3.2M floats). The doubling of a goes into the 1x1 weights; sign *
        # tanh is formed on its own (x2 is exact, -sign one rounding at scale 1) before it
        # meets base, so base + sign * tanh rounds once, as with torch.tanh, and the round
        # trip through LiftUpPool stays as exact as the tanh form.
        bias = self.mix.bias
        assert bias is not None  # built with bias=True
        sigmoid = torch.sigmoid(F.conv2d(hidden, 2 * self.mix.weight, 2 * bias))
        return base + sigmoid.mul(2 * sign).sub_(sign)


class HaarPredict(LiftingOperator):
    """Haar predictor: the odd sample is predicted by its even neighbour."""

    def forward(self, even: Tensor, axis: int | None = None) -> Tensor:
        return even


class HaarUpdate(LiftingOperator):
    """Haar updater: half the detail, so the approximation is the pair's mean."""

    def forward(self, detail: Tensor, axis: int | None = None) -> Tensor:
        return detail / 2


class Cdf53Predict(LiftingOperator):
    """CDF 5/3 (LeGall) predictor: mean of the two even neighbours of each odd sample.

    The odd sample 2n+1 sits between even samples n and n+1; past the right border the
    signal is mirrored (whole-sample symmetric), so even[n+1] repeats the last even.
    """

    def forward(self, even: Tensor, axis: int | None = None) -> Tensor:
        axis = self.axis if axis is None else axis
        shifted = torch.cat([even.narrow(axis, 1, even.shape[axis] - 1), even.narrow(axis, -1, 1)], dim=axis)
        return (even + shifted) / 2


class Cdf53Update(LiftingOperator):
    """CDF 5/3 updater: a quarter of the sum of the two details beside each even sample.

    Even sample 2n sits between odd samples n-1 and n; before the left border the
    detail is mirrored, so detail[-1] repeats detail[0].
    """

    def forward(self, detail: Tensor, axis: int | None = None) -> Tensor:
        axis = self.axis if axis is None else axis
        shifted = torch.cat([detail.narrow(axis, 0, 1), detail.narrow(axis, 0, detail.shape[axis] - 1)], dim=axis)
        return (detail + shifted) / 4


@dataclass(frozen=True)
class LiftingScheme:
    """How to make the P and U operators of one lifting step along ``axis``."""

    name: str
    learned: bool
    make_predict: Callable[..., LiftingOperator]
    make_update: Callable[..., LiftingOperator]


LIFTING_SCHEMES: Registry[LiftingScheme] = Registry("lifting scheme")
LIFTING_SCHEMES.add(
    "learned",
    LiftingScheme(
        "learned",
        True,
        lambda channels, axis, kernel_size, groups: LearnedLiftingOperator(channels, axis, kernel_size, groups),
        lambda channels, axis, kernel_size, groups: LearnedLiftingOperator(channels, axis, kernel_size, groups),
    ),
)
LIFTING_SCHEMES.add(
    "haar",
    LiftingScheme(
        "haar", False, lambda channels, axis, *_: HaarPredict(axis), lambda channels, axis, *_: HaarUpdate(axis)
    ),
)
LIFTING_SCHEMES.add(
    "cdf53",
    LiftingScheme(
        "cdf53", False, lambda channels, axis, *_: Cdf53Predict(axis), lambda channels, axis, *_: Cdf53Update(axis)
    ),
)


def lift_step(
    x: Tensor, predict: LiftingOperator, update: LiftingOperator, axis: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One 1-D lifting step along ``axis`` (even length): (approximation, detail, even, odd).

    The split is a view (unflatten + unbind) rather than two strided slices: its backward
    is one interleaving copy instead of two zero-filled full-size gradients.
    """
    even, odd = x.unflatten(axis, (x.shape[axis] // 2, 2)).unbind(axis)
    detail = predict.shifted(odd, even, -1, axis)
    approximation = update.shifted(even, detail, 1, axis)
    return approximation, detail, even, odd


def unlift_step(
    approximation: Tensor, detail: Tensor, predict: LiftingOperator, update: LiftingOperator, axis: int
) -> Tensor:
    """The inverse of :func:`lift_step`: recompute even and odd samples and interleave them."""
    even = update.shifted(approximation, detail, -1, axis)
    odd = predict.shifted(detail, even, 1, axis)
    return torch.stack([even, odd], dim=axis).flatten(axis - 1, axis)


class LiftingStep(nn.Module):
    """One 1-D lifting step (split, predict, update) along a spatial axis, and its inverse."""

    def __init__(self, predict: LiftingOperator, update: LiftingOperator, axis: int) -> None:
        super().__init__()
        self.predict = predict
        self.update = update
        self.axis = axis

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (approximation, detail, odd samples); the axis must have even length."""
        approximation, detail, _, odd = lift_step(x, self.predict, self.update, self.axis)
        return approximation, detail, odd

    def inverse(self, approximation: Tensor, detail: Tensor) -> Tensor:
        return unlift_step(approximation, detail, self.predict, self.update, self.axis)


class _StepTerms(torch.autograd.Function):
    """(mean(detail^2), mean((approximation - (even + odd) / 2)^2)) of one lifting step.

    Written out with its backward because, done by autograd (pow/mean, lerp/mse_loss), the
    two regularisers cost about a third of a training step of the layer (profiled).
    """

    @staticmethod
    def forward(ctx: Any, even: Tensor, odd: Tensor, approximation: Tensor, detail: Tensor) -> tuple[Tensor, Tensor]:
        residual = torch.add(approximation, even + odd, alpha=-0.5)
        ctx.save_for_backward(residual, detail)
        count = residual.numel()
        return (detail * detail).sum() / count, (residual * residual).sum() / count

    @staticmethod
    def backward(ctx: Any, grad_detail: Tensor, grad_approximation: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        residual, detail = ctx.saved_tensors
        count = residual.numel()
        grad_residual = residual * (2 * grad_approximation / count)
        half = grad_residual * -0.5
        return half, half, grad_residual, detail * (2 * grad_detail / count)


class LiftDownPool(nn.Module):
    """2-D lifting pooling: halves H and W and returns a combination of four sub-bands.

    Lifts horizontally (giving s_h, d_h), then lifts each vertically: LL and LH from
    s_h, HL and HH from d_h. ``combine`` chooses the output: ``"sum"`` (LL+LH+HL+HH, the
    paper's choice for classification), one sub-band name, or ``"bands"`` (the four as a
    :class:`SubBands` tuple). :meth:`forward_bands` returns the four bands whatever
    ``combine`` says, for encoders whose decoder uses :class:`LiftUpPool`.

    ``share`` says which lifts use the same predict/update (P/U) pair:

    - ``"all"``: one P/U pair for all three 1-D lifts, as in the paper (its first author
      confirmed this in the paper's repository, issue #3). The K taps are stored for the
      horizontal lift (1xK) and used transposed (Kx1) for the vertical ones.
    - ``"per_direction"``: one pair for the horizontal lift and one for the two vertical
      lifts: twice the lifting parameters; the layout of checkpoints written before this
      option existed.

    Parameters are never shared between different LiftDownPool layers. Fixed schemes
    (Haar, CDF 5/3) have no parameters, so ``share`` changes nothing for them.

    Odd H or W is first padded by reflection (one row/column at the bottom/right) to
    even, so the output is ceil(H/2) x ceil(W/2).

    After each forward pass in training mode ``regularization_terms()`` returns the
    detail term (mean squared detail, pushes the predictor to predict) and the
    approximation term (mean squared distance of the approximation from the pair mean,
    keeps the low band close to the signal), each summed over the three lifting steps.
    Haar's approximation is exactly the pair mean, so its approximation term is zero.

    On the CPU a learned layer computes in channels-last memory order (the depthwise
    convolutions' backward pass is about four times faster there) and returns its
    output in the input's memory order.
    """

    def __init__(
        self,
        channels: int,
        combine: str = "sum",
        kernel_size: int = 3,
        groups: int | None = None,
        scheme: str = "learned",
        share: str = "all",
    ) -> None:
        super().__init__()
        if combine not in ("sum", "bands") + SUB_BANDS:
            raise ValueError(f"combine must be 'sum', 'bands' or one of {SUB_BANDS}, got {combine!r}")
        if share not in SHARING:
            raise ValueError(f"share must be one of {SHARING}, got {share!r}")
        lifting = LIFTING_SCHEMES.get(scheme)
        self.channels = channels
        self.combine = combine
        self.kernel_size = kernel_size
        self.groups = channels if groups is None else groups
        self.scheme = scheme
        self.share = share
        self.learned = lifting.learned
        if share == "all":
            self.predict = lifting.make_predict(channels, HORIZONTAL, kernel_size, self.groups)
            self.update = lifting.make_update(channels, HORIZONTAL, kernel_size, self.groups)
        else:
            self.horizontal = LiftingStep(
                lifting.make_predict(channels, HORIZONTAL, kernel_size, self.groups),
                lifting.make_update(channels, HORIZONTAL, kernel_size, self.groups),
                HORIZONTAL,
            )
            self.vertical = LiftingStep(
                lifting.make_predict(channels, VERTICAL, kernel_size, self.groups),
                lifting.make_update(channels, VERTICAL, kernel_size, self.groups),
                VERTICAL,
            )
        self._terms: tuple[Tensor, Tensor] | None = None

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, scheme={self.scheme}, combine={self.combine}, kernel_size={self.kernel_size}, "
            f"groups={self.groups}, share={self.share}"
        )

    def operators(self, axis: int) -> tuple[LiftingOperator, LiftingOperator]:
        """The (predict, update) pair that lifts along ``axis``."""
        if self.share == "all":
            return self.predict, self.update
        step = self.horizontal if axis == HORIZONTAL else self.vertical
        return step.predict, step.update

    def forward_bands(self, x: Tensor) -> SubBands:
        """The four sub-bands of ``x`` (each ceil(H/2) x ceil(W/2)), in ``x``'s memory order."""
        bands, converted = self._bands(x)
        if converted:
            bands = SubBands(*(band.contiguous() for band in bands))
        return bands

    def sub_bands(self, x: Tensor) -> dict[str, Tensor]:
        """The four sub-bands of ``x`` by name (LL, LH, HL, HH)."""
        return self.forward_bands(x)._asdict()

    def forward(self, x: Tensor) -> Tensor | SubBands:
        if self.combine == "bands":
            return self.forward_bands(x)
        if self.combine != "sum":
            return getattr(self.forward_bands(x), self.combine)
        bands, converted = self._bands(x)
        # Summed before converting back: one conversion instead of four.
        out = bands.LL + bands.LH + bands.HL + bands.HH
        return out.contiguous() if converted else out

    def _bands(self, x: Tensor) -> tuple[SubBands, bool]:
        """The sub-bands, and whether they are in channels-last order where ``x`` was not."""
        height, width = x.shape[-2:]
        x = _pad_along(x, HORIZONTAL, 0, width % 2)
        x = _pad_along(x, VERTICAL, 0, height % 2)
        work = x
        if self.learned and x.device.type == "cpu" and x.dim() == 4:
            work = x.contiguous(memory_format=torch.channels_last)
        approximation_h, detail_h, even_h, odd_h = lift_step(work, *self.operators(HORIZONTAL), HORIZONTAL)
        vertical = self.operators(VERTICAL)
        low_low, low_high, even_l, odd_l = lift_step(approximation_h, *vertical, VERTICAL)
        high_low, high_high, even_d, odd_d = lift_step(detail_h, *vertical, VERTICAL)
        if self.training:
            # The regularisers matter only to training; skipping them keeps inference lean.
            terms = (
                _StepTerms.apply(even_h, odd_h, approximation_h, detail_h),
                _StepTerms.apply(even_l, odd_l, low_low, low_high),
                _StepTerms.apply(even_d, odd_d, high_low, high_high),
            )
            self._terms = (terms[0][0] + terms[1][0] + terms[2][0], terms[0][1] + terms[1][1] + terms[2][1])
        return SubBands(low_low, low_high, high_low, high_high), work is not x

    def regularization_terms(self) -> tuple[Tensor, Tensor]:
        """(detail term, approximation term) of the latest forward pass."""
        if self._terms is None:
            raise RuntimeError("regularization_terms() needs a forward pass first")
        return self._terms

    def regularisation_terms(self) -> tuple[Tensor, Tensor]:
        """Deprecated spelling of :meth:`regularization_terms`."""
        warnings.warn(
            "regularisation_terms() is deprecated; use regularization_terms()", DeprecationWarning, stacklevel=2
        )
        return self.regularization_terms()

    def inverse(self, low_low: Tensor, low_high: Tensor, high_low: Tensor, high_high: Tensor) -> Tensor:
        """Undo the vertical then the horizontal steps: four sub-bands -> 2H x 2W map."""
        predict, update = self.operators(VERTICAL)
        approximation_h = unlift_step(low_low, low_high, predict, update, VERTICAL)
        detail_h = unlift_step(high_low, high_high, predict, update, VERTICAL)
        return unlift_step(approximation_h, detail_h, *self.operators(HORIZONTAL), HORIZONTAL)


class LiftUpPool(nn.Module):
    """The inverse of a :class:`LiftDownPool`, using that layer's own P/U parameters.

    ``LiftUpPool(down)(LL, LH, HL, HH)`` rebuilds the map ``down.forward_bands`` split,
    exactly (to float precision) in either sharing mode. In an encoder-decoder the
    decoder supplies the low band and the encoder's stored detail bands supply the rest.
    ``output_size`` crops away the reflection padding that the down layer added for an
    odd input. The parameters are the down layer's, not copies: training the decoder
    trains them too.
    """

    def __init__(self, down: LiftDownPool) -> None:
        super().__init__()
        self.down = down

    def forward(
        self,
        low_low: Tensor,
        low_high: Tensor,
        high_low: Tensor,
        high_high: Tensor,
        output_size: tuple[int, int] | None = None,
    ) -> Tensor:
        x = self.down.inverse(low_low, low_high, high_low, high_high)
        if output_size is not None:
            x = x[..., : output_size[0], : output_size[1]]
        return x


def lifting_regularisation(model: nn.Module) -> tuple[Tensor, Tensor]:
    """Deprecated spelling of :func:`lifting_regularization`."""
    warnings.warn(
        "lifting_regularisation() is deprecated; use lifting_regularization()", DeprecationWarning, stacklevel=2
    )
    return lifting_regularization(model)


def lifting_regularization(model: nn.Module) -> tuple[Tensor, Tensor]:
    """Sum of (detail, approximation) terms over every LiftDownPool of ``model``'s last forward."""
    detail = approximation = None
    for module in model.modules():
        if isinstance(module, LiftDownPool) and module._terms is not None:
            d, a = module.regularization_terms()
            detail = d if detail is None else detail + d
            approximation = a if approximation is None else approximation + a
    zero = torch.zeros(())
    return (zero if detail is None else detail, zero if approximation is None else approximation)


def lift_pools(model: nn.Module) -> list[LiftDownPool]:
    """All LiftDownPool layers of ``model`` in module order."""
    return [module for module in model.modules() if isinstance(module, LiftDownPool)]
