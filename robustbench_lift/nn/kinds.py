"""The pooling-kind registry: names, descriptions, options and builders, readable without torch.

A kind's builder ``(channels, geometry, **options) -> nn.Module`` lives in
:mod:`robustbench_lift.nn.pooling` (or in any module named by the entry) and is imported
only when a layer is built, so listing kinds and checking options never import torch.
To add a pooling kind: write its builder, then add one ``POOLINGS.add`` entry here.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from robustbench_lift.errors import UserError
from robustbench_lift.registry import Registry

__all__ = [
    "DEPRECATED_KINDS",
    "POOLINGS",
    "SITES",
    "DeprecatedKind",
    "PoolGeometry",
    "PoolingKind",
    "canonical_kind",
    "list_poolings",
    "pooling_table",
    "recorded_options",
    "resolve_options",
]

#: Module of the built-in builders.
BUILDERS = "robustbench_lift.nn.pooling"


#: Kinds of site a pooling layer can stand in for (PoolGeometry.replaces).
SITES = ("max", "avg", "conv")


@dataclass(frozen=True)
class PoolGeometry:
    """Kernel, stride and padding of the downsampling layer being replaced, and what it was.

    ``replaces`` is the kind of site: ``"max"`` (a MaxPool2d), ``"avg"`` (an AvgPool2d) or
    ``"conv"`` (the downsampling of a strided convolution, now run at stride 1, whose
    output the pooling receives after the convolution's normalization and activation).
    Most kinds ignore it; blur is built differently for each (antialiased-cnns' recipe).
    """

    kernel_size: int = 2
    stride: int = 2
    padding: int = 0
    ceil_mode: bool = False
    replaces: str = "max"

    def __post_init__(self) -> None:
        if self.replaces not in SITES:
            raise ValueError(f"replaces must be one of {SITES}, got {self.replaces!r}")

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
    # Values of options that a checkpoint written before the option existed was built with
    # (its recorded option set lacks them); see recorded_options().
    legacy_options: Mapping[str, Any] = field(default_factory=dict)

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
        "anti-aliased downsampling (antialiased-cnns, Zhang 2019): max sites MaxPool(k, 1) + BlurPool, "
        "average and strided-convolution sites BlurPool alone",
        "_build_blur",
        {"filter_size": (4, "binomial blur filter taps, 1..5 (4: the released models'; 1: no blur)")},
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
            "kernel_size": (3, "taps of the predict/update convolution along the lifting axis: 1, 3, 5 or 7"),
            "groups": ("depthwise", "predict/update K-tap convolution: depthwise or dense"),
            "share": (
                "all",
                "predict/update pairs: all (one pair for the three 1-D lifts, the paper's; the zoo's) "
                "or per_direction (one horizontal, one vertical pair: twice the lifting parameters)",
            ),
        },
        # Lift checkpoints written before `share` existed have one P/U pair per direction.
        legacy_options={"share": "per_direction"},
    ),
)
# Fixed lifting controls, named by what they compute. Summed over all four sub-bands a
# fixed lifting is no low-pass filter: Haar's sum is the 2x2 filter
# [[0.25, -0.75], [-0.75, 2.25]], with gain 1 for a constant and 4 for the checkerboard.
POOLINGS.add(
    "haar_sum",
    PoolingKind(
        "haar_sum",
        "fixed Haar lifting, LL+LH+HL+HH: the 2x2 filter [[0.25, -0.75], [-0.75, 2.25]], high-pass dominated "
        "(gain 1 for a constant, 4 for the checkerboard)",
        "_build_haar_sum",
    ),
)
POOLINGS.add(
    "haar_ll",
    PoolingKind("haar_ll", "fixed Haar lifting, LL only: exactly 2x2 average pooling", "_build_haar_ll"),
)
POOLINGS.add(
    "cdf53_sum",
    PoolingKind(
        "cdf53_sum",
        "fixed CDF 5/3 (LeGall) lifting, LL+LH+HL+HH: high-pass dominated "
        "(gain 1 for a constant, 4 for the checkerboard)",
        "_build_cdf53_sum",
    ),
)
POOLINGS.add(
    "cdf53_ll",
    PoolingKind(
        "cdf53_ll",
        "fixed CDF 5/3 (LeGall) lifting, LL only: the 5/3 low-pass [-1, 2, 6, 2, -1] / 8 along each axis, stride 2",
        "_build_cdf53_ll",
    ),
)


@dataclass(frozen=True)
class DeprecatedKind:
    """A kind name that used to exist: ``combine`` (its old option) picks the new kind."""

    name: str
    by_combine: Mapping[str, str]

    def resolve(self, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """(new kind, the options left) for this old name with ``options``."""
        options = dict(options)
        combine = options.pop("combine", "sum")
        if combine not in self.by_combine:
            known = ", ".join(f"combine={key} -> {value}" for key, value in self.by_combine.items())
            raise UserError(f"deprecated pooling kind {self.name!r} supports only {known}; got combine={combine!r}")
        return self.by_combine[combine], options


#: Old names of the fixed lifting controls (their default was the sum of the four bands).
DEPRECATED_KINDS: dict[str, DeprecatedKind] = {
    "haar": DeprecatedKind("haar", {"sum": "haar_sum", "LL": "haar_ll"}),
    "lift53": DeprecatedKind("lift53", {"sum": "cdf53_sum", "LL": "cdf53_ll"}),
}


def canonical_kind(kind: str, options: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``(kind, options)`` with a deprecated kind name (``haar``, ``lift53``) translated to
    the kind it now is (with a DeprecationWarning); other names pass through unchanged."""
    options = dict(options or {})
    if kind not in DEPRECATED_KINDS:
        return kind, options
    new_kind, options = DEPRECATED_KINDS[kind].resolve(options)
    warnings.warn(f"pooling kind {kind!r} is deprecated; it is now {new_kind!r}", DeprecationWarning, stacklevel=3)
    return new_kind, options


def recorded_options(kind: str, options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The (kind, options) a checkpoint's recorded pooling describes, in today's terms.

    Deprecated kind names are translated, and options the kind gained after the
    checkpoint was written get the value that reproduces the recorded model (e.g. a lift
    checkpoint without ``share`` has one P/U pair per direction).
    """
    kind, options = canonical_kind(kind, options)
    if kind in POOLINGS:
        for name, value in POOLINGS.get(kind).legacy_options.items():
            options.setdefault(name, value)
    return kind, options


def resolve_options(kind: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full option set of ``kind``: defaults overridden by ``options``; unknown keys rejected.

    A deprecated kind name is resolved first (:func:`canonical_kind`), so the options
    returned are those of the kind it now is.
    """
    kind, options = canonical_kind(kind, options)
    spec = POOLINGS.get(kind)
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
    for name, deprecated in DEPRECATED_KINDS.items():
        targets = ", ".join(f"{value} (combine={key})" for key, value in deprecated.by_combine.items())
        rows.append({"kind": name, "description": f"deprecated name of {targets}", "options": "-"})
    return rows


def list_poolings() -> list[str]:
    """Names of the registered pooling kinds."""
    return POOLINGS.names()
