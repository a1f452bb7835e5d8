"""Errors that mean the user asked for something impossible (bad input), not a bug.

The command line prints these as one line and exits 2; anything else is a bug and keeps
its traceback. :data:`USER_ERRORS` also holds the corruption engine's own
:class:`~corruptions.errors.CorruptionError`, which :mod:`corruptions` raises because it
depends on nothing in this package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from corruptions.errors import CorruptionError

__all__ = ["USER_ERRORS", "CheckpointError", "CorruptionError", "UserError", "corruption_input"]


class UserError(Exception):
    """Bad input from the user: unknown name, missing file, malformed config."""


class CheckpointError(UserError):
    """A checkpoint is unreadable or does not match the model being built."""


#: Every exception type that means bad input (catch these to print one line).
USER_ERRORS: tuple[type[Exception], ...] = (UserError, CorruptionError)


@contextmanager
def corruption_input() -> Iterator[None]:
    """Re-raises the corruption engine's :class:`CorruptionError` as :class:`UserError`
    (same message), so this package's functions raise one error type for bad input."""
    try:
        yield
    except CorruptionError as error:
        raise UserError(str(error)) from None
