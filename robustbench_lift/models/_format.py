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

__all__ = ["METADATA_KEY", "read_safetensors_metadata"]

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
    return dict(record)
