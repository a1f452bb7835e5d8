"""Models from the user's own code: ``python:`` specs.

A ``python:`` spec names a function (or class) in an importable module that builds the
model, optionally with keyword arguments and a weights file to load into it::

    python:<module>:<callable>[:<key>=<value>]...[@<weights>]

``<module>``
    A dotted module name, imported from the working directory or ``PYTHONPATH``
    (the working directory is put on ``sys.path`` first, as ``python -m`` does).
``<callable>``
    An attribute of the module (dotted for a nested one, e.g. ``Net.small``), called with
    the options as keyword arguments; it must return a ``torch.nn.Module``.
``<key>=<value>``
    Keyword arguments. Values are read as integers (``32``), floats (``0.5``, ``1e-3``),
    booleans (``true`` / ``false``) or else strings (``lift``), unquoted.
``@<weights>``
    A weights file loaded strictly into the built model: safetensors, or a torch file
    holding a state dict (also nested under ``state_dict`` / ``model``, or with
    ``module.`` prefixes), as for ``checkpoint:`` specs. Everything after the first ``@``
    is the path, so the path may contain ``:``.

Examples: ``python:mypkg.nets:build``,
``python:mypkg.nets:build:width=32:pooling=lift@runs/mine.safetensors``.

The model is returned in eval mode and must take what every model of this package
takes: float images N x C x H x W in [0, 1] at the data set's size (its normalisation
belongs inside the model). Finding the code (import errors, a missing attribute,
something not callable, arguments it does not take, a result that is not a module, a
weights file that does not fit) fails with one line; an exception raised while the
user's code runs keeps its traceback, which points into that code.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from robustbench_lift.errors import CheckpointError, UserError

__all__ = [
    "PREFIX",
    "PYTHON_SPEC_EXAMPLE",
    "PYTHON_SPEC_SYNTAX",
    "PythonSpec",
    "is_python_spec",
    "load_python_model",
    "parse_python_spec",
]

PREFIX = "python:"
PYTHON_SPEC_SYNTAX = "python:<module>:<callable>[:<key>=<value>]...[@<weights>]"
PYTHON_SPEC_EXAMPLE = "python:mypkg.nets:build:width=32@runs/mine.safetensors"

_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_KEY = re.compile(r"[A-Za-z_]\w*")
_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?[eE][+-]?\d+|\.\d+[eE][+-]?\d+)")


@dataclass(frozen=True)
class PythonSpec:
    """A parsed ``python:`` spec."""

    text: str
    module: str
    attribute: str
    options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None

    @property
    def target(self) -> str:
        """``module:callable``, the builder's name."""
        return f"{self.module}:{self.attribute}"


def is_python_spec(text: str) -> bool:
    """Whether ``text`` is a ``python:`` spec (well formed or not)."""
    return text.startswith(PREFIX)


def parse_value(text: str) -> Any:
    """A keyword value: int, float, bool (``true`` / ``false``, any case) or the string itself."""
    if _INTEGER.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_python_spec(text: str) -> PythonSpec:
    """Splits a ``python:`` spec into module, callable, keyword arguments and weights.

    Args:
        text: the spec, e.g. ``python:mypkg.nets:build:width=32@weights.safetensors``.

    Returns:
        The parsed spec (nothing imported yet).

    Raises:
        UserError: the spec does not follow :data:`PYTHON_SPEC_SYNTAX`.
    """
    if not is_python_spec(text):
        raise UserError(f"model spec {text!r} does not start with {PREFIX!r}")
    body, at, weights = text[len(PREFIX) :].partition("@")
    if at and not weights.strip():
        raise UserError(f"model spec {text!r} names no weights file after '@'; expected {PYTHON_SPEC_SYNTAX}")
    fields = body.split(":")
    if len(fields) < 2 or not _DOTTED_NAME.fullmatch(fields[0]) or not _DOTTED_NAME.fullmatch(fields[1]):
        raise UserError(f"malformed model spec {text!r}; expected {PYTHON_SPEC_SYNTAX}, e.g. {PYTHON_SPEC_EXAMPLE}")
    options: dict[str, Any] = {}
    for item in fields[2:]:
        key, equals, value = item.partition("=")
        if not equals or not _KEY.fullmatch(key):
            raise UserError(
                f"model spec {text!r}: {item!r} is not a keyword argument <key>=<value>; expected {PYTHON_SPEC_SYNTAX}"
            )
        if key in options:
            raise UserError(f"model spec {text!r} sets {key} twice")
        options[key] = parse_value(value)
    return PythonSpec(text, fields[0], fields[1], options, weights if at else None)


def _put_working_directory_on_path() -> str:
    """Lets ``<module>`` be found in the working directory, as ``python -m`` would."""
    directory = os.getcwd()
    entries = {os.path.realpath(entry or os.curdir) for entry in sys.path}
    if os.path.realpath(directory) not in entries:
        sys.path.insert(0, directory)
        importlib.invalidate_caches()
    return directory


def _import_module(spec: PythonSpec) -> ModuleType:
    directory = _put_working_directory_on_path()
    try:
        return importlib.import_module(spec.module)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (spec.module == missing or spec.module.startswith(missing + ".")):
            raise UserError(
                f"model spec {spec.text!r}: no module named {missing!r} in the working directory ({directory}) or on PYTHONPATH"
            ) from None
        raise UserError(f"model spec {spec.text!r}: importing {spec.module} failed: {error}") from None
    except ImportError as error:
        raise UserError(f"model spec {spec.text!r}: importing {spec.module} failed: {error}") from None
    except SyntaxError as error:
        raise UserError(f"model spec {spec.text!r}: {error.filename}:{error.lineno}: {error.msg}") from None


def _find_callable(spec: PythonSpec, module: ModuleType) -> Any:
    target: Any = module
    where = spec.module
    for part in spec.attribute.split("."):
        if not hasattr(target, part):
            known = [name for name in dir(target) if not name.startswith("_")]
            matches = difflib.get_close_matches(part, known, n=3)
            hint = f"; did you mean {', '.join(matches)}?" if matches else ""
            raise UserError(f"model spec {spec.text!r}: {where} has no attribute {part!r}{hint}")
        target = getattr(target, part)
        where = f"{where}.{part}"
    if not callable(target):
        raise UserError(
            f"model spec {spec.text!r}: {spec.target} is a {type(target).__name__}, not a function or class"
        )
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # some builtins have no signature: let the call decide
        return target
    try:
        signature.bind(**spec.options)
    except TypeError as error:
        parameters = ", ".join(signature.parameters) or "no arguments"
        raise UserError(
            f"model spec {spec.text!r}: {spec.target} cannot be called with {spec.options}: {error} (it takes {parameters})"
        ) from None
    return target


def load_python_model(text: str) -> tuple[Any, dict[str, Any]]:
    """Builds the model a ``python:`` spec names and loads its weights, if any.

    Args:
        text: the spec (:data:`PYTHON_SPEC_SYNTAX`).

    Returns:
        (model in eval mode, metadata): ``spec``, ``library`` ("python"),
        ``architecture`` (``module:callable``), ``builder_options``, ``pooling`` (the
        ``pooling`` argument or the weights file's record, else "unknown") and ``source``
        (the weights file, or None); fields of a weights file's own metadata record
        (e.g. ``dataset``, ``num_classes``, ``clean_test_accuracy``) are kept.

    Raises:
        UserError: see the module docstring; CheckpointError when the weights do not fit.
    """
    from torch import nn

    from robustbench_lift.models.checkpoints import load_state, read_checkpoint

    spec = parse_python_spec(text)
    if spec.weights is not None and not Path(spec.weights).expanduser().is_file():
        raise CheckpointError(f"model spec {text!r}: weights file {spec.weights} does not exist")
    builder = _find_callable(spec, _import_module(spec))
    model = builder(**spec.options)
    if not isinstance(model, nn.Module):
        raise UserError(f"model spec {text!r}: {spec.target} returned a {type(model).__name__}, not a torch.nn.Module")
    metadata: dict[str, Any] = {}
    if spec.weights is not None:
        path = Path(spec.weights).expanduser()
        state, metadata = read_checkpoint(path)
        try:
            load_state(model, state, str(path))
        except CheckpointError as error:
            raise CheckpointError(f"model spec {text!r}: {error}") from None
    metadata = {
        **metadata,
        "spec": text,
        "library": "python",
        "architecture": spec.target,
        "builder_options": dict(spec.options),
        "pooling": str(spec.options.get("pooling", metadata.get("pooling", "unknown"))),
        "source": None if spec.weights is None else str(Path(spec.weights).expanduser()),
    }
    return model.eval(), metadata
