"""Writes a corruption data set in a published layout (``cifar-c``, ``imagenet-c``,
``tiny-imagenet-c``), with a ``manifest.json`` that :mod:`robustbench_lift.data.published`
reads back.

Writing is resumable. A unit is one (corruption, severity) for image folders and one
corruption (all five severities, as the published file holds them) for ``cifar-c``. Every
file or folder is first written under a name containing ``.partial`` and renamed into place
when complete (``os.replace`` is atomic on one file system), so a unit's final name exists
only once it is whole. A re-run skips existing units and deletes ``.partial`` leftovers of a
killed run. For ``cifar-c`` each severity is first saved as ``.parts/<corruption>/<severity>.npy``
(itself renamed into place), so a killed run also keeps its finished severities; once all
five exist they are assembled into ``<corruption>.npy`` (renamed into place) and the parts
deleted. Renames protect against a killed process; only ``.npy`` files and the manifest are
fsynced, so after a power cut an image folder may need deleting by hand.

Generation is split into chunks of images (one corruption, its pending severities, a
range of images) handed to a *mapper*: this process by default, or an executor that
spreads them over machines (``robustbench-lift corrupt --executor ray``), which then gets
one severity per chunk. Every image is corrupted by the same call either way and units
are committed here, so the files are byte-identical whoever computed them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from robustbench_lift._version import __version__
from robustbench_lift.data.base import ImageDataset
from robustbench_lift.data.published import (
    LABELS_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PARTS_FOLDER,
    SEVERITY_COUNT,
    PathLike,
    read_manifest,
    visible_entries,
)
from robustbench_lift.errors import UserError, corruption_input
from robustbench_lift.registry import Registry
from robustbench_lift.utils.digest import array_digest
from robustbench_lift.utils.io import (
    PARTIAL,
    atomic_save_npy,
    atomic_write_text,
    exclusive_lock,
    fsync_file,
    partial_name,
)
from robustbench_lift.utils.seeds import check_seed

__all__ = [
    "IMAGE_FORMATS",
    "ChunkMapper",
    "ImageFormat",
    "class_folder_names",
    "writable_layouts",
    "write_corruption_set",
]

LOCK_NAME = ".write.lock"
# Manifest entries that must agree before a run may add units to an existing set.
_COMPARABLE_KEYS = (
    "layout",
    "dataset",
    "profile",
    "seed",
    "count",
    "image_shape",
    "source_sha256",
    "image_format",
    "corruption_engine",
    "engine_device",
)
# What a manifest written before the engine was recorded means.
_MANIFEST_DEFAULTS = {"corruption_engine": "numpy"}
# Input images per corrupt_many call: bounds memory (every pending severity gets an output
# array) while keeping the work per process pool large enough to amortise its start-up.
_CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ImageFormat:
    """How the image-folder writer stores one image."""

    suffix: str
    options: dict[str, Any]


IMAGE_FORMATS: Registry[ImageFormat] = Registry("image format")
# Quality 85, as the published ImageNet-C; PNG when exact pixels matter.
IMAGE_FORMATS.add("jpeg", ImageFormat(".JPEG", {"format": "JPEG", "quality": 85}))
IMAGE_FORMATS.add("png", ImageFormat(".png", {"format": "PNG"}))


class ChunkMapper(Protocol):
    """Where chunks are corrupted (an executor of :mod:`robustbench_lift.run.executors`)."""

    #: True when chunks run in other processes or machines (then one severity per chunk).
    distributed: ClassVar[bool]

    def map_unordered(
        self, function: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any], item_bytes: int = 0
    ) -> Iterator[tuple[Any, Any]]:
        """``(item, function(shared, item))`` for every item, in any order."""
        ...


class _InProcess:
    """The default mapper: chunks one after the other, here."""

    distributed: ClassVar[bool] = False

    def map_unordered(
        self, function: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any], item_bytes: int = 0
    ) -> Iterator[tuple[Any, Any]]:
        for item in items:
            yield item, function(shared, item)


@dataclass(frozen=True)
class _Source:
    """What every chunk reads: the clean images and how to corrupt them."""

    images: np.ndarray
    indices: np.ndarray
    profile: str
    seed: int
    engine: str
    device: str
    workers: int


@dataclass(frozen=True)
class _Chunk:
    """Images ``start:stop`` of one corruption at some severities."""

    corruption: str
    severities: tuple[int, ...]
    start: int
    stop: int

    def __str__(self) -> str:
        return f"{self.corruption}/{','.join(map(str, self.severities))} images {self.start}..{self.stop - 1}"


def _corrupt_chunk(source: _Source, chunk: _Chunk) -> dict[int, np.ndarray]:
    """One chunk's corrupted images per severity (host arrays, ``N x H x W x 3``)."""
    from corruptions.engines import generate, to_nhwc_array

    results = generate(
        source.engine,
        source.images[chunk.start : chunk.stop],
        [(chunk.corruption, severity) for severity in chunk.severities],
        profile=source.profile,
        seed=source.seed,
        indices=source.indices[chunk.start : chunk.stop],
        workers=source.workers,
        device=source.device,
    )
    return {severity: to_nhwc_array(results[(chunk.corruption, severity)]) for severity in chunk.severities}


class _Sink:
    """Receives one (corruption, severity) unit chunk by chunk, then renames it into place."""

    def write(self, start: int, images: np.ndarray) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError


@dataclass
class _WriteJob:
    """Everything a writer needs about one run."""

    root: Path
    dataset: ImageDataset
    indices: np.ndarray
    image_format: str
    workers: int
    class_folders: list[str]


class _SetWriter:
    """Writes the units of one layout; subclasses say where units live and how they are stored."""

    file_order: str | None = None

    def check(self, dataset: ImageDataset, severities: list[int]) -> None:
        """Refuses requests the layout cannot represent."""

    def prepare(self, job: _WriteJob) -> None:
        """Writes what every unit shares (labels)."""

    def pending(self, job: _WriteJob, corruption: str, severities: list[int]) -> list[int]:
        raise NotImplementedError

    def sink(self, job: _WriteJob, corruption: str, severity: int) -> _Sink:
        raise NotImplementedError

    def finish(self, job: _WriteJob, corruption: str) -> None:
        """Called once every requested severity of ``corruption`` is committed."""


class _NumpyPartSink(_Sink):
    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.array = np.lib.format.open_memmap(partial_name(path), mode="w+", dtype=np.uint8, shape=shape)

    def write(self, start: int, images: np.ndarray) -> None:
        self.array[start : start + len(images)] = images

    def commit(self) -> None:
        self.array.flush()
        del self.array
        fsync_file(partial_name(self.path))
        os.replace(partial_name(self.path), self.path)


class _NumpyStackWriter(_SetWriter):
    """cifar-c: per-severity parts under ``.parts/``, assembled into ``<corruption>.npy``."""

    def check(self, dataset: ImageDataset, severities: list[int]) -> None:
        if sorted(severities) != list(range(1, SEVERITY_COUNT + 1)):
            raise UserError(
                f"the cifar-c layout stores severities 1..5 in one file per corruption; ask for all five "
                f"(got {', '.join(map(str, severities))}) or use the imagenet-c layout"
            )

    def prepare(self, job: _WriteJob) -> None:
        # Published labels.npy repeats the labels once per severity block.
        labels = np.tile(job.dataset.labels.astype(np.int64), SEVERITY_COUNT)
        path = job.root / LABELS_NAME
        if path.is_file():
            try:
                if np.array_equal(np.load(path), labels):
                    return  # unchanged: keep the file (and its mtime)
            except (OSError, ValueError):
                pass
        atomic_save_npy(path, labels)

    def _part(self, job: _WriteJob, corruption: str, severity: int) -> Path:
        return job.root / PARTS_FOLDER / corruption / f"{severity}.npy"

    def pending(self, job: _WriteJob, corruption: str, severities: list[int]) -> list[int]:
        if (job.root / f"{corruption}.npy").is_file():
            shutil.rmtree(job.root / PARTS_FOLDER / corruption, ignore_errors=True)  # a run killed after assembling
            return []
        return [severity for severity in severities if not self._part(job, corruption, severity).is_file()]

    def sink(self, job: _WriteJob, corruption: str, severity: int) -> _Sink:
        return _NumpyPartSink(self._part(job, corruption, severity), job.dataset.images.shape)

    def finish(self, job: _WriteJob, corruption: str) -> None:
        final = job.root / f"{corruption}.npy"
        if final.is_file():
            return
        count = len(job.dataset)
        shape = (count * SEVERITY_COUNT,) + job.dataset.images.shape[1:]
        stacked = np.lib.format.open_memmap(partial_name(final), mode="w+", dtype=np.uint8, shape=shape)
        for severity in range(1, SEVERITY_COUNT + 1):
            stacked[(severity - 1) * count : severity * count] = np.load(
                self._part(job, corruption, severity), mmap_mode="r"
            )
        stacked.flush()
        del stacked
        fsync_file(partial_name(final))
        os.replace(partial_name(final), final)
        shutil.rmtree(job.root / PARTS_FOLDER / corruption)
        if not any((job.root / PARTS_FOLDER).iterdir()):
            (job.root / PARTS_FOLDER).rmdir()


class _ImageFolderSink(_Sink):
    def __init__(self, job: _WriteJob, folder: Path) -> None:
        self.job = job
        self.folder = folder
        self.temporary = folder.with_name(f".{folder.name}{PARTIAL}")
        shutil.rmtree(self.temporary, ignore_errors=True)
        self.format = IMAGE_FORMATS.get(job.image_format)
        self.width = len(str(int(job.indices.max()))) if len(job.indices) else 1
        for label in np.unique(job.dataset.labels):
            (self.temporary / job.class_folders[label]).mkdir(parents=True)

    def _save(self, position: int, image: np.ndarray) -> None:
        from PIL import Image

        label = int(self.job.dataset.labels[position])
        name = f"{int(self.job.indices[position]):0{self.width}d}{self.format.suffix}"
        Image.fromarray(image).save(self.temporary / self.job.class_folders[label] / name, **self.format.options)

    def write(self, start: int, images: np.ndarray) -> None:
        # Threads: Pillow releases the GIL while encoding.
        with ThreadPoolExecutor(max_workers=max(1, self.job.workers)) as pool:
            list(pool.map(self._save, range(start, start + len(images)), images))

    def commit(self) -> None:
        os.replace(self.temporary, self.folder)


class _ImageFolderWriter(_SetWriter):
    """imagenet-c / tiny-imagenet-c: ``<corruption>/<severity>/<class folder>/<index><suffix>``."""

    file_order = "index"

    def pending(self, job: _WriteJob, corruption: str, severities: list[int]) -> list[int]:
        return [severity for severity in severities if not (job.root / corruption / str(severity)).is_dir()]

    def sink(self, job: _WriteJob, corruption: str, severity: int) -> _Sink:
        (job.root / corruption).mkdir(parents=True, exist_ok=True)
        return _ImageFolderSink(job, job.root / corruption / str(severity))


_WRITERS: Registry[_SetWriter] = Registry("writable layout")
_WRITERS.add("cifar-c", _NumpyStackWriter())
_WRITERS.add("imagenet-c", _ImageFolderWriter())
_WRITERS.add("tiny-imagenet-c", _ImageFolderWriter())


def writable_layouts() -> list[str]:
    """Layouts :func:`write_corruption_set` can write (for command-line choices)."""
    return _WRITERS.names()


def _safe_folder_name(name: str) -> str:
    return (
        "".join(character if character.isalnum() or character in "-_." else "_" for character in name).strip(".")
        or "class"
    )


def class_folder_names(classes: Sequence[str]) -> list[str]:
    """Folder name per class index: the names themselves when they are file-system safe,
    unique and already sorted (wnids, CIFAR-10), so ImageFolder order is class order;
    otherwise ``<index>-<name>`` with zero-padded indices, which sort the same way."""
    safe = [_safe_folder_name(name) for name in classes]
    if safe == list(classes) and safe == sorted(safe) and len(set(safe)) == len(safe):
        return safe
    width = len(str(max(len(classes) - 1, 0)))
    return [f"{index:0{width}d}-{name}" for index, name in enumerate(safe)]


def _source_digest(dataset: ImageDataset, indices: np.ndarray) -> str:
    """A fingerprint of the clean images, labels and indices, so a resumed run cannot mix sources."""
    return array_digest(dataset.images, dataset.labels.astype(np.int64), indices.astype(np.int64), with_dtype=False)


def _remove_leftovers(root: Path) -> None:
    """Deletes ``.partial`` files and folders of a killed run (where our writers put them)."""
    folders = [root] + [root / name for name in visible_entries(root, directories=True)]
    if (root / PARTS_FOLDER).is_dir():
        folders += [root / PARTS_FOLDER / name for name in visible_entries(root / PARTS_FOLDER, directories=True)]
    for folder in folders:
        for entry in os.scandir(folder):
            if PARTIAL in entry.name:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.remove(entry.path)


def _merge_manifest(root: Path, fresh: dict) -> dict:
    """The manifest to store: ``fresh``, extended by an existing comparable one; refuses a mismatch."""
    existing = read_manifest(root)
    if existing is None:
        return fresh
    for key in _COMPARABLE_KEYS:
        if existing.get(key, _MANIFEST_DEFAULTS.get(key)) != fresh.get(key):
            shown = (lambda value: f"{str(value)[:12]}...") if key == "source_sha256" else repr
            raise UserError(
                f"{root} already holds a set with {key} {shown(existing.get(key))}, this run has {shown(fresh.get(key))}; "
                "use another folder or delete it"
            )
    merged = dict(fresh)
    merged["corruptions"] = list(dict.fromkeys(existing.get("corruptions", []) + fresh["corruptions"]))
    merged["severities"] = sorted(set(existing.get("severities", [])) | set(fresh["severities"]))
    return merged


def write_corruption_set(
    dataset: ImageDataset,
    root: PathLike,
    layout: str,
    corruptions: Sequence[str],
    severities: Sequence[int],
    *,
    profile: str = "cifar",
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    image_format: str = "jpeg",
    indices: np.ndarray | None = None,
    engine: str = "numpy",
    device: str = "cpu",
    mapper: ChunkMapper | None = None,
) -> Path:
    """Corrupts ``dataset`` and stores it in a published layout (``cifar-c``, ``imagenet-c``,
    ``tiny-imagenet-c``), with ``manifest.json``; returns ``root``.

    Deterministic: image i is corrupted by ``engine`` (:mod:`corruptions.engines`) with
    index ``indices[i]`` (default: its position in ``dataset``; pass the original positions
    of a sampled subset so it matches the full set), so every machine writes the same
    pixels (for the torch engine: every machine of the same device type). Resumable:
    finished units are skipped (see the module docstring). ``image_format`` (``jpeg``
    quality 85, or lossless ``png``) applies to the image-folder layouts.

    Args:
        engine: ``numpy`` (the reference) or ``torch``; the manifest records it (and the
            torch engine's device type), and a set is only resumed with the same.
        device: where the torch engine computes (a resolved torch device: ``cpu``, ``cuda``, ``cuda:N``).
        mapper: where chunks are corrupted (default: this process; see :class:`ChunkMapper`).
    """
    from corruptions.engine import PROFILE_REGISTRY
    from corruptions.engines import ENGINES
    from corruptions.registry import check_severity, corruption_id

    writer = _WRITERS.get(layout)
    IMAGE_FORMATS.get(image_format)
    with corruption_input():
        engine_entry = ENGINES.get(engine)
    if mapper is not None and mapper.distributed and engine_entry.device_dependent and device != "cpu":
        raise UserError(f"a distributed executor generates on its workers' CPUs; use device cpu, not {device!r}")
    corruptions = list(dict.fromkeys(corruptions))
    if not corruptions or not severities:
        raise UserError("write_corruption_set needs at least one corruption and one severity")
    with corruption_input():
        PROFILE_REGISTRY.get(profile)
        for corruption in corruptions:
            corruption_id(corruption)  # unknown names: one line listing the known ones
        severities = sorted({check_severity(corruptions[0], severity) for severity in severities})
    seed = check_seed(seed)
    if len(dataset) == 0:
        raise UserError(f"data set {dataset.name!r} is empty; nothing to corrupt")
    if dataset.classes and (dataset.labels.min() < 0 or dataset.labels.max() >= len(dataset.classes)):
        raise UserError(f"data set {dataset.name!r} has labels outside 0..{len(dataset.classes) - 1}")
    writer.check(dataset, severities)
    indices = np.arange(len(dataset), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    if indices.shape != (len(dataset),) or (indices < 0).any() or len(np.unique(indices)) != len(indices):
        raise UserError(f"indices must be {len(dataset)} distinct non-negative integers, one per image")

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    class_folders = (
        class_folder_names(dataset.classes)
        if dataset.classes
        else [str(label) for label in range(int(dataset.labels.max()) + 1)]
    )
    job = _WriteJob(root, dataset, indices, image_format, workers, class_folders)
    fresh = {
        "format": MANIFEST_FORMAT,
        "layout": layout,
        "dataset": dataset.name,
        "profile": profile,
        "seed": int(seed),
        "count": len(dataset),
        "image_shape": list(dataset.images.shape[1:]),
        "source_sha256": _source_digest(dataset, indices),
        "image_format": image_format if isinstance(writer, _ImageFolderWriter) else "npy",
        "corruption_engine": engine,
        "corruptions": corruptions,
        "severities": severities,
        "classes": list(dataset.classes),
        "package_version": __version__,
    }
    if engine_entry.device_dependent:
        fresh["engine_device"] = device.split(":")[0]
    if writer.file_order:
        fresh["file_order"] = writer.file_order
        fresh["class_folders"] = class_folders
    if not np.array_equal(indices, np.arange(len(dataset))):
        fresh["indices"] = indices.tolist()

    from tqdm import tqdm

    # An exclusive lock on the folder: two writers never interleave their units.
    with exclusive_lock(root / LOCK_NAME, f"another process is writing a corruption set into {root}"):
        _remove_leftovers(root)
        manifest = _merge_manifest(root, fresh)
        if manifest != read_manifest(root):  # unchanged: keep the file (and its mtime)
            atomic_write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
        writer.prepare(job)
        plan = [(corruption, writer.pending(job, corruption, severities)) for corruption in corruptions]
        mapper = mapper or _InProcess()
        source = _Source(
            dataset.images, indices, profile, int(seed), engine, device, 1 if mapper.distributed else workers
        )
        with tqdm(
            total=sum(len(pending) for _, pending in plan) * len(dataset),
            desc=f"writing {layout}",
            unit="image",
            file=sys.stderr,
            disable=not progress,
        ) as bar:
            _write_units(writer, job, plan, source, mapper, bar)
    return root


def _write_units(
    writer: _SetWriter,
    job: _WriteJob,
    plan: list[tuple[str, list[int]]],
    source: _Source,
    mapper: ChunkMapper,
    bar: Any,
) -> None:
    """Corrupts the pending units chunk by chunk through ``mapper``; commits each unit when
    its last chunk is written and finishes each corruption when its last unit is."""
    image_bytes = int(np.prod(job.dataset.images.shape[1:]))
    size = max(1, _CHUNK_BYTES // max(1, image_bytes))
    ranges = [(start, min(start + size, len(job.dataset))) for start in range(0, len(job.dataset), size)]
    # Split per severity for a distributed mapper (more, smaller tasks); kept together here,
    # so one process pool serves all of a corruption's severities.
    groups = [[(severity,) for severity in pending] if mapper.distributed else [tuple(pending)] for _, pending in plan]
    chunks = [
        _Chunk(corruption, severities, start, stop)
        for (corruption, pending), severity_groups in zip(plan, groups)
        if pending
        for severities in severity_groups
        for start, stop in ranges
    ]
    left = {(corruption, severity): len(ranges) for corruption, pending in plan for severity in pending}
    units_left = {corruption: len(pending) for corruption, pending in plan}
    for corruption, pending in plan:
        if not pending:
            writer.finish(job, corruption)  # e.g. cifar-c parts of a killed run still to assemble
    sinks: dict[tuple[str, int], _Sink] = {}
    item_bytes = size * image_bytes * max((len(chunk.severities) for chunk in chunks), default=1)
    for chunk, results in mapper.map_unordered(_corrupt_chunk, source, chunks, item_bytes):
        for severity, images in results.items():
            unit = (chunk.corruption, severity)
            if unit not in sinks:
                sinks[unit] = writer.sink(job, *unit)
            sinks[unit].write(chunk.start, images)
            left[unit] -= 1
            if left[unit] == 0:
                sinks.pop(unit).commit()
                units_left[chunk.corruption] -= 1
                if units_left[chunk.corruption] == 0:
                    writer.finish(job, chunk.corruption)
        bar.update((chunk.stop - chunk.start) * len(results))
