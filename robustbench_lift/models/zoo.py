"""The shipped model zoo: Fashion-MNIST small_cnn models that differ only in pooling, with
several training seeds per pooling kind (same recipe, different seed).

Models are named ``small_cnn-<kind>-s<seed>`` (``small_cnn-lift-s0``); ``small_cnn-<kind>``
and ``<kind>`` alone mean seed 0. The weights are trained by ``scripts/train_zoo.py`` and
ship as package data, ``fashion_mnist-small_cnn-<kind>-s<seed>.safetensors``; each file
carries its metadata (training config, clean test accuracy, versions). Files of the first,
single-seed zoo (``fashion_mnist-small_cnn-<kind>.safetensors``, with the old kind names
``haar`` and ``lift53``) serve as seed 0 where no seeded file exists. Listing the zoo needs
no torch; loading a model does.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_lift.errors import UserError
from robustbench_lift.models._format import read_safetensors_metadata
from robustbench_lift.nn.kinds import DEPRECATED_KINDS, recorded_options, resolve_options

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ZOO_DIRECTORY",
    "ZOO_KINDS",
    "ZOO_SEEDS",
    "ZOO_POOLING_OPTIONS",
    "ZOO_ARCHITECTURE",
    "ZOO_DATASET",
    "ZooEntry",
    "zoo_model_name",
    "zoo_file_name",
    "zoo_checkpoint_path",
    "parse_zoo_name",
    "zoo_entries",
    "zoo_names",
    "zoo_table",
    "load_zoo_model",
    "zoo_metadata",
]

ZOO_DIRECTORY = Path(__file__).resolve().parent.parent / "zoo_weights"
# haar_ll is not trained: it is exactly 2x2 average pooling, i.e. the avg model.
ZOO_KINDS = ("max", "avg", "skip", "blur", "lift", "haar_sum", "cdf53_sum")
ZOO_SEEDS = (0, 1, 2)
# The zoo's recipe beyond the kind's defaults, the same for every seed. Seed 0 was trained
# before the paper's single shared P/U pair (share="all", today's default) and BlurPool's
# released filter size (4, today's default) were options; seeds 1 and 2 repeat its
# recipe so that the seeds of a kind differ in their seed only.
ZOO_POOLING_OPTIONS: dict[str, dict[str, Any]] = {
    "lift": {"combine": "sum", "groups": "depthwise", "kernel_size": 3, "share": "per_direction"},
    "blur": {"filter_size": 3},
}
ZOO_ARCHITECTURE = "small_cnn"
ZOO_DATASET = "fashion_mnist"
# File-name kinds of the single-seed zoo, where they differ from today's kind names.
_LEGACY_FILE_KINDS = {"haar_sum": "haar", "cdf53_sum": "lift53"}
_NAME = re.compile(r"^(?P<kind>.+?)(?:-s(?P<seed>\d+))?$")


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its pooling kind, training seed and weights file."""

    kind: str
    seed: int
    path: Path

    @property
    def name(self) -> str:
        return zoo_model_name(self.kind, self.seed)


def zoo_model_name(kind: str, seed: int = 0) -> str:
    """``small_cnn-<kind>-s<seed>``."""
    return f"{ZOO_ARCHITECTURE}-{kind}-s{seed}"


def zoo_file_name(kind: str, seed: int) -> str:
    """The weights file name that ``scripts/train_zoo.py`` writes for (kind, seed)."""
    return f"{ZOO_DATASET}-{ZOO_ARCHITECTURE}-{kind}-s{seed}.safetensors"


def _legacy_path(kind: str, directory: Path) -> Path:
    return directory / f"{ZOO_DATASET}-{ZOO_ARCHITECTURE}-{_LEGACY_FILE_KINDS.get(kind, kind)}.safetensors"


def zoo_checkpoint_path(kind: str, seed: int = 0, directory: Path | None = None) -> Path:
    """The weights of (kind, seed): the seeded file, or for seed 0 the single-seed zoo's
    file when only that exists. A missing model gets the seeded path."""
    directory = ZOO_DIRECTORY if directory is None else Path(directory)
    path = directory / zoo_file_name(kind, seed)
    if not path.exists() and seed == 0 and _legacy_path(kind, directory).exists():
        return _legacy_path(kind, directory)
    return path


def parse_zoo_name(name: str) -> tuple[str, int]:
    """(kind, seed) of a zoo name: ``small_cnn-lift-s1``, ``lift-s1``, ``small_cnn-lift`` or
    ``lift`` (seed 0); old kind names (``haar``, ``lift53``) mean their summed kinds."""
    prefix = f"{ZOO_ARCHITECTURE}-"
    match = _NAME.match(name[len(prefix) :] if name.startswith(prefix) else name)
    kind = match["kind"] if match else name
    if kind in DEPRECATED_KINDS:
        kind = DEPRECATED_KINDS[kind].by_combine["sum"]
    if not match or kind not in ZOO_KINDS:
        known = ", ".join(zoo_model_name(k, 0) for k in ZOO_KINDS)
        raise UserError(f"unknown zoo model {name!r}; known: {known} (and -s1, -s2, ... for other seeds)")
    return kind, int(match["seed"] or 0)


def zoo_entries(directory: Path | None = None) -> list[ZooEntry]:
    """Every zoo model whose weights are present, by kind (ZOO_KINDS order), then seed."""
    directory = ZOO_DIRECTORY if directory is None else Path(directory)
    entries = []
    for kind in ZOO_KINDS:
        seeds = set()
        pattern = re.compile(re.escape(f"{ZOO_DATASET}-{ZOO_ARCHITECTURE}-{kind}-s") + r"(\d+)\.safetensors$")
        for path in directory.glob(f"{ZOO_DATASET}-{ZOO_ARCHITECTURE}-{kind}-s*.safetensors"):
            match = pattern.match(path.name)
            if match:
                seeds.add(int(match[1]))
        if _legacy_path(kind, directory).exists():
            seeds.add(0)
        entries += [ZooEntry(kind, seed, zoo_checkpoint_path(kind, seed, directory)) for seed in sorted(seeds)]
    return entries


def zoo_names() -> list[str]:
    """Names of the zoo models whose weights are present, e.g. ``small_cnn-lift-s0``."""
    return [entry.name for entry in zoo_entries()]


def zoo_table() -> list[dict[str, Any]]:
    """One row per (kind, seed) of the zoo, present or missing, for ``list zoo``."""
    present = {(entry.kind, entry.seed): entry for entry in zoo_entries()}
    keys = sorted(
        set(present) | {(kind, seed) for kind in ZOO_KINDS for seed in ZOO_SEEDS},
        key=lambda key: (ZOO_KINDS.index(key[0]), key[1]),
    )
    rows = []
    for kind, seed in keys:
        entry = present.get((kind, seed))
        accuracy = read_safetensors_metadata(entry.path).get("clean_test_accuracy") if entry else None
        rows.append(
            {
                "model": zoo_model_name(kind, seed),
                "pooling": kind,
                "seed": seed,
                "clean_test_accuracy": accuracy if accuracy is not None else "-",
                "weights": entry.path.name if entry else "missing",
            }
        )
    return rows


def _present_path(name: str) -> tuple[str, int, Path]:
    kind, seed = parse_zoo_name(name)
    path = zoo_checkpoint_path(kind, seed)
    if not path.exists():
        raise UserError(f"zoo weights {path} are missing; run scripts/train_zoo.py --kinds {kind} --seeds {seed}")
    return kind, seed, path


def load_zoo_model(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """Loads a zoo model (``small_cnn-max-s1``, ``small_cnn-max``, ``max``) in eval mode with
    its metadata; a single-seed zoo file's old kind name is reported as today's kind."""
    kind, seed, path = _present_path(name)
    from robustbench_lift.models.checkpoints import load_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the single-seed zoo's kind names
        model, metadata = load_checkpoint(path, expect={"architecture": ZOO_ARCHITECTURE, "dataset": ZOO_DATASET})
        recorded, options = recorded_options(str(metadata.get("pooling")), metadata.get("pooling_options"))
    if recorded != kind:
        raise UserError(f"zoo weights {path} hold a {metadata.get('pooling')!r} model, not {kind!r}")
    if int(metadata.get("seed", 0)) != seed:
        raise UserError(f"zoo weights {path} were trained with seed {metadata.get('seed')}, not {seed}")
    # Every option spelled out in today's terms, so that seeds recorded by different versions
    # (seed 0 before ``share`` existed) read as the same recipe.
    return model, metadata | {"pooling": kind, "pooling_options": resolve_options(kind, options), "seed": seed}


def zoo_metadata(name: str) -> dict[str, Any]:
    """The metadata record of a zoo model, read from the file's header (no torch, no weights)."""
    kind, seed, path = _present_path(name)
    return read_safetensors_metadata(path) | {"pooling": kind, "seed": seed}
