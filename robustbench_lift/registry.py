"""One small registry type shared by pooling kinds, models, data sets, suites, executors and attacks.

The lookup logic lives in :class:`corruptions._registry.Registry` (the corruption engine
depends on nothing here); this subclass raises :class:`~robustbench_lift.errors.UserError`.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from corruptions._registry import Registry as _Registry
from robustbench_lift.errors import UserError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(_Registry[T]):
    """Maps names to objects; unknown names raise a one-line :class:`UserError`."""

    error: ClassVar[type[Exception]] = UserError
