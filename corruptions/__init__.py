"""ImageNet-C-style corruptions (15 common + 4 extra, severities 1..5) in two severity profiles,
and ImageNet-P-style perturbation sequences (:mod:`corruptions.perturbations`).

``cifar``: the 32-px parameters of the CIFAR-10-C generator, reimplemented in numpy/OpenCV.
``imagenet``: the 224-px parameters, through the ``imagecorruptions`` package.
See :mod:`corruptions.engine` for the determinism contract and ``docs/corruptions.md``.

This package is model-free and imports nothing from ``robustbench_lift``. Importing it is
cheap: the generators (OpenCV, SciPy, scikit-image) load on first use of
:func:`corrupt_image`, :func:`corrupt_batch` or :func:`corrupt_many`, so the name tables of
:mod:`corruptions.registry` can be read without them. Bad input raises
:class:`CorruptionError` (a ``ValueError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corruptions.errors import CorruptionError
from corruptions.registry import (
    ALL_CORRUPTIONS,
    COMMON_CORRUPTIONS,
    CORRUPTION_FAMILIES,
    EXTRA_CORRUPTIONS,
    PROFILES,
    SEVERITIES,
    corruption_family,
    corruption_names,
)

if TYPE_CHECKING:
    from corruptions.engine import corrupt_batch, corrupt_image, corrupt_many

__all__ = [
    "ALL_CORRUPTIONS",
    "COMMON_CORRUPTIONS",
    "CORRUPTION_FAMILIES",
    "EXTRA_CORRUPTIONS",
    "PROFILES",
    "SEVERITIES",
    "CorruptionError",
    "corrupt_batch",
    "corrupt_image",
    "corrupt_many",
    "corruption_family",
    "corruption_names",
]

_ENGINE_NAMES = frozenset({"corrupt_batch", "corrupt_image", "corrupt_many"})


def __getattr__(name: str) -> Any:
    # PEP 562: the engine (and OpenCV, SciPy, scikit-image with it) loads on first use.
    if name in _ENGINE_NAMES:
        from corruptions import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'corruptions' has no attribute {name!r}")
