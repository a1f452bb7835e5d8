"""Seed and index checks: the corruption engine's implementation, raising :class:`UserError` here.

:mod:`corruptions` depends on nothing in this package, so it owns the checks
(:mod:`corruptions._checks`); these wrappers give this package's callers its own error type.
"""

from __future__ import annotations

import numpy as np

from corruptions import _checks
from robustbench_lift.errors import corruption_input

__all__ = ["check_indices", "check_seed"]


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int; a one-line UserError unless it is a non-negative integer."""
    with corruption_input():
        return _checks.check_seed(seed, what)


def check_indices(
    indices: np.ndarray | None, count: int | None = None, *, limit: int | None = None, where: str = ""
) -> np.ndarray:
    """Per-image indices as int64 (see :func:`corruptions._checks.check_indices`); UserError when invalid."""
    with corruption_input():
        return _checks.check_indices(indices, count, limit=limit, where=where)
