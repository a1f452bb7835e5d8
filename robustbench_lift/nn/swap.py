"""Swapping the pooling of an already-built model (see ``docs/layers.md``).

Every MaxPool2d/AvgPool2d (ResNet's 3x3 stride-2 stem pooling included) is replaced by
the chosen kind built for its geometry and channel count, so output shapes stay the
same. Channel counts are read with one probe forward pass.

Optionally, strided convolutions downsample through the pooling instead, placed as
antialiased-cnns places its BlurPool (Zhang, ICML 2019): the convolution runs at
stride 1 and the pooling follows the normalization and activation that follow it
(conv -> BN -> ReLU -> pool). Where no activation follows a 1x1 convolution (a ResNet
shortcut: conv1x1 -> BN), the pooling goes before it (pool -> conv1x1 -> BN); for a
blur or a subsampling that is the same function, and on fewer channels. Where the
activation module is also used elsewhere (torchvision's ResNet blocks call one ReLU
several times), the pooling goes in front of the module that consumes its output. The
placement is read from the probe pass (which module consumed which tensor) and
reported per convolution.

Nothing is skipped silently: the returned report lists every layer replaced or kept,
and a layer that cannot be replaced raises (or warns, with ``strict=False``).
"""

from __future__ import annotations

import copy
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_lift.errors import UserError
from robustbench_lift.nn.pooling import PoolGeometry, make_pooling

log = logging.getLogger(__name__)

__all__ = ["SwapReport", "swap_pooling", "REPLACEABLE", "KEPT"]

REPLACEABLE = (nn.MaxPool2d, nn.AvgPool2d)
# Global/adaptive pooling reduces to a fixed size for the classifier: not a stride-2
# downsampling layer, so it is kept (and reported as kept).
KEPT = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
OTHER_POOLING = (nn.MaxPool1d, nn.AvgPool1d, nn.MaxPool3d, nn.AvgPool3d, nn.LPPool2d, nn.FractionalMaxPool2d)
NORMALIZATIONS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)
ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
)


@dataclass
class SwapReport:
    """What swap_pooling did, layer by layer."""

    replaced: list[tuple[str, str]] = field(default_factory=list)  # (layer name, old layer)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (layer name, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (layer name, reason)
    placed: list[tuple[str, str]] = field(default_factory=list)  # (strided convolution, where its pooling went)

    def __str__(self) -> str:
        lines = [f"replaced {name}: {old}" for name, old in self.replaced]
        lines += [f"pooling of {name}: {where}" for name, where in self.placed]
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
    return PoolGeometry(
        _single(layer.kernel_size, "kernel"),
        _single(layer.stride, "stride"),
        _single(layer.padding, "padding"),
        bool(layer.ceil_mode),
        "max" if isinstance(layer, nn.MaxPool2d) else "avg",
    )


@dataclass
class _Call:
    """One call of a leaf module in the probe pass: its input and output tensors."""

    name: str
    input: torch.Tensor | None
    output: torch.Tensor | None


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Whether two tensors of the probe pass are the same data (an in-place activation
    returns its input; every tensor is kept alive, so addresses are not reused)."""
    if a is None or b is None:
        return False
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride())


def _probe(model: nn.Module, input_size: Sequence[int], trace: bool) -> tuple[dict[str, int], list[_Call]]:
    """One forward pass on zeros: the input channels of every leaf module's first call
    and, with ``trace``, every leaf call in order with its input and output."""
    channels: dict[str, int] = {}
    calls: list[_Call] = []

    def recorder(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if first is not None and first.dim() >= 2:
                channels.setdefault(name, int(first.shape[1]))
            if trace:
                calls.append(_Call(name, first, output if isinstance(output, torch.Tensor) else None))

        return record

    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    hooks = [module.register_forward_hook(recorder(name)) for name, module in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return channels, calls


def _consumer(calls: list[_Call], index: int) -> int | None:
    """The first call after ``calls[index]`` that takes its output as input."""
    output = calls[index].output
    for later in range(index + 1, len(calls)):
        if _same(calls[later].input, output):
            return later
    return None


def _placement(model: nn.Module, name: str, calls: list[_Call], counts: Counter[str]) -> tuple[str, str, int]:
    """Where the pooling of strided convolution ``name`` goes: ("before" | "after",
    module name, channels), following antialiased-cnns (see the module docstring).
    ``counts`` is how often each leaf module was called in the probe pass."""
    indices = [index for index, call in enumerate(calls) if call.name == name]
    if len(indices) != 1:
        raise ValueError(f"called {len(indices)} times in the probe pass (needs exactly one)")
    convolution = model.get_submodule(name)
    assert isinstance(convolution, nn.Conv2d)
    chain = [indices[0]]
    following = _consumer(calls, chain[-1])
    if following is not None and isinstance(model.get_submodule(calls[following].name), NORMALIZATIONS):
        chain.append(following)
        following = _consumer(calls, following)
    if following is not None and isinstance(model.get_submodule(calls[following].name), ACTIVATIONS):
        chain.append(following)
    elif convolution.kernel_size in (1, (1, 1)):
        return "before", name, convolution.in_channels
    last = calls[chain[-1]].name
    if counts[last] == 1:
        return "after", last, convolution.out_channels
    consumer = _consumer(calls, chain[-1])
    if consumer is not None and counts[calls[consumer].name] == 1:
        return "before", calls[consumer].name, convolution.out_channels
    raise ValueError(
        f"{last} is used {counts[last]} times and its output has no single-use consumer to pool in front of"
    )


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

    Args:
        model: a built model (left unchanged unless ``inplace``).
        kind: a pooling kind of :data:`robustbench_lift.pooling.POOLINGS`.
        input_size: (C, H, W) of the probe forward pass that finds channel counts and,
            for strided convolutions, where each one's pooling goes.
        include_strided_convolutions: also downsample every stride-2 convolution through
            the pooling (placed as the module docstring says).
        strict: raise UserError for a layer that cannot be replaced; otherwise log a
            warning and list it in ``report.failed``.
        inplace: change ``model`` itself instead of a copy.
        **options: options of ``kind`` (e.g. ``filter_size=4`` for blur).

    Returns:
        (the swapped model, its SwapReport)
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
    channels, calls = _probe(model, input_size, trace=bool(convolutions))
    counts = Counter(call.name for call in calls)
    # Work out every convolution's placement on the unchanged model, then change it.
    wrap_before: dict[str, list[nn.Module]] = defaultdict(list)
    wrap_after: dict[str, list[nn.Module]] = defaultdict(list)
    for name in convolutions:
        convolution = model.get_submodule(name)
        assert isinstance(convolution, nn.Conv2d)  # collected as Conv2d above
        try:
            stride = _single(convolution.stride, "stride")
            if stride != 2:
                raise ValueError(f"stride {stride}")
            if _single(convolution.dilation, "dilation") != 1:
                raise ValueError("dilated convolution")
            where, target, width = _placement(model, name, calls, counts)
            # A stride-2 convolution's output is ceil(M/2) of the stride-1 output M.
            replacement = make_pooling(kind, width, PoolGeometry(2, 2, 0, ceil_mode=True, replaces="conv"), **options)
        except (ValueError, UserError) as error:
            report.failed.append((name, str(error)))
            continue
        (wrap_before if where == "before" else wrap_after)[target].append(replacement)
        report.replaced.append((name, repr(convolution)))
        report.placed.append((name, f"{where} {target}"))
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
    for name, _ in report.placed:
        convolution = model.get_submodule(name)
        assert isinstance(convolution, nn.Conv2d)
        convolution.stride = (1, 1)
    for name in set(wrap_before) | set(wrap_after):
        module = model.get_submodule(name)
        _set_module(model, name, nn.Sequential(*wrap_before.get(name, []), module, *wrap_after.get(name, [])))
    if not report.replaced and not report.failed:
        hint = (
            ""
            if include_strided_convolutions
            else "; it may downsample by striding (pass include_strided_convolutions=True)"
        )
        report.failed.append(("<model>", f"no MaxPool2d/AvgPool2d layers found{hint}"))
    if report.failed:
        message = "; ".join(f"{name}: {reason}" for name, reason in report.failed)
        if strict:
            raise UserError(f"cannot swap pooling to {kind!r}: {message}")
        log.warning("pooling swap to %s left layers unreplaced: %s", kind, message)
    return model, report
