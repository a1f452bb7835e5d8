"""The segmentation zoo: ``segnet_small`` encoder-decoders on garment scenes that differ only
in their down/up pooling pair, several training seeds per kind.

Models are named ``segnet_small-<kind>-s<seed>`` (``segnet_small-lift-s0``;
``segnet_small-<kind>`` means seed 0). Their weights are written by
``scripts/train_segmentation_zoo.py`` into :data:`SEGMENTATION_ZOO_DIRECTORY`
(``robustbench_lift/zoo_weights/segmentation/``, package data) as
``garment_scenes-segnet_small-<kind>-seed<seed>.safetensors`` (:func:`segmentation_zoo_file_name`,
the one place that name is made); each file carries its metadata (recipe, scene
generator, curves, clean test mIoU). Listing needs no torch; loading does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_lift.errors import UserError
from robustbench_lift.models._format import read_safetensors_metadata

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "SEGMENTATION_ZOO_ARCHITECTURE",
    "SEGMENTATION_ZOO_DATASET",
    "SEGMENTATION_ZOO_DIRECTORY",
    "SEGMENTATION_ZOO_KINDS",
    "SEGMENTATION_ZOO_SEEDS",
    "SEGMENTATION_TRAINING_COMMAND",
    "SegmentationZooEntry",
    "is_segmentation_zoo_name",
    "load_segmentation_zoo_model",
    "parse_segmentation_zoo_name",
    "segmentation_zoo_entries",
    "segmentation_zoo_file_name",
    "segmentation_zoo_model_name",
    "segmentation_zoo_names",
]

SEGMENTATION_ZOO_DIRECTORY = Path(__file__).resolve().parent.parent / "zoo_weights" / "segmentation"
SEGMENTATION_ZOO_KINDS = ("max", "avg", "skip", "blur", "lift", "haar")
SEGMENTATION_ZOO_SEEDS = (0, 1, 2)
SEGMENTATION_ZOO_ARCHITECTURE = "segnet_small"
SEGMENTATION_ZOO_DATASET = "garment_scenes"
SEGMENTATION_TRAINING_COMMAND = "python scripts/train_segmentation_zoo.py"
_NAME = re.compile(rf"^{SEGMENTATION_ZOO_ARCHITECTURE}-(?P<kind>[a-z0-9_]+?)(?:-s(?P<seed>\d+))?$")
_FILE = re.compile(
    rf"^{SEGMENTATION_ZOO_DATASET}-{SEGMENTATION_ZOO_ARCHITECTURE}-(?P<kind>[a-z0-9_]+)-seed(?P<seed>\d+)\.safetensors$"
)


@dataclass(frozen=True)
class SegmentationZooEntry:
    """One segmentation zoo model present on disk."""

    kind: str
    seed: int
    path: Path

    @property
    def name(self) -> str:
        return segmentation_zoo_model_name(self.kind, self.seed)


def segmentation_zoo_model_name(kind: str, seed: int = 0) -> str:
    """``segnet_small-<kind>-s<seed>``."""
    return f"{SEGMENTATION_ZOO_ARCHITECTURE}-{kind}-s{seed}"


def segmentation_zoo_file_name(kind: str, seed: int, architecture: str = SEGMENTATION_ZOO_ARCHITECTURE) -> str:
    """The weights file the training script writes for (kind, seed) and the zoo reads."""
    return f"{SEGMENTATION_ZOO_DATASET}-{architecture}-{kind}-seed{seed}.safetensors"


def is_segmentation_zoo_name(name: str) -> bool:
    """Whether ``name`` has the form of a segmentation zoo name (``segnet_small-...``)."""
    return _NAME.match(name) is not None


def parse_segmentation_zoo_name(name: str) -> tuple[str, int]:
    """(kind, seed) of ``segnet_small-<kind>[-s<seed>]``; a one-line UserError otherwise."""
    match = _NAME.match(name)
    if match is None or match["kind"] not in SEGMENTATION_ZOO_KINDS:
        known = ", ".join(segmentation_zoo_model_name(kind) for kind in SEGMENTATION_ZOO_KINDS)
        raise UserError(f"unknown segmentation zoo model {name!r}; known: {known} (and -s1, -s2 for other seeds)")
    return match["kind"], int(match["seed"] or 0)


def segmentation_zoo_entries(directory: Path | None = None) -> list[SegmentationZooEntry]:
    """Every zoo model whose weights are present, by kind (zoo order), then seed."""
    directory = SEGMENTATION_ZOO_DIRECTORY if directory is None else Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _FILE.match(path.name)
        if match and match["kind"] in SEGMENTATION_ZOO_KINDS:
            found.append(SegmentationZooEntry(match["kind"], int(match["seed"]), path))
    return sorted(found, key=lambda entry: (SEGMENTATION_ZOO_KINDS.index(entry.kind), entry.seed))


def segmentation_zoo_names(directory: Path | None = None) -> list[str]:
    """Names of the segmentation zoo models whose weights are present."""
    return [entry.name for entry in segmentation_zoo_entries(directory)]


def segmentation_zoo_table(directory: Path | None = None) -> list[dict[str, Any]]:
    """One row per (kind, seed), present or missing, with its recorded clean test mIoU."""
    present = {(entry.kind, entry.seed): entry for entry in segmentation_zoo_entries(directory)}
    rows = []
    for kind in SEGMENTATION_ZOO_KINDS:
        for seed in sorted({*SEGMENTATION_ZOO_SEEDS, *(s for k, s in present if k == kind)}):
            entry = present.get((kind, seed))
            miou = read_safetensors_metadata(entry.path).get("clean_test_miou") if entry else None
            rows.append(
                {
                    "model": segmentation_zoo_model_name(kind, seed),
                    "pooling": kind,
                    "seed": seed,
                    "clean_test_miou": miou if miou is not None else "-",
                    "weights": entry.path.name if entry else "missing",
                }
            )
    return rows


def load_segmentation_zoo_model(name: str, directory: Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Loads ``segnet_small-<kind>[-s<seed>]`` in eval mode with its metadata.

    Raises:
        UserError: the name is unknown, or its weights are missing (naming the training command).
    """
    kind, seed = parse_segmentation_zoo_name(name)
    directory = SEGMENTATION_ZOO_DIRECTORY if directory is None else Path(directory)
    path = directory / segmentation_zoo_file_name(kind, seed)
    if not path.is_file():
        raise UserError(
            f"segmentation zoo weights {path} are missing; train them with: "
            f"{SEGMENTATION_TRAINING_COMMAND} --kinds {kind} --seeds {seed}"
        )
    from robustbench_lift.models.segmentation import load_segmenter

    model, metadata = load_segmenter(path, expect={"pooling": kind, "architecture": SEGMENTATION_ZOO_ARCHITECTURE})
    if int(metadata.get("seed", -1)) != seed:
        raise UserError(f"segmentation zoo weights {path} were trained with seed {metadata.get('seed')}, not {seed}")
    return model, metadata
