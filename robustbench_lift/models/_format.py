"""The checkpoint metadata format, readable without torch.

A checkpoint stores its metadata record (architecture, pooling, training config,
clean accuracy, versions) as JSON under :data:`METADATA_KEY` in the safetensors header.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from robustbench_lift.errors import CheckpointError

__all__ = ["METADATA_KEY", "check_metadata", "read_safetensors_metadata"]

METADATA_KEY = "robustbench_lift"
# A header larger than this is not a checkpoint of ours (the format allows 100 MB).
_MAX_HEADER_BYTES = 100 * 2**20


def read_safetensors_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata record of a ``.safetensors`` checkpoint, read from its header alone.

    Args:
        path: the checkpoint file.

    Returns:
        The record (empty when the file carries none).

    Raises:
        CheckpointError: the file is missing or its header is unreadable.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _MAX_HEADER_BYTES:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(handle.read(length))
        record = json.loads((header.get("__metadata__") or {}).get(METADATA_KEY, "{}"))
    except (OSError, ValueError, struct.error, AttributeError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or not safetensors): {error}") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"checkpoint {path} has metadata of type {type(record).__name__}, expected a mapping")
    return dict(record)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_metadata(metadata: Any, source: str) -> None:
    """Refuses metadata whose structure fields are missing or of the wrong type, in one line.

    A checkpoint is user input: ``num_classes: "abc"`` or ``pooling_options: 3`` must not
    reach the model builder as a traceback.

    Args:
        metadata: the record read from the checkpoint.
        source: the checkpoint's name for the message.

    Raises:
        CheckpointError: naming the first bad field.
    """
    if not isinstance(metadata, dict):
        raise CheckpointError(f"checkpoint {source} has metadata of type {type(metadata).__name__}, expected a mapping")
    for field in ("architecture", "pooling"):
        if field not in metadata:
            raise CheckpointError(f"checkpoint {source} has no {field!r} in its metadata")
        if not isinstance(metadata[field], str):
            raise CheckpointError(f"checkpoint {source}: metadata {field!r} must be a string, got {metadata[field]!r}")
    classes = metadata.get("num_classes", 10)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise CheckpointError(
            f"checkpoint {source}: metadata 'num_classes' must be a positive integer, got {classes!r}"
        )
    for field in ("pooling_options", "preprocessing"):
        if not isinstance(metadata.get(field) or {}, dict):
            raise CheckpointError(f"checkpoint {source}: metadata {field!r} must be a mapping, got {metadata[field]!r}")
    preprocessing = metadata.get("preprocessing") or {}
    for key in ("mean", "std"):
        values = preprocessing.get(key)
        if values is not None and not (isinstance(values, list) and all(_is_number(value) for value in values)):
            raise CheckpointError(
                f"checkpoint {source}: metadata preprocessing {key!r} must be a list of numbers, got {values!r}"
            )
