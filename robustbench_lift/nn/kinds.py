"""The pooling-kind registry: names, descriptions, options and builders, readable without torch.

A kind's builder ``(channels, geometry, **options) -> nn.Module`` lives in
:mod:`robustbench_lift.nn.pooling` (or in any module named by the entry) and is imported
only when a layer is built, so listing kinds and checking options never import torch.
To add a pooling kind: write its builder, then add one ``POOLINGS.add`` entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from robustbench_lift.errors import UserError
from robustbench_lift.registry import Registry

__all__ = ["POOLINGS", "PoolGeometry", "PoolingKind", "list_poolings", "pooling_table", "resolve_options"]

#: Module of the built-in builders.
BUILDERS = "robustbench_lift.nn.pooling"


@dataclass(frozen=True)
class PoolGeometry:
    """Kernel, stride and padding of the downsampling layer being replaced."""

    kernel_size: int = 2
    stride: int = 2
    padding: int = 0
    ceil_mode: bool = False

    def output_length(self, length: int) -> int:
        """torch's pooling output length for an input of ``length``."""
        span = length + 2 * self.padding - self.kernel_size
        if not self.ceil_mode:
            return span // self.stride + 1
        out = -(-span // self.stride) + 1
        # torch drops a last window that would start inside the right padding.
        if (out - 1) * self.stride >= length + self.padding:
            out -= 1
        return out


@dataclass(frozen=True)
class PoolingKind:
    """A registered pooling kind: its builder's name and the options it accepts (with defaults).

    ``build`` names a function ``(channels, geometry, **options) -> nn.Module`` of
    ``module``; it is imported by :meth:`builder` when the first layer is built.
    """

    name: str
    description: str
    build: str
    options: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # name -> (default, help)
    supports_stride: tuple[int, ...] = (2,)
    module: str = BUILDERS

    def builder(self) -> Callable[..., Any]:
        """The builder function (imports its module, and torch with it)."""
        builder: Callable[..., Any] = getattr(importlib.import_module(self.module), self.build)
        return builder


POOLINGS: Registry[PoolingKind] = Registry("pooling kind")

_COMBINE_HELP = "sub-band combination: sum (LL+LH+HL+HH, the paper's), LL, LH, HL or HH"

POOLINGS.add("max", PoolingKind("max", "max pooling (torch MaxPool2d)", "_build_max", supports_stride=(1, 2, 3, 4)))
POOLINGS.add("avg", PoolingKind("avg", "average pooling (torch AvgPool2d)", "_build_avg", supports_stride=(1, 2, 3, 4)))
POOLINGS.add("skip", PoolingKind("skip", "strided subsampling: keep every 2nd sample", "_build_skip"))
POOLINGS.add(
    "blur",
    PoolingKind(
        "blur",
        "anti-aliased max pooling: dense max then BlurPool (antialiased-cnns, Zhang 2019)",
        "_build_blur",
        {"filter_size": (3, "binomial blur filter taps (3 or 5 in the paper's tables)")},
    ),
)
POOLINGS.add(
    "lift",
    PoolingKind(
        "lift",
        "learned LiftDownPool (Zhao & Snoek 2021)",
        "_build_lift",
        {
            "combine": ("sum", _COMBINE_HELP),
            "kernel_size": (3, "taps of the predict/update convolution along the lifting axis: 3, 5 or 7"),
            "groups": ("depthwise", "predict/update K-tap convolution: depthwise or dense"),
        },
    ),
)
POOLINGS.add("haar", PoolingKind("haar", "fixed Haar lifting (LL = 2x2 average)", "_build_haar", {"combine": ("sum", _COMBINE_HELP)}))
POOLINGS.add(
    "lift53", PoolingKind("lift53", "fixed CDF 5/3 (LeGall) lifting", "_build_lift53", {"combine": ("sum", _COMBINE_HELP)})
)



def resolve_options(kind: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full option set of ``kind``: defaults overridden by ``options``; unknown keys rejected."""
    spec = POOLINGS.get(kind)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        known = ", ".join(spec.options) or "none"
        raise UserError(f"pooling {kind!r} has no option {unknown[0]!r}; its options: {known}")
    resolved = {name: default for name, (default, _) in spec.options.items()}
    for name, value in options.items():
        default = spec.options[name][0]
        resolved[name] = type(default)(value) if default is not None else value
    return resolved


def pooling_table() -> list[dict[str, str]]:
    """One row per kind with its options, for ``robustbench-lift list poolings``."""
    rows = []
    for name in POOLINGS:
        spec = POOLINGS.get(name)
        options = "; ".join(f"{key}={default!r} ({text})" for key, (default, text) in spec.options.items())
        rows.append({"kind": name, "description": spec.description, "options": options or "-"})
    return rows


def list_poolings() -> list[str]:
    """Names of the registered pooling kinds."""
    return POOLINGS.names()
