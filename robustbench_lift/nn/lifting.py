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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_lift.registry import Registry

HORIZONTAL = -1  # the W axis of an NCHW tensor
VERTICAL = -2  # the H axis

SUB_BANDS = ("LL", "LH", "HL", "HH")


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


class LearnedLiftingOperator(nn.Module):
    """P or U of a learned lifting step: ``tanh(conv1x1(relu(convK(reflect_pad(z)))))``.

    The K-tap convolution runs along the lifting axis only (1xK horizontally, Kx1
    vertically), so the operator keeps the map's size and mixes no samples across the
    other axis. ``groups`` = channels gives a depthwise K-tap convolution.
    """

    def __init__(self, channels: int, axis: int, kernel_size: int = 3, groups: int | None = None) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        groups = channels if groups is None else groups
        if channels % groups:
            raise ValueError(f"groups {groups} must divide channels {channels}")
        self.axis = axis
        self.kernel_size = kernel_size
        shape = (1, kernel_size) if axis == HORIZONTAL else (kernel_size, 1)
        self.spatial = nn.Conv2d(channels, channels, shape, groups=groups, bias=True)
        self.mix = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, z: Tensor) -> Tensor:
        half = self.kernel_size // 2
        z = _pad_along(z, self.axis, half, half)
        return torch.tanh(self.mix(F.relu(self.spatial(z))))


class HaarPredict(nn.Module):
    """Haar predictor: the odd sample is predicted by its even neighbour."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, even: Tensor) -> Tensor:
        return even


class HaarUpdate(nn.Module):
    """Haar updater: half the detail, so the approximation is the pair's mean."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, detail: Tensor) -> Tensor:
        return detail / 2


class Cdf53Predict(nn.Module):
    """CDF 5/3 (LeGall) predictor: mean of the two even neighbours of each odd sample.

    The odd sample 2n+1 sits between even samples n and n+1; past the right border the
    signal is mirrored (whole-sample symmetric), so even[n+1] repeats the last even.
    """

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, even: Tensor) -> Tensor:
        shifted = torch.cat([even.narrow(self.axis, 1, even.shape[self.axis] - 1), even.narrow(self.axis, -1, 1)], dim=self.axis)
        return (even + shifted) / 2


class Cdf53Update(nn.Module):
    """CDF 5/3 updater: a quarter of the sum of the two details beside each even sample.

    Even sample 2n sits between odd samples n-1 and n; before the left border the
    detail is mirrored, so detail[-1] repeats detail[0].
    """

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, detail: Tensor) -> Tensor:
        shifted = torch.cat([detail.narrow(self.axis, 0, 1), detail.narrow(self.axis, 0, detail.shape[self.axis] - 1)], dim=self.axis)
        return (detail + shifted) / 4


@dataclass(frozen=True)
class LiftingScheme:
    """How to make the P and U operators of one lifting step along ``axis``."""

    name: str
    learned: bool
    make_predict: Callable[..., nn.Module]
    make_update: Callable[..., nn.Module]


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
LIFTING_SCHEMES.add("haar", LiftingScheme("haar", False, lambda channels, axis, *_: HaarPredict(axis), lambda channels, axis, *_: HaarUpdate(axis)))
LIFTING_SCHEMES.add("cdf53", LiftingScheme("cdf53", False, lambda channels, axis, *_: Cdf53Predict(axis), lambda channels, axis, *_: Cdf53Update(axis)))


class LiftingStep(nn.Module):
    """One 1-D lifting step (split, predict, update) along a spatial axis, and its inverse."""

    def __init__(self, predict: nn.Module, update: nn.Module, axis: int) -> None:
        super().__init__()
        self.predict = predict
        self.update = update
        self.axis = axis

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (approximation, detail, odd samples); the axis must have even length."""
        even = x[..., 0::2] if self.axis == HORIZONTAL else x[..., 0::2, :]
        odd = x[..., 1::2] if self.axis == HORIZONTAL else x[..., 1::2, :]
        detail = odd - self.predict(even)
        approximation = even + self.update(detail)
        return approximation, detail, odd

    def inverse(self, approximation: Tensor, detail: Tensor) -> Tensor:
        even = approximation - self.update(detail)
        odd = detail + self.predict(even)
        # Interleave along the axis: stack on a new axis just after it, then merge.
        dim = approximation.dim() + self.axis
        return torch.stack([even, odd], dim=dim + 1).flatten(dim, dim + 1)


class LiftDownPool(nn.Module):
    """2-D lifting pooling: halves H and W and returns a combination of four sub-bands.

    Lifts horizontally (giving s_h, d_h), then lifts each vertically: LL and LH from
    s_h, HL and HH from d_h. ``combine`` chooses the output: ``"sum"`` (LL+LH+HL+HH, the
    paper's choice for classification), one sub-band name, or ``"bands"`` (a tuple of
    all four, for decoders that feed :class:`LiftUpPool`).

    Odd H or W is first padded by reflection (one row/column at the bottom/right) to
    even, so the output is ceil(H/2) x ceil(W/2).

    After each forward pass ``regularization_terms()`` returns the detail term (mean
    squared detail, pushes the predictor to predict) and the approximation term (mean
    squared distance of the approximation from the pair mean, keeps the low band close
    to the signal) summed over the three lifting steps, recorded in training mode only. Haar's approximation is exactly
    the pair mean, so its approximation term is zero.
    """

    def __init__(
        self,
        channels: int,
        combine: str = "sum",
        kernel_size: int = 3,
        groups: int | None = None,
        scheme: str = "learned",
    ) -> None:
        super().__init__()
        if combine not in ("sum", "bands") + SUB_BANDS:
            raise ValueError(f"combine must be 'sum', 'bands' or one of {SUB_BANDS}, got {combine!r}")
        lifting = LIFTING_SCHEMES.get(scheme)
        self.channels = channels
        self.combine = combine
        self.kernel_size = kernel_size
        self.groups = channels if groups is None else groups
        self.scheme = scheme
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
        return f"{self.channels}, scheme={self.scheme}, combine={self.combine}, kernel_size={self.kernel_size}, groups={self.groups}"

    def sub_bands(self, x: Tensor) -> dict[str, Tensor]:
        """The four sub-bands LL, LH, HL, HH of ``x`` (each ceil(H/2) x ceil(W/2))."""
        height, width = x.shape[-2:]
        x = _pad_along(x, HORIZONTAL, 0, width % 2)
        x = _pad_along(x, VERTICAL, 0, height % 2)
        approximation_h, detail_h, odd_h = self.horizontal(x)
        # Both horizontal bands go through the same vertical step: one batched call.
        batch = x.shape[0]
        vertical_approximation, vertical_detail, vertical_odd = self.vertical(torch.cat([approximation_h, detail_h]))
        low_low, high_low = vertical_approximation[:batch], vertical_approximation[batch:]
        low_high, high_high = vertical_detail[:batch], vertical_detail[batch:]
        if self.training:
            # The regularisers matter only to training; skipping them keeps inference lean.
            detail_term = detail_h.pow(2).mean() + vertical_detail.pow(2).mean() * 2
            approximation_term = (approximation_h - (x[..., 0::2] + odd_h) / 2).pow(2).mean() + 2 * (
                vertical_approximation - (torch.cat([approximation_h, detail_h])[..., 0::2, :] + vertical_odd) / 2
            ).pow(2).mean()
            self._terms = (detail_term, approximation_term)
        return {"LL": low_low, "LH": low_high, "HL": high_low, "HH": high_high}

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        bands = self.sub_bands(x)
        if self.combine == "sum":
            return bands["LL"] + bands["LH"] + bands["HL"] + bands["HH"]
        if self.combine == "bands":
            return tuple(bands[name] for name in SUB_BANDS)
        return bands[self.combine]

    def regularization_terms(self) -> tuple[Tensor, Tensor]:
        """(detail term, approximation term) of the latest forward pass."""
        if self._terms is None:
            raise RuntimeError("regularization_terms() needs a forward pass first")
        return self._terms

    def regularisation_terms(self) -> tuple[Tensor, Tensor]:
        """Deprecated spelling of :meth:`regularization_terms`."""
        warnings.warn("regularisation_terms() is deprecated; use regularization_terms()", DeprecationWarning, stacklevel=2)
        return self.regularization_terms()

    def inverse(self, low_low: Tensor, low_high: Tensor, high_low: Tensor, high_high: Tensor) -> Tensor:
        """Undo the vertical then the horizontal steps: four sub-bands -> 2H x 2W map."""
        approximation_h = self.vertical.inverse(low_low, low_high)
        detail_h = self.vertical.inverse(high_low, high_high)
        return self.horizontal.inverse(approximation_h, detail_h)


class LiftUpPool(nn.Module):
    """The inverse of a :class:`LiftDownPool`, sharing its P/U parameters.

    In an encoder-decoder the decoder supplies the low band and the encoder's stored
    detail bands supply the rest. ``output_size`` crops away the reflection padding that
    the down layer added for an odd input.
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
    warnings.warn("lifting_regularisation() is deprecated; use lifting_regularization()", DeprecationWarning, stacklevel=2)
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
