"""Swapping the pooling of an already-built model (see ``docs/layers.md``).

Every MaxPool2d/AvgPool2d (ResNet's 3x3 stride-2 stem pooling included) is replaced by
the chosen kind built for its geometry and channel count, so output shapes stay the
same. Channel counts are read with one probe forward pass. Optionally, stride-2
convolutions become a stride-1 convolution followed by the pooling (how antialiased-cnns
and the LiftPool paper treat networks that downsample by striding, e.g. MobileNetV2).
Nothing is skipped silently: the returned report lists every layer replaced or kept,
and a layer that cannot be replaced raises (or warns, with ``strict=False``).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_lift.errors import UserError
from robustbench_lift.nn.pooling import PoolGeometry, make_pooling

log = logging.getLogger(__name__)

REPLACEABLE = (nn.MaxPool2d, nn.AvgPool2d)
# Global/adaptive pooling reduces to a fixed size for the classifier: not a stride-2
# downsampling layer, so it is kept (and reported as kept).
KEPT = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
OTHER_POOLING = (nn.MaxPool1d, nn.AvgPool1d, nn.MaxPool3d, nn.AvgPool3d, nn.LPPool2d, nn.FractionalMaxPool2d)


@dataclass
class SwapReport:
    """What swap_pooling did, layer by layer."""

    replaced: list[tuple[str, str]] = field(default_factory=list)  # (layer name, old layer)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (layer name, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (layer name, reason)

    def __str__(self) -> str:
        lines = [f"replaced {name}: {old}" for name, old in self.replaced]
        lines += [f"kept {name}: {reason}" for name, reason in self.kept]
        lines += [f"could not replace {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


def _single(value: Any, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square {name} {tuple(value)}")
        value = value[0]
    return int(value)


def _geometry(layer: nn.Module) -> PoolGeometry:
    if getattr(layer, "dilation", 1) not in (1, (1, 1)):
        raise ValueError("dilated pooling")
    return PoolGeometry(_single(layer.kernel_size, "kernel"), _single(layer.stride, "stride"), _single(layer.padding, "padding"), bool(layer.ceil_mode))


def _probe_channels(model: nn.Module, input_size: Sequence[int], names: list[str]) -> dict[str, int]:
    """Input channels of the named layers, from one forward pass on zeros."""
    modules = dict(model.named_modules())
    channels: dict[str, int] = {}

    def recorder(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            channels.setdefault(name, int(inputs[0].shape[1]))

        return record

    hooks = [modules[name].register_forward_pre_hook(recorder(name)) for name in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return channels


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def swap_pooling(
    model: nn.Module,
    kind: str,
    *,
    input_size: Sequence[int] = (3, 224, 224),
    include_strided_convolutions: bool = False,
    strict: bool = True,
    inplace: bool = False,
    **options: Any,
) -> tuple[nn.Module, SwapReport]:
    """Returns ``model`` with its pooling layers of kind ``kind`` and a :class:`SwapReport`.

    ``input_size`` (C, H, W) is used for the probe forward pass that finds each layer's
    channel count. With ``strict`` a layer that cannot be replaced raises UserError;
    otherwise it is logged as a warning and listed in ``report.failed``.
    """
    make_pooling(kind, 1, PoolGeometry(), **options)  # fail fast on an unknown kind or option
    if not inplace:
        model = copy.deepcopy(model)
    report = SwapReport()
    pools, convolutions = [], []
    for name, module in model.named_modules():
        if isinstance(module, REPLACEABLE):
            pools.append(name)
        elif isinstance(module, KEPT):
            report.kept.append((name, f"{type(module).__name__} is global/adaptive pooling, not stride-2 downsampling"))
        elif isinstance(module, OTHER_POOLING):
            report.failed.append((name, f"{type(module).__name__} is not a 2-D max/average pooling"))
        elif include_strided_convolutions and isinstance(module, nn.Conv2d) and module.stride not in (1, (1, 1)):
            convolutions.append(name)
    channels = _probe_channels(model, input_size, pools + convolutions)
    for name in pools:
        layer = model.get_submodule(name)
        if name not in channels:
            report.failed.append((name, "not reached by the forward pass"))
            continue
        try:
            geometry = _geometry(layer)
            replacement = make_pooling(kind, channels[name], geometry, **options)
        except (ValueError, UserError) as error:
            report.failed.append((name, str(error)))
            continue
        _set_module(model, name, replacement)
        report.replaced.append((name, repr(layer)))
    for name in convolutions:
        convolution = model.get_submodule(name)
        assert isinstance(convolution, nn.Conv2d)  # collected as Conv2d above
        try:
            stride = _single(convolution.stride, "stride")
            if stride != 2:
                raise ValueError(f"stride {stride}")
            # A stride-2 convolution's output is ceil(M/2) of the stride-1 output M.
            replacement = make_pooling(kind, convolution.out_channels, PoolGeometry(2, 2, 0, ceil_mode=True), **options)
        except (ValueError, UserError) as error:
            report.failed.append((name, str(error)))
            continue
        dense = copy.deepcopy(convolution)
        dense.stride = (1, 1)
        _set_module(model, name, nn.Sequential(dense, replacement))
        report.replaced.append((name, repr(convolution)))
    if not report.replaced and not report.failed:
        hint = "" if include_strided_convolutions else "; it may downsample by striding (pass include_strided_convolutions=True)"
        report.failed.append(("<model>", f"no MaxPool2d/AvgPool2d layers found{hint}"))
    if report.failed:
        message = "; ".join(f"{name}: {reason}" for name, reason in report.failed)
        if strict:
            raise UserError(f"cannot swap pooling to {kind!r}: {message}")
        log.warning("pooling swap to %s left layers unreplaced: %s", kind, message)
    return model, report
