"""Errors that mean the user asked for something impossible (bad input), not a bug.

The command line prints these as one line and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: unknown name, missing file, malformed config."""


class CheckpointError(UserError):
    """A checkpoint is unreadable or does not match the model being built."""
