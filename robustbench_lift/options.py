"""Configuration options that plugins own: a key's type, default and help, and the type check.

A suite or executor declares the run-config keys it reads as ``options`` (a mapping of
key -> :class:`Option`); :class:`robustbench_lift.run.config.RunConfig` accepts them
beside its general keys and checks their types with :func:`check_value`, and the plugin
checks their values itself. Base layer: no imports above it, no torch.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Union, get_args, get_origin

from robustbench_lift.errors import UserError

__all__ = ["ConfigView", "Option", "check_value"]


@dataclass(frozen=True)
class Option:
    """One config key a plugin owns.

    Attributes:
        hint: the value's type as a typing expression (``int``, ``list[str]``, ``str | None``).
        default: the value when the config does not set the key (copied for each config).
        help: one line for documentation.
    """

    hint: Any
    default: Any
    help: str = ""

    def default_value(self) -> Any:
        """A fresh copy of the default (lists are never shared between configs)."""
        return copy.deepcopy(self.default)


class ConfigView(Protocol):
    """What suites and executors read from a run's configuration: the general keys below,
    and the options they own as attributes (:class:`robustbench_lift.run.config.RunConfig`
    provides both)."""

    dataset: str
    split: str
    sample_size: int | None
    profile: str
    reference_model: str | None
    seed: int
    workers: int
    batch_size: int
    device: str
    threads: int | None
    precision: str
    attack_precision: str
    channels_last: bool | None

    def __getattr__(self, name: str) -> Any: ...


def check_value(name: str, value: Any, expected: Any) -> Any:
    """``value`` checked against the type hint ``expected`` (ints accepted for floats).

    Args:
        name: the config key, for the message.
        value: the value read from YAML or the command line.
        expected: a type or typing expression (unions, ``list[...]``, ``dict[..., ...]``).

    Returns:
        The value (floats converted from ints).

    Raises:
        UserError: one line naming the key when the type is wrong.
    """
    origin = get_origin(expected)
    if origin is Union or origin is types.UnionType:
        options = get_args(expected)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return check_value(name, value, option)
            except UserError as error:
                errors.append(str(error))
        raise UserError(errors[0] if errors else f"config key {name!r} has the wrong type")
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise UserError(f"config key {name!r} must be a mapping, got {type(value).__name__}")
        key_type, item_type = get_args(expected)
        return {check_value(name, key, key_type): check_value(name, item, item_type) for key, item in value.items()}
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {name!r} must be a number, got {value!r}")
        return float(value)
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"config key {name!r} must be a list, got {type(value).__name__}")
        (item_type,) = get_args(expected)
        return [check_value(name, item, item_type) for item in value]
    if expected is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key {name!r} must be true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {name!r} must be an integer, got {value!r}")
        return value
    if expected is str:
        if not isinstance(value, str):
            raise UserError(f"config key {name!r} must be a string, got {value!r}")
        return value
    return value
