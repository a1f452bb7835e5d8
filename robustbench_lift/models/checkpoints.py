"""Checkpoints: weights plus a metadata record, saved as safetensors.

safetensors cannot run code on load (unlike pickle), and its header carries the
metadata, so one file says what model it belongs to. ``.pt``/``.pth`` files are read with
``torch.load(weights_only=True)`` for the same reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_lift.errors import CheckpointError
from robustbench_lift.models._builder import build_model
from robustbench_lift.models._format import METADATA_KEY, check_metadata
from robustbench_lift.nn.kinds import recorded_options
from robustbench_lift.utils.io import PARTIAL, atomic_write_bytes

# Fields that decide the model's structure; a mismatch means the weights cannot belong to it.
STRUCTURE_FIELDS = ("architecture", "pooling", "pooling_options", "num_classes")


def save_checkpoint(model: nn.Module, metadata: Mapping[str, Any], path: str | Path) -> None:
    """Writes ``model``'s state dict and ``metadata`` to ``path`` atomically."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    data = save(state, metadata={METADATA_KEY: json.dumps(dict(metadata), sort_keys=True)})
    atomic_write_bytes(path, data, temporary=path.with_name(f".{path.name}.{os.getpid()}{PARTIAL}"))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads (state dict, metadata) from a safetensors or torch file without building a model."""
    state, metadata = _read_checkpoint(Path(path))
    if not isinstance(metadata, dict):
        raise CheckpointError(f"checkpoint {path} has metadata of type {type(metadata).__name__}, expected a mapping")
    return state, metadata


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises several unrelated types on a bad file
            raise CheckpointError(f"checkpoint {path} is unreadable (truncated or not safetensors): {error}") from None
        return state, metadata
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or not a torch file): {error}") from None
    if isinstance(payload, dict) and "state_dict" in payload and isinstance(payload["state_dict"], dict):
        return payload["state_dict"], payload.get("metadata") or {}
    if isinstance(payload, dict) and "model" in payload and isinstance(payload["model"], dict):
        return payload["model"], payload.get("metadata") or {}
    if isinstance(payload, dict) and all(isinstance(value, torch.Tensor) for value in payload.values()):
        return payload, {}
    raise CheckpointError(f"checkpoint {path} holds no state dict")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Loads ``state`` strictly, turning key or shape mismatches into one clear line."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {source} does not fit this model: {len(missing)} missing keys (e.g. {missing[:1]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:1]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"checkpoint {source} does not fit this model: {key} has shape {tuple(value.shape)}, model needs {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)


def load_checkpoint(path: str | Path, expect: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Builds the model a checkpoint describes, loads its weights, and returns (model, metadata).

    ``expect`` lists metadata the caller requires (e.g. architecture and pooling); a
    checkpoint that disagrees is refused with the first differing field.
    """
    state, metadata = read_checkpoint(path)
    check_metadata(metadata, str(path))
    for field, value in (expect or {}).items():
        if metadata.get(field) != value:
            raise CheckpointError(f"checkpoint {path} is for {field}={metadata.get(field)!r}, not {value!r}")
    preprocessing = metadata.get("preprocessing") or {}
    # Older checkpoints name deprecated kinds or lack options added since: rebuild them as recorded.
    kind, options = recorded_options(metadata["pooling"], metadata.get("pooling_options") or {})
    model = build_model(
        metadata["architecture"],
        kind,
        num_classes=int(metadata.get("num_classes", 10)),
        pooling_options=options,
        mean=preprocessing.get("mean"),
        std=preprocessing.get("std"),
    )
    load_state(model, state, str(path))
    model.eval()
    return model, metadata
