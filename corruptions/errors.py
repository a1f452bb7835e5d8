"""The one error type of the corruption engine: bad input from the caller.

:class:`CorruptionError` is a :class:`ValueError`, so plain Python callers can catch it
as such; ``robustbench_lift`` treats it like its own ``UserError`` (one line, exit 2).
"""

from __future__ import annotations

__all__ = ["CorruptionError"]


class CorruptionError(ValueError):
    """Bad input to the corruption engine: unknown name, bad severity, seed or image array."""
