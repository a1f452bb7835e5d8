"""The shipped model zoo: Fashion-MNIST small_cnn models that differ only in pooling.

The weights are trained by ``scripts/train_zoo.py`` and ship as package data
(``robustbench_lift/zoo_weights/``); each file carries its metadata (training config,
clean test accuracy, versions). Listing the zoo needs no torch; loading a model does.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_lift.errors import UserError
from robustbench_lift.models._format import read_safetensors_metadata

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ZOO_ARCHITECTURE",
    "ZOO_DATASET",
    "ZOO_DIRECTORY",
    "ZOO_KINDS",
    "load_zoo_model",
    "zoo_checkpoint_path",
    "zoo_metadata",
    "zoo_model_name",
    "zoo_names",
]

ZOO_DIRECTORY = Path(__file__).resolve().parent.parent / "zoo_weights"
ZOO_KINDS = ("max", "avg", "skip", "blur", "lift", "haar", "lift53")
ZOO_ARCHITECTURE = "small_cnn"
ZOO_DATASET = "fashion_mnist"


def zoo_model_name(kind: str) -> str:
    """The zoo's name of the model with pooling ``kind`` (``small_cnn-lift``)."""
    return f"{ZOO_ARCHITECTURE}-{kind}"


def zoo_checkpoint_path(kind: str) -> Path:
    """The weights file of the zoo model with pooling ``kind``."""
    return ZOO_DIRECTORY / f"{ZOO_DATASET}-{ZOO_ARCHITECTURE}-{kind}.safetensors"


def zoo_names() -> list[str]:
    """Names of the zoo models whose weights are present, e.g. ``small_cnn-lift``."""
    return [zoo_model_name(kind) for kind in ZOO_KINDS if zoo_checkpoint_path(kind).exists()]


def _kind_of(name: str) -> str:
    prefix = f"{ZOO_ARCHITECTURE}-"
    kind = name[len(prefix) :] if name.startswith(prefix) else name
    if kind not in ZOO_KINDS:
        raise UserError(f"unknown zoo model {name!r}; known: {', '.join(zoo_model_name(k) for k in ZOO_KINDS)}")
    return kind


def load_zoo_model(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """Loads a zoo model (``small_cnn-max`` or just ``max``) in eval mode with its metadata."""
    kind = _kind_of(name)
    path = zoo_checkpoint_path(kind)
    if not path.exists():
        raise UserError(f"zoo weights {path} are missing; run scripts/train_zoo.py --kinds {kind}")
    from robustbench_lift.models.checkpoints import load_checkpoint

    return load_checkpoint(path, expect={"architecture": ZOO_ARCHITECTURE, "pooling": kind, "dataset": ZOO_DATASET})


def zoo_metadata(name: str) -> dict[str, Any]:
    """The metadata record of a zoo model, read from the file's header (no torch, no weights)."""
    return read_safetensors_metadata(zoo_checkpoint_path(_kind_of(name)))
