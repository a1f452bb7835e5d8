"""The pooling layers compared by the benchmark: one builder per kind (see ``docs/layers.md``).

The kinds themselves (names, options, where their builder lives) are registered in
:mod:`robustbench_lift.nn.kinds`, which needs no torch. Every kind is built from the geometry of the pooling layer it stands in for (kernel,
stride, padding of a torch MaxPool2d/AvgPool2d) so that it keeps that layer's output
shape, whether it is placed by a model builder or swapped into a built model.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from robustbench_lift.errors import UserError
from robustbench_lift.nn.kinds import (
    DEPRECATED_KINDS,
    POOLINGS,
    SITES,
    PoolGeometry,
    PoolingKind,
    canonical_kind,
    list_poolings,
    pooling_table,
    recorded_options,
    resolve_options,
)
from robustbench_lift.nn.lifting import SHARING, SUB_BANDS, LiftDownPool

__all__ = [
    "BLUR_FILTER_SIZES",
    "DEPRECATED_KINDS",
    "POOLINGS",
    "SITES",
    "CropToGeometry",
    "PoolGeometry",
    "PoolingKind",
    "StridedSubsample",
    "canonical_kind",
    "list_poolings",
    "make_pooling",
    "pooling_table",
    "recorded_options",
    "resolve_options",
]


class CropToGeometry(nn.Module):
    """Runs a stride-2 pooling and crops its output to the replaced layer's output size.

    Lifting and strided subsampling give ceil(H/2); a 2x2 stride-2 max pool gives
    floor(H/2). Cropping the last row/column keeps shapes identical. A padded ceil-mode
    layer (3x3, stride 2, padding 1, ceil_mode=True) has one output more than ceil(H/2)
    on even sizes: the input is then first replicate-padded at the bottom/right just
    enough for that last output, which sees the border sample.
    """

    def __init__(self, pool: nn.Module, geometry: PoolGeometry) -> None:
        super().__init__()
        self.pool = pool
        self.geometry = geometry

    def forward(self, x: Tensor) -> Tensor:
        height = self.geometry.output_length(x.shape[-2])
        width = self.geometry.output_length(x.shape[-1])
        extra_height = max(0, self.geometry.stride * (height - 1) + 1 - x.shape[-2])
        extra_width = max(0, self.geometry.stride * (width - 1) + 1 - x.shape[-1])
        if extra_height or extra_width:
            x = torch.nn.functional.pad(x, (0, extra_width, 0, extra_height), mode="replicate")
        out = self.pool(x)
        if out.shape[-2] != height or out.shape[-1] != width:
            out = out[..., :height, :width]
        return out


class StridedSubsample(nn.Module):
    """Keeps every second sample in H and W: the downsampling of a strided convolution."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x[..., :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


def _build_max(channels: int, geometry: PoolGeometry) -> nn.Module:
    return nn.MaxPool2d(geometry.kernel_size, geometry.stride, geometry.padding, ceil_mode=geometry.ceil_mode)


def _build_avg(channels: int, geometry: PoolGeometry) -> nn.Module:
    # count_include_pad=False so a padded stem average does not darken the border.
    return nn.AvgPool2d(
        geometry.kernel_size, geometry.stride, geometry.padding, ceil_mode=geometry.ceil_mode, count_include_pad=False
    )


def _build_skip(channels: int, geometry: PoolGeometry) -> nn.Module:
    return CropToGeometry(StridedSubsample(geometry.stride), geometry)


@functools.cache
def _blur_pool_class() -> type:
    import antialiased_cnns
    import torch.nn.functional as F

    class BlurPool(antialiased_cnns.BlurPool):
        """antialiased-cnns' BlurPool, replicating instead of reflecting on maps too
        small to reflect (VGG's last 2x2 -> 1x1 stage)."""

        def forward(self, x: Tensor) -> Tensor:
            if min(x.shape[-2:]) > max(self.pad_sizes) or self.filt_size == 1:
                return super().forward(x)
            padded = F.pad(x, self.pad_sizes, mode="replicate")
            return F.conv2d(padded, self.filt, stride=self.stride, groups=x.shape[1])

    return BlurPool


BLUR_FILTER_SIZES = range(1, 6)


def _build_blur(channels: int, geometry: PoolGeometry, filter_size: int = 4) -> nn.Module:
    """Anti-aliased downsampling by the antialiased-cnns recipe (Zhang, ICML 2019), per site:

    - MaxPool(k, s) -> MaxPool(k, stride 1) + BlurPool(s): the dense max keeps the
      replaced kernel and padding, so output sizes match the original layer's;
    - AvgPool(k, s) -> BlurPool(s) alone (the blur is itself an average);
    - strided convolution -> BlurPool(s) alone, on the output of the convolution run at
      stride 1 after its normalization and activation (swap.py places it).

    ``filter_size`` taps of the binomial filter [1], [1, 1], [1, 2, 1], [1, 3, 3, 1],
    [1, 4, 6, 4, 1]; 4 is the released ImageNet models' size, 1 is no blur (plain
    subsampling, the paper's baseline).
    """
    if filter_size not in BLUR_FILTER_SIZES:
        raise UserError(f"blur filter_size must be 1..5 (4: the released antialiased-cnns models), got {filter_size}")
    blur = _blur_pool_class()(channels, filt_size=filter_size, stride=geometry.stride)
    if geometry.replaces == "conv":
        return blur  # ceil(H/s), as the strided convolution gave
    if geometry.replaces == "avg":
        # BlurPool gives ceil(H/s); an unpadded 2x2 average gives floor(H/2): crop to match.
        return CropToGeometry(blur, geometry)
    layers: list[nn.Module] = []
    if geometry.ceil_mode:
        # A ceil-mode window may hang over the bottom/right edge: one replicated row and
        # column give the dense max that extra position.
        layers.append(nn.ReplicationPad2d((0, 1, 0, 1)))
    return nn.Sequential(*layers, nn.MaxPool2d(geometry.kernel_size, stride=1, padding=geometry.padding), blur)


_GROUPS = {"depthwise": None, "dense": 1}


def _build_lift(
    channels: int,
    geometry: PoolGeometry,
    combine: str = "sum",
    kernel_size: int = 3,
    groups: str = "depthwise",
    share: str = "all",
) -> nn.Module:
    if groups not in _GROUPS:
        raise UserError(f"lift groups must be 'depthwise' or 'dense', got {groups!r}")
    if kernel_size not in (1, 3, 5, 7):
        raise UserError(f"lift kernel_size must be 1, 3, 5 or 7, got {kernel_size}")
    if share not in SHARING:
        raise UserError(f"lift share must be one of {', '.join(SHARING)}, got {share!r}")
    return _lift_layer(channels, geometry, "learned", combine, kernel_size, _GROUPS[groups], share)


def _lift_layer(
    channels: int,
    geometry: PoolGeometry,
    scheme: str,
    combine: str,
    kernel_size: int = 3,
    groups: int | None = None,
    share: str = "all",
) -> nn.Module:
    if combine not in ("sum",) + SUB_BANDS:
        raise UserError(f"combine must be one of sum, LL, LH, HL, HH for a pooling layer, got {combine!r}")
    layer = LiftDownPool(channels, combine=combine, kernel_size=kernel_size, groups=groups, scheme=scheme, share=share)
    return CropToGeometry(layer, geometry)


def _build_haar_sum(channels: int, geometry: PoolGeometry) -> nn.Module:
    return _lift_layer(channels, geometry, "haar", "sum")


def _build_haar_ll(channels: int, geometry: PoolGeometry) -> nn.Module:
    return _lift_layer(channels, geometry, "haar", "LL")


def _build_cdf53_sum(channels: int, geometry: PoolGeometry) -> nn.Module:
    return _lift_layer(channels, geometry, "cdf53", "sum")


def _build_cdf53_ll(channels: int, geometry: PoolGeometry) -> nn.Module:
    return _lift_layer(channels, geometry, "cdf53", "LL")


def make_pooling(kind: str, channels: int, geometry: PoolGeometry = PoolGeometry(), **options: Any) -> nn.Module:
    """Builds a pooling layer of ``kind`` standing in for a layer of ``geometry``
    (a deprecated kind name builds the kind it now is)."""
    kind, options = canonical_kind(kind, options)
    spec = POOLINGS.get(kind)
    if geometry.stride not in spec.supports_stride:
        raise UserError(
            f"pooling {kind!r} cannot replace a stride-{geometry.stride} layer (it supports {spec.supports_stride})"
        )
    return spec.builder()(channels, geometry, **resolve_options(kind, options))
