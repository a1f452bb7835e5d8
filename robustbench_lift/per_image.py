"""Per-image outcomes of a run, kept compactly for paired comparisons (``per_image.npz``).

A run folder holds ``per_image.npz`` next to ``results.csv``; a gate baseline holds the
same file as its sidecar (``quick.csv`` -> ``quick.npz``). Both are written with
``np.savez_compressed`` and read with ``allow_pickle=False``:

- ``index``: UTF-8 JSON in a uint8 array: format version, the sample digest (hash of the
  sampled indices and their clean pixels: equal digests mean the same images), data
  set, split, seed, per-suite metadata (which conditions a summary metric averages) and
  one entry per array: ``{"key": "a0", "model", "suite", "name", "kind", "length"}``.
- ``a0``, ``a1``, ...: ``kind`` "bits" is a boolean per image packed with
  ``np.packbits`` (``length`` says how many bits are real); ``kind`` "float32" a float per
  image (or per sequence).

What each suite stores per image (array names, as the suites name them):

- corruption: ``clean`` and ``<corruption>/<severity>``: True where the prediction is wrong;
- perturbation: ``<perturbation>/flips`` and ``<perturbation>/top5``: flip probability and
  top-5 distance per sequence;
- shift: ``same``: True where both shifts get the same class;
- adversarial: ``clean_correct`` and ``<attack>/robust_correct`` (at the attack's
  headline epsilon): True where the prediction is (still) right.

Integer arrays (predictions) stay in ``store.sqlite`` only. Nothing here imports torch.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_lift.errors import UserError
from robustbench_lift.utils.io import atomic_write_bytes

__all__ = ["FILE_NAME", "FORMAT", "PerImage", "collect", "read_per_image", "sidecar_path", "write_per_image"]

FILE_NAME = "per_image.npz"
FORMAT = "robustbench-lift per-image outcomes"
VERSION = 1

ArrayKey = tuple[str, str, str]  # (model, suite, name)


@dataclass
class PerImage:
    """Per-image arrays of one run (or baseline) with the metadata that says how to pair them.

    ``arrays`` maps (model, suite, name) to a 1-d bool or float array; ``meta`` holds
    ``sample_digest``, ``dataset``, ``split``, ``seed`` and ``suites`` (per-suite metadata).
    """

    arrays: dict[ArrayKey, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_digest(self) -> str:
        """Hash of the sampled images ("" when unknown)."""
        return str(self.meta.get("sample_digest") or "")

    @property
    def models(self) -> list[str]:
        """Models with at least one array, in stored order."""
        return list(dict.fromkeys(model for model, _, _ in self.arrays))

    def suite_meta(self, suite: str) -> dict[str, Any]:
        """The metadata a suite recorded (empty when the suite did not run)."""
        return dict((self.meta.get("suites") or {}).get(suite) or {})

    def get(self, model: str, suite: str, name: str) -> np.ndarray | None:
        """One array, or None when it was not stored."""
        return self.arrays.get((model, suite, name))

    def subset(self, models: Iterable[str]) -> PerImage:
        """The arrays of ``models`` only (same metadata)."""
        wanted = set(models)
        return PerImage({key: value for key, value in self.arrays.items() if key[0] in wanted}, dict(self.meta))


def sidecar_path(baseline_file: str | Path) -> Path:
    """The per-image sidecar of a baseline CSV: ``quick.csv`` -> ``quick.npz``."""
    return Path(baseline_file).with_suffix(".npz")


def _kind(array: np.ndarray) -> str | None:
    if array.dtype == np.bool_:
        return "bits"
    if np.issubdtype(array.dtype, np.floating):
        return "float32"
    return None  # integer predictions: kept in the store only


def write_per_image(path: str | Path, per_image: PerImage) -> Path:
    """Writes ``per_image`` as a compressed npz (atomically: a reader never sees half a file).

    Args:
        path: the target file.
        per_image: arrays and metadata; arrays that are neither bool nor float are skipped.

    Returns:
        ``path``.
    """
    path = Path(path)
    entries: list[dict[str, Any]] = []
    payload: dict[str, Any] = {}  # Any: numpy types savez_compressed's keywords as allow_pickle: bool
    for (model, suite, name), array in per_image.arrays.items():
        array = np.asarray(array)
        kind = _kind(array)
        if kind is None or array.ndim != 1:
            continue
        key = f"a{len(entries)}"
        entries.append(
            {"key": key, "model": model, "suite": suite, "name": name, "kind": kind, "length": int(array.size)}
        )
        payload[key] = np.packbits(array) if kind == "bits" else array.astype(np.float32)
    index = dict(per_image.meta) | {"format": FORMAT, "version": VERSION, "arrays": entries}
    payload["index"] = np.frombuffer(json.dumps(index, sort_keys=True, default=str).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_per_image(path: str | Path) -> PerImage:
    """Reads a file written by :func:`write_per_image` (never unpickles anything).

    Raises:
        UserError: the file is missing, not an npz of this format, or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"per-image file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            index = json.loads(bytes(archive["index"]).decode("utf-8"))
            if not isinstance(index, dict) or index.get("format") != FORMAT:
                raise ValueError("not a robustbench-lift per-image file")
            if index.get("version") != VERSION:
                raise ValueError(f"format version {index.get('version')}, this code reads {VERSION}")
            arrays: dict[ArrayKey, np.ndarray] = {}
            for entry in index["arrays"]:
                stored = archive[entry["key"]]
                length = int(entry["length"])
                if entry["kind"] == "bits":
                    array = np.unpackbits(stored, count=length).astype(bool)
                elif entry["kind"] == "float32":
                    array = stored.astype(np.float64)
                else:
                    raise ValueError(f"unknown array kind {entry['kind']!r}")
                if array.shape != (length,):
                    raise ValueError(f"array {entry['key']} holds {array.size} values, its index says {length}")
                arrays[(str(entry["model"]), str(entry["suite"]), str(entry["name"]))] = array
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise UserError(f"per-image file {path} is unreadable: {' '.join(str(error).split())}") from None
    meta = {key: value for key, value in index.items() if key not in ("format", "version", "arrays")}
    return PerImage(arrays, meta)


def collect(per_image: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], meta: Mapping[str, Any]) -> PerImage:
    """A :class:`PerImage` from the runner's ``{suite: {model: {name: array}}}`` arrays."""
    arrays = {
        (model, suite, name): np.asarray(array)
        for suite, models in per_image.items()
        for model, named in models.items()
        for name, array in named.items()
    }
    return PerImage(arrays, dict(meta))
