"""Encoder-decoders for semantic segmentation whose down- and up-pooling come in pairs set by
one pooling kind (SPEC §7), built by :func:`build_segmenter`.

``segnet_small`` follows SegNet (Badrinarayanan et al., TPAMI 2017) at a small scale: an
encoder of conv-BN-ReLU stages, each followed by a down-pooling step (three in all), a
conv-BN-ReLU bottleneck, and a mirrored decoder in which each up-pooling step undoes the
matching encoder step and is followed by conv-BN-ReLU stages, then a 1x1 classifier.
There are no skip connections besides what the up-pooling itself carries over from the
encoder, so the up-pooling is the only way encoder detail reaches the decoder, and the
pooling pair is the only thing that differs across a zoo.

Pooling pairs (:data:`RESAMPLERS`; down / up):

======  ====================================================  =============================================
kind    down (encoder)                                        up (decoder)
======  ====================================================  =============================================
max     MaxPool2d 2x2, keeping the argmax indices             MaxUnpool2d from those indices (SegNet)
avg     AvgPool2d 2x2                                         nearest-neighbour upsampling
skip    strided subsampling (keep every 2nd sample)          transposed convolution 4x4, stride 2 (learned)
blur    dense max 2x2 + BlurPool (Zhang 2019, 3-tap binomial) bilinear upsampling
lift    learned LiftDownPool (Zhao & Snoek 2021)              LiftUpPool of the *same* layer, fed the
                                                             decoder map as low band and the encoder's
                                                             stored LH, HL, HH detail bands
haar    fixed Haar lifting                                    its exact inverse (same code path as lift)
lift53  fixed CDF 5/3 lifting                                 its exact inverse (same code path as lift)
======  ====================================================  =============================================

**Decoder choices for lift.** What we could read of the LiftPool paper (its abstract and
the caption of its Figure 6, through the project's search tool; SPEC §1 and §7) fixes two
things: for classification LiftDownPool pools by summing all four sub-bands, and
LiftUpPool "performs LiftDownPool backwards", using the detail sub-bands to produce a
refined upsampled map, in encoder-decoders compared against MaxPool/MaxUpPool (SegNet's
stored indices) and interpolation. Which band the encoder passes on to its next stage in
the paper's segmentation networks is not in the text we could read, so both are offered
and the default is stated:

* ``low_band="LL"`` (default, used by the zoo): the next encoder stage sees LL, and
  LiftUpPool takes the decoder's map as LL together with the stored LH, HL, HH. This is
  the wavelet-decoder reading: with identity stages, down then up reproduces the input
  exactly, and the decoder's map plays exactly the role of the band it stands in for.
  With ``haar`` the encoder then computes 2x2 average pooling, the same as ``avg``, so
  ``haar`` vs ``avg`` isolates the decoder (exact inverse with details vs nearest).
* ``low_band="sum"``: the next encoder stage sees LL+LH+HL+HH (the paper's classification
  pooling); the decoder's map then stands for that sum, and up-pooling subtracts the
  stored details to recover its LL estimate before inverting. This is also exact with
  identity stages.

The down layer's P/U parameters are registered once (in the resampler's
``down_pool``); the :class:`LiftUpPool` that the decoder calls shares them by reference
(not as a second registered child, which would duplicate state-dict entries and make
safetensors refuse the shared storage).

Odd sizes work for every kind: each down step stores its input size and the up step
returns exactly that size, so any H x W gives N x num_classes x H x W logits.
Input normalisation lives inside the model (:class:`NormalizedModel`), so models take
float images in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_lift.errors import CheckpointError, UserError
from robustbench_lift.models.classifiers import NormalizedModel
from robustbench_lift.nn.lifting import LiftDownPool, LiftUpPool
from robustbench_lift.nn.pooling import make_pooling
from robustbench_lift.registry import Registry

__all__ = [
    "RESAMPLERS",
    "SEGMENTERS",
    "LiftResampler",
    "Resampler",
    "SegNet",
    "build_segmenter",
    "load_segmenter",
    "resolve_resampler_options",
]

Memo = Any  # what a down step leaves for its up step (indices, detail bands, sizes)
_GROUPS = {"depthwise": None, "dense": 1}  # None: one group per channel


class Resampler(nn.Module):
    """A down-pooling step of the encoder and the up-pooling step that undoes it in the decoder.

    ``down(x)`` returns (pooled map, memo); ``up(y, memo)`` returns a map of ``x``'s size.
    """

    def down(self, x: Tensor) -> tuple[Tensor, Memo]:
        raise NotImplementedError

    def up(self, y: Tensor, memo: Memo) -> Tensor:
        raise NotImplementedError


class MaxUnpoolResampler(Resampler):
    """SegNet: max pooling that keeps its argmax indices, unpooling that puts values back there."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)

    def down(self, x: Tensor) -> tuple[Tensor, Memo]:
        pooled, indices = self.pool(x)
        return pooled, (indices, tuple(x.shape[-2:]))

    def up(self, y: Tensor, memo: Memo) -> Tensor:
        indices, size = memo
        return self.unpool(y, indices, output_size=size)


class InterpolationResampler(Resampler):
    """A pooling layer down and parameter-free interpolation (nearest or bilinear) up."""

    def __init__(self, pool: nn.Module, mode: str) -> None:
        super().__init__()
        self.pool = pool
        self.mode = mode

    def down(self, x: Tensor) -> tuple[Tensor, Memo]:
        return self.pool(x), tuple(x.shape[-2:])

    def up(self, y: Tensor, memo: Memo) -> Tensor:
        align = False if self.mode == "bilinear" else None
        return F.interpolate(y, size=memo, mode=self.mode, align_corners=align)

    def extra_repr(self) -> str:
        return f"up={self.mode}"


class TransposedConvResampler(Resampler):
    """Strided subsampling down, a learned 4x4 stride-2 transposed convolution up.

    Kernel 4 with stride 2 makes every output pixel receive the same number of taps
    (no checkerboard from uneven overlap); ``output_size`` restores an odd input's size.
    ``groups="dense"`` (default, the usual decoder layer) mixes channels; ``depthwise``
    learns one interpolation kernel per channel and adds far fewer parameters.
    """

    def __init__(self, channels: int, groups: str = "dense") -> None:
        super().__init__()
        if groups not in _GROUPS:
            raise UserError(f"skip groups must be 'depthwise' or 'dense', got {groups!r}")
        self.pool = make_pooling("skip", channels)
        self.transposed = nn.ConvTranspose2d(
            channels, channels, 4, stride=2, padding=1, groups=_GROUPS[groups] or channels
        )

    def down(self, x: Tensor) -> tuple[Tensor, Memo]:
        return self.pool(x), tuple(x.shape[-2:])

    def up(self, y: Tensor, memo: Memo) -> Tensor:
        return self.transposed(y, output_size=list(memo))


class LiftResampler(Resampler):
    """LiftDownPool down (keeping LH, HL, HH), LiftUpPool of the same layer up.

    Args:
        channels: feature channels.
        scheme: ``learned``, ``haar`` or ``cdf53`` (see :mod:`robustbench_lift.nn.lifting`).
        low_band: ``LL`` (the next stage sees LL) or ``sum`` (it sees LL+LH+HL+HH); see the
            module docstring.
        kernel_size: taps of the learned predict/update convolutions.
        groups: groups of those convolutions (None: depthwise).
    """

    def __init__(
        self, channels: int, scheme: str, low_band: str = "LL", kernel_size: int = 3, groups: int | None = None
    ):
        super().__init__()
        if low_band not in ("LL", "sum"):
            raise UserError(f"low_band must be 'LL' or 'sum', got {low_band!r}")
        self.low_band = low_band
        self.down_pool = LiftDownPool(channels, combine="bands", kernel_size=kernel_size, groups=groups, scheme=scheme)
        # A plain tuple keeps the shared layer from being registered twice (see module docstring).
        self._up_pool = (LiftUpPool(self.down_pool),)

    @property
    def up_pool(self) -> LiftUpPool:
        """The LiftUpPool that runs ``down_pool`` backwards (same P/U parameters)."""
        return self._up_pool[0]

    def down(self, x: Tensor) -> tuple[Tensor, Memo]:
        low_low, low_high, high_low, high_high = self.down_pool(x)
        pooled = low_low if self.low_band == "LL" else low_low + low_high + high_low + high_high
        return pooled, (low_high, high_low, high_high, tuple(x.shape[-2:]))

    def up(self, y: Tensor, memo: Memo) -> Tensor:
        low_high, high_low, high_high, size = memo
        low_low = y if self.low_band == "LL" else y - (low_high + high_low + high_high)
        return self.up_pool(low_low, low_high, high_low, high_high, output_size=size)

    def extra_repr(self) -> str:
        return f"low_band={self.low_band}"


@dataclass(frozen=True)
class ResamplerKind:
    """A registered pooling pair: its builder and the options it accepts (with defaults)."""

    name: str
    description: str
    build: Callable[..., Resampler]
    options: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # name -> (default, help)


RESAMPLERS: Registry[ResamplerKind] = Registry("segmentation pooling kind")
_LOW_BAND_HELP = "band the next encoder stage sees and the decoder map stands for: LL or sum"


def _build_lift(channels: int, low_band: str, kernel_size: int, groups: str) -> Resampler:
    if groups not in _GROUPS:
        raise UserError(f"lift groups must be 'depthwise' or 'dense', got {groups!r}")
    if kernel_size not in (1, 3, 5, 7):
        raise UserError(f"lift kernel_size must be 1, 3, 5 or 7, got {kernel_size}")
    return LiftResampler(channels, "learned", low_band, kernel_size, _GROUPS[groups])


RESAMPLERS.add(
    "max", ResamplerKind("max", "max pooling / max unpooling from the stored indices (SegNet)", MaxUnpoolResampler)
)
RESAMPLERS.add(
    "avg",
    ResamplerKind(
        "avg",
        "average pooling / nearest upsampling",
        lambda c: InterpolationResampler(make_pooling("avg", c), "nearest"),
    ),
)
RESAMPLERS.add(
    "skip",
    ResamplerKind(
        "skip",
        "strided subsampling / 4x4 stride-2 transposed convolution",
        TransposedConvResampler,
        {"groups": ("dense", "transposed convolution: dense (mixes channels) or depthwise")},
    ),
)
RESAMPLERS.add(
    "blur",
    ResamplerKind(
        "blur",
        "max + BlurPool (antialiased-cnns) / bilinear upsampling",
        lambda c, filter_size: InterpolationResampler(make_pooling("blur", c, filter_size=filter_size), "bilinear"),
        {"filter_size": (3, "binomial blur filter taps")},
    ),
)
RESAMPLERS.add(
    "lift",
    ResamplerKind(
        "lift",
        "learned LiftDownPool / LiftUpPool of the same layer with the stored detail bands",
        _build_lift,
        {
            "low_band": ("LL", _LOW_BAND_HELP),
            "kernel_size": (3, "taps of the predict/update convolution along the lifting axis: 1, 3, 5 or 7"),
            "groups": ("depthwise", "predict/update K-tap convolution: depthwise or dense"),
        },
    ),
)
RESAMPLERS.add(
    "haar",
    ResamplerKind(
        "haar",
        "fixed Haar lifting / its exact inverse with the stored detail bands",
        lambda c, low_band: LiftResampler(c, "haar", low_band),
        {"low_band": ("LL", _LOW_BAND_HELP)},
    ),
)
RESAMPLERS.add(
    "lift53",
    ResamplerKind(
        "lift53",
        "fixed CDF 5/3 lifting / its exact inverse with the stored detail bands",
        lambda c, low_band: LiftResampler(c, "cdf53", low_band),
        {"low_band": ("LL", _LOW_BAND_HELP)},
    ),
)


def resolve_resampler_options(kind: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full option set of pooling pair ``kind``: defaults overridden by ``options``.

    Args:
        kind: a name in :data:`RESAMPLERS`.
        options: overrides; unknown names raise :class:`UserError`.
    """
    spec = RESAMPLERS.get(kind)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        known = ", ".join(spec.options) or "none"
        raise UserError(f"segmentation pooling {kind!r} has no option {unknown[0]!r}; its options: {known}")
    resolved = {name: default for name, (default, _) in spec.options.items()}
    for name, value in options.items():
        try:
            resolved[name] = type(spec.options[name][0])(value)
        except (TypeError, ValueError):
            raise UserError(f"segmentation pooling {kind!r} option {name!r} got {value!r}") from None
    return resolved


def _stage(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(convs):
        layers += [
            nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    """SegNet-like encoder-decoder; one down and one up step per width (three by default).

    Args:
        num_classes: output channels (classes, background included).
        pooling: a :data:`RESAMPLERS` kind, setting both the down and the up steps.
        pooling_options: that kind's options.
        widths: channels of the encoder stages; the decoder mirrors them.
        convs_per_stage: conv-BN-ReLU layers per stage.
        in_channels: input channels.
    """

    def __init__(
        self,
        num_classes: int = 11,
        pooling: str = "max",
        pooling_options: Mapping[str, Any] | None = None,
        widths: Sequence[int] = (16, 32, 64),
        convs_per_stage: int = 1,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not widths or convs_per_stage < 1:
            raise UserError("a segmenter needs at least one stage and one convolution per stage")
        kind = RESAMPLERS.get(pooling)
        options = resolve_resampler_options(pooling, pooling_options)
        widths = [int(width) for width in widths]
        self.encoder = nn.ModuleList()
        self.resamplers = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.encoder.append(_stage(channels, width, convs_per_stage))
            self.resamplers.append(kind.build(width, **options))
            channels = width
        self.bottleneck = _stage(channels, channels, convs_per_stage)
        # decoder[j] follows the up step of resampler len-1-j and maps to the next level's width.
        self.decoder = nn.ModuleList(
            _stage(widths[level], widths[max(level - 1, 0)], convs_per_stage) for level in reversed(range(len(widths)))
        )
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        """Encoder, bottleneck and decoder: the map the classifier reads (input size)."""
        resamplers = [cast(Resampler, resampler) for resampler in self.resamplers]
        memos = []
        for stage, resampler in zip(self.encoder, resamplers):
            x, memo = resampler.down(stage(x))
            memos.append(memo)
        x = self.bottleneck(x)
        for stage, resampler, memo in zip(self.decoder, reversed(resamplers), reversed(memos)):
            x = stage(resampler.up(x, memo))
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Logits N x num_classes x H x W."""
        return self.classifier(self.forward_features(x))


SegmenterBuilder = Callable[..., nn.Module]
SEGMENTERS: Registry[SegmenterBuilder] = Registry("segmentation architecture")
SEGMENTERS.add("segnet_small", SegNet)


def build_segmenter(
    pooling: str = "max",
    num_classes: int = 11,
    architecture: str = "segnet_small",
    pooling_options: Mapping[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **architecture_options: Any,
) -> nn.Module:
    """Builds a segmentation network whose down and up pooling are both set by ``pooling``.

    Args:
        pooling: a :data:`RESAMPLERS` kind (max, avg, skip, blur, lift, haar, lift53).
        num_classes: number of output classes.
        architecture: a :data:`SEGMENTERS` name.
        pooling_options: options of the pooling kind (e.g. ``{"low_band": "sum"}``).
        mean: per-channel input mean; with ``std``, normalisation is put inside the model
            (:class:`NormalizedModel`), which then takes float [0, 1] inputs.
        std: per-channel input standard deviation.
        **architecture_options: passed to the architecture (``widths``, ``convs_per_stage``).

    Returns:
        A module mapping N x 3 x H x W to logits N x num_classes x H x W.
    """
    network = SEGMENTERS.get(architecture)(
        num_classes=num_classes, pooling=pooling, pooling_options=pooling_options, **architecture_options
    )
    if mean is not None and std is not None:
        return NormalizedModel(network, mean, std)
    return network


def load_segmenter(path: str | Path, expect: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Builds the segmenter a checkpoint's metadata describes and loads its weights (eval mode).

    Args:
        path: a safetensors checkpoint written by the segmentation training.
        expect: metadata the caller requires (e.g. ``{"pooling": "lift"}``).

    Returns:
        (model, metadata).
    """
    from robustbench_lift.models.checkpoints import load_state, read_checkpoint

    state, metadata = read_checkpoint(path)
    if metadata.get("task") != "segmentation":
        raise CheckpointError(f"checkpoint {path} is not a segmentation model (task {metadata.get('task')!r})")
    for key, value in (expect or {}).items():
        if metadata.get(key) != value:
            raise CheckpointError(f"checkpoint {path} is for {key}={metadata.get(key)!r}, not {value!r}")
    preprocessing = metadata.get("preprocessing", {})
    model = build_segmenter(
        metadata["pooling"],
        int(metadata["num_classes"]),
        metadata["architecture"],
        metadata.get("pooling_options") or {},
        preprocessing.get("mean"),
        preprocessing.get("std"),
        **(metadata.get("architecture_options") or {}),
    )
    load_state(model, state, str(path))
    model.eval()
    return model, metadata
