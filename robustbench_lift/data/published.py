"""Pre-made robustness data sets in their published layouts: readers, and a writer for our own.

Layouts (SPEC sections 3 and 4; facts from the reference code in hendrycks/robustness):

================  ==========================================================================
layout            files
================  ==========================================================================
cifar-c           ``<root>/<corruption>.npy``: uint8 5N x H x W x 3, severities 1..5 stacked
                  in blocks of N (CIFAR-10-C and CIFAR-100-C: N = 10000, 32 px), plus
                  ``<root>/labels.npy`` holding the N labels tiled five times (or just N).
imagenet-c        ``<root>/<corruption>/<severity>/<wnid>/*.JPEG``, 224 px; labels are the
                  positions of the sorted wnids (torchvision ImageFolder order).
tiny-imagenet-c   the same folders, 64 px.
cifar-p           ``<root>/<perturbation>.npy``: uint8 N x frames x H x W x 3; the noise
                  perturbations' harder strengths are ``<perturbation>_2.npy``, ``_3.npy``.
imagenet-p        ``<root>/<perturbation>/<wnid>/*.mp4``, one video (sequence) per image;
                  noise difficulties 2, 3 in ``<root>/<perturbation>_<difficulty>/``.
================  ==========================================================================

Every image layout is ordered like ImageFolder (sorted class, then sorted file name), so
for ImageNet-C the i-th image of every condition is the i-th clean validation image and
flips against clean predictions are paired. Sets we write ourselves (:func:`write_corruption_set`)
carry a ``manifest.json``; the reader then orders images by the data-set index in their
file names and takes class indices from the manifest.

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
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from robustbench_lift import __version__
from robustbench_lift.data.datasets import IMAGE_SUFFIXES, ImageDataset
from robustbench_lift.errors import UserError
from robustbench_lift.registry import Registry

Condition = Tuple[str, int]
PathLike = str | os.PathLike

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.npy"
PARTS_FOLDER = ".parts"
LOCK_NAME = ".write.lock"
PARTIAL = ".partial"
VIDEO_SUFFIXES = (".mp4",)
SEVERITY_COUNT = 5
MANIFEST_FORMAT = "robustbench-lift corruption set"
# Manifest entries that must agree before a run may add units to an existing set.
_COMPARABLE_KEYS = ("layout", "dataset", "profile", "seed", "count", "image_shape", "source_sha256", "image_format")
# Input images per corrupt_many call: bounds memory (every pending severity gets an output
# array) while keeping the work per process pool large enough to amortise its start-up.
_CHUNK_BYTES = 256 * 2**20


# ---------------------------------------------------------------- small helpers


def _visible_entries(folder: Path, directories: bool) -> List[str]:
    """Sorted names of sub-folders (or files) that are not hidden and not temporary."""
    names = []
    for entry in os.scandir(folder):
        if entry.name.startswith(".") or PARTIAL in entry.name:
            continue
        if entry.is_dir() == directories:
            names.append(entry.name)
    return sorted(names)


def _check_indices(indices: Optional[np.ndarray], count: int, what: str) -> np.ndarray:
    if indices is None:
        return np.arange(count, dtype=np.int64)
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise UserError(f"indices must be a 1-D array of integers, got shape {indices.shape} and dtype {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= count):
        raise UserError(f"indices must lie in 0..{count - 1} ({what} holds {count} per condition), got {indices.min()}..{indices.max()}")
    return indices.astype(np.int64)


def _check_conditions(conditions: Sequence[Tuple[str, int]]) -> List[Condition]:
    checked = []
    for condition in conditions:
        try:
            corruption, severity = condition
        except (TypeError, ValueError):
            raise UserError(f"a condition must be a (corruption, severity) pair, got {condition!r}") from None
        if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= SEVERITY_COUNT:
            raise UserError(f"severity for corruption {corruption!r} must be an integer in 1..5, got {severity!r}")
        checked.append((str(corruption), int(severity)))
    return list(dict.fromkeys(checked))


def read_manifest(root: PathLike) -> Optional[dict]:
    """The ``manifest.json`` of a set we wrote, or None for a published set (which has none)."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not readable JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    return manifest


def check_manifest(root: PathLike, *, profile: Optional[str] = None, seed: Optional[int] = None) -> None:
    """Refuses (one line) a set whose manifest says it was made with another profile or seed."""
    manifest = read_manifest(root)
    if manifest is None:
        return
    for key, wanted in (("profile", profile), ("seed", seed)):
        if wanted is not None and manifest.get(key) != wanted:
            raise UserError(
                f"{root} was made with {key} {manifest.get(key)!r} but this run asks for {key} {wanted!r}; "
                "its results would not be comparable"
            )


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _partial_name(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = _partial_name(path)
    temporary.write_text(text)
    _fsync_file(temporary)
    os.replace(temporary, path)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    temporary = _partial_name(path)
    with open(temporary, "wb") as handle:  # a handle, because np.save(path) would append ".npy"
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


# ---------------------------------------------------------------- video decoding


def _resize_and_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size``, then the central ``size`` x ``size`` (the ImageNet crop)."""
    import cv2

    height, width = frame.shape[:2]
    if (height, width) == (size, size):
        return frame
    scale = size / min(height, width)
    new_height, new_width = max(size, round(height * scale)), max(size, round(width * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (new_width, new_height), interpolation=interpolation)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return resized[top : top + size, left : left + size]


def read_video_frames(path: Path, size: Optional[int] = None) -> np.ndarray:
    """All frames of a video as uint8 frames x H x W x 3 RGB, optionally brought to ``size`` px.

    OpenCV decodes (as the reference ``video_loader.py`` does); torchvision 0.29 no longer
    has ``torchvision.io.read_video``, and OpenCV's wheels bundle FFmpeg, so no new dependency.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            frames.append(_resize_and_crop(frame, size) if size else frame)
    finally:
        capture.release()
    if not frames:
        raise UserError(f"cannot decode video {path} (no frames)")
    return np.stack(frames)


# ---------------------------------------------------------------- layouts


@dataclass(frozen=True)
class PublishedLayout:
    """One published layout: how to recognise it and what it should contain."""

    name: str
    title: str
    expected: str

    kind: ClassVar[str] = "corruption"

    def looks_like(self, root: Path) -> bool:
        """A cheap structural probe for :func:`detect_layout`; never raises."""
        raise NotImplementedError

    def problem(self, root: Path, what: str) -> UserError:
        return UserError(f"{root} is not a{'n' if self.title[0] in 'AEIOU' else ''} {self.title} folder: {what}")


@dataclass(frozen=True)
class CorruptionLayout(PublishedLayout):
    """A layout of corrupted images, one block of images per (corruption, severity)."""

    def load(self, root: Path, conditions: List[Condition], indices: Optional[np.ndarray]) -> Tuple[Dict[Condition, np.ndarray], np.ndarray]:
        raise NotImplementedError


@dataclass(frozen=True)
class PerturbationLayout(PublishedLayout):
    """A layout of perturbation sequences (frames of one image), one set per perturbation."""

    profile: str = "cifar"
    kind: ClassVar[str] = "perturbation"

    def load(self, root: Path, perturbations: List[str], difficulty: int, indices: Optional[np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def source_name(self, perturbation: str, difficulty: int) -> str:
        # The harder noise strengths are separate data sets; gradual perturbations have one
        # video per image at every difficulty (only the metric's stride changes).
        from corruptions.perturbations import NOISE_PERTURBATIONS

        if perturbation in NOISE_PERTURBATIONS and difficulty > 1:
            return f"{perturbation}_{difficulty}"
        return perturbation


def _known_npy_arrays(root: Path, names: Sequence[str]) -> Iterator[np.ndarray]:
    for name in names:
        path = root / f"{name}.npy"
        if path.is_file():
            try:
                yield np.load(path, mmap_mode="r")
            except (OSError, ValueError):
                continue


def _open_npy(layout: PublishedLayout, root: Path, name: str, dimensions: int, shape_text: str) -> np.ndarray:
    """Memory-maps ``<root>/<name>.npy`` (only the selected rows get read) and checks its shape."""
    path = root / f"{name}.npy"
    if not path.is_file():
        found = ", ".join(sorted(p.stem for p in root.glob("*.npy") if p.name != LABELS_NAME)) or "none"
        raise layout.problem(root, f"missing {name}.npy (found: {found})")
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise layout.problem(root, f"{name}.npy is unreadable ({error})") from None
    if array.dtype != np.uint8 or array.ndim != dimensions or array.shape[-1] != 3:
        raise layout.problem(root, f"{name}.npy holds {array.dtype} {array.shape}, expected uint8 {shape_text}")
    return array


@dataclass(frozen=True)
class NumpyCorruptionLayout(CorruptionLayout):
    """``<corruption>.npy`` with five severity blocks, plus ``labels.npy``."""

    def looks_like(self, root: Path) -> bool:
        from corruptions import corruption_names

        return any(array.ndim == 4 for array in _known_npy_arrays(root, corruption_names()))

    def load(self, root: Path, conditions: List[Condition], indices: Optional[np.ndarray]) -> Tuple[Dict[Condition, np.ndarray], np.ndarray]:
        labels_path = root / LABELS_NAME
        if not labels_path.is_file():
            raise self.problem(root, f"missing {LABELS_NAME}")
        try:
            all_labels = np.load(labels_path)
        except (OSError, ValueError) as error:
            raise self.problem(root, f"{LABELS_NAME} is unreadable ({error})") from None
        if all_labels.ndim != 1 or not np.issubdtype(all_labels.dtype, np.integer):
            raise self.problem(root, f"{LABELS_NAME} holds {all_labels.dtype} {all_labels.shape}, expected integers of shape (5N,)")
        arrays = {corruption: _open_npy(self, root, corruption, 4, "5N x H x W x 3") for corruption, _ in conditions}
        block: Optional[int] = None
        first = ""
        for corruption, array in arrays.items():
            if array.shape[0] % SEVERITY_COUNT:
                raise self.problem(root, f"{corruption}.npy holds {array.shape[0]} images, not a multiple of 5 severity blocks")
            if block is not None and array.shape[0] != block * SEVERITY_COUNT:
                raise self.problem(root, f"{corruption}.npy holds {array.shape[0]} images but {first}.npy holds {block * SEVERITY_COUNT}")
            block, first = array.shape[0] // SEVERITY_COUNT, corruption
            if all_labels.shape[0] not in (block, block * SEVERITY_COUNT):
                raise self.problem(
                    root, f"{corruption}.npy holds 5 x {block} images but {LABELS_NAME} has {all_labels.shape[0]} labels (expected {block * 5} or {block})"
                )
        if block is None:  # no conditions asked for: the labels alone say how many images
            block = all_labels.shape[0] // SEVERITY_COUNT if all_labels.shape[0] % SEVERITY_COUNT == 0 else all_labels.shape[0]
        labels = all_labels[:block]
        if all_labels.shape[0] == block * SEVERITY_COUNT and block and not (all_labels.reshape(SEVERITY_COUNT, block) == labels).all():
            raise self.problem(root, f"{LABELS_NAME} does not repeat the same {block} labels for each of the 5 severity blocks")
        indices = _check_indices(indices, block, str(root))
        images = {
            (corruption, severity): np.ascontiguousarray(arrays[corruption][(severity - 1) * block + indices])
            for corruption, severity in conditions
        }
        return images, labels[indices].astype(np.int64)


@dataclass(frozen=True)
class _FolderListing:
    """The images of one condition folder, in reading order, with their labels."""

    keys: List[Tuple[str, str]]  # (class folder, file stem): identifies an image across conditions
    paths: List[Path]
    labels: np.ndarray


def _list_condition_folder(layout: PublishedLayout, root: Path, folder: Path, suffixes: Tuple[str, ...], manifest: Optional[dict]) -> _FolderListing:
    classes = _visible_entries(folder, directories=True)
    if not classes:
        raise layout.problem(root, f"{folder.relative_to(root)} holds no class folders")
    if manifest and "class_folders" in manifest:
        # Our writer names folders so that sorted order is class order, but a subset may
        # lack whole classes, so the manifest's list is the authority.
        positions = {name: index for index, name in enumerate(manifest["class_folders"])}
        unknown = [name for name in classes if name not in positions]
        if unknown:
            raise layout.problem(root, f"class folder {unknown[0]} in {folder.relative_to(root)} is not in {MANIFEST_NAME}")
    else:
        positions = {name: index for index, name in enumerate(classes)}
    by_index = bool(manifest and manifest.get("file_order") == "index")
    entries = []
    for name in classes:
        files = [f for f in _visible_entries(folder / name, directories=False) if f.lower().endswith(suffixes)]
        if not files:
            raise layout.problem(root, f"empty class folder {(folder / name).relative_to(root)}")
        for file in files:
            stem = Path(file).stem
            if by_index and not stem.isdigit():
                raise layout.problem(root, f"{(folder / name / file).relative_to(root)} is not named <index>{Path(file).suffix}")
            entries.append((int(stem) if by_index else 0, positions[name], file, name, stem))
    # ImageFolder order (class, then file name); our own sets: data-set index order.
    entries.sort(key=lambda entry: (entry[0], entry[1], entry[2]) if by_index else (entry[1], entry[2]))
    return _FolderListing(
        keys=[(name, stem) for _, _, _, name, stem in entries],
        paths=[folder / name / file for _, _, file, name, _ in entries],
        labels=np.asarray([label for _, label, _, _, _ in entries], dtype=np.int64),
    )


def _decode_images(layout: PublishedLayout, root: Path, paths: Sequence[Path]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    def decode(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as error:
            raise layout.problem(root, f"cannot decode {path.relative_to(root)} ({error})") from None

    if not paths:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    # Threads: Pillow releases the GIL while decoding.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        images = list(pool.map(decode, paths))
    for path, image in zip(paths, images):
        if image.shape != images[0].shape:
            raise layout.problem(
                root,
                f"{paths[0].relative_to(root)} is {images[0].shape[1]}x{images[0].shape[0]} px but "
                f"{path.relative_to(root)} is {image.shape[1]}x{image.shape[0]} px; images must share one size",
            )
    return np.stack(images)


def _first_image_size(folder: Path) -> Optional[Tuple[int, int]]:
    """Width and height of the first image under ``folder/<class>/``, reading only its header."""
    from PIL import Image

    for name in _visible_entries(folder, directories=True):
        for file in _visible_entries(folder / name, directories=False):
            if file.lower().endswith(IMAGE_SUFFIXES):
                try:
                    with Image.open(folder / name / file) as image:
                        return image.size
                except OSError:
                    return None
    return None


@dataclass(frozen=True)
class FolderCorruptionLayout(CorruptionLayout):
    """``<corruption>/<severity>/<class>/<image>``; ``image_size`` tells ImageNet-C and Tiny-ImageNet-C apart."""

    image_size: int = 224

    def matches_size(self, size: Tuple[int, int]) -> bool:
        # Tiny-ImageNet-C is the 64-px set; everything else in these folders is ImageNet-C-like.
        tiny = size == (64, 64)
        return tiny if self.image_size == 64 else not tiny

    def looks_like(self, root: Path) -> bool:
        from corruptions import corruption_names

        for corruption in corruption_names():
            for severity in range(1, SEVERITY_COUNT + 1):
                folder = root / corruption / str(severity)
                if folder.is_dir():
                    size = _first_image_size(folder)
                    return size is not None and self.matches_size(size)
        return False

    def load(self, root: Path, conditions: List[Condition], indices: Optional[np.ndarray]) -> Tuple[Dict[Condition, np.ndarray], np.ndarray]:
        manifest = read_manifest(root)
        listings: Dict[Condition, _FolderListing] = {}
        for corruption, severity in conditions:
            folder = root / corruption / str(severity)
            if not folder.is_dir():
                if (root / corruption).is_dir():
                    found = ", ".join(_visible_entries(root / corruption, directories=True)) or "none"
                    raise self.problem(root, f"missing severity folder {corruption}/{severity} (severities found: {found})")
                found = ", ".join(_visible_entries(root, directories=True)) or "none"
                raise self.problem(root, f"missing corruption folder {corruption} (found: {found})")
            listings[(corruption, severity)] = _list_condition_folder(self, root, folder, IMAGE_SUFFIXES, manifest)
        if not listings:
            return {}, np.zeros(0, dtype=np.int64)
        first_condition, first = next(iter(listings.items()))
        for condition, listing in listings.items():
            # Paired flips need the i-th image of every condition to be the same photograph.
            if listing.keys != first.keys:
                raise self.problem(
                    root,
                    f"{condition[0]}/{condition[1]} holds other images than {first_condition[0]}/{first_condition[1]} "
                    f"({len(listing.keys)} vs {len(first.keys)} files, or different names), so conditions would not pair",
                )
        indices = _check_indices(indices, len(first.keys), str(root))
        images = {
            condition: _decode_images(self, root, [listing.paths[index] for index in indices])
            for condition, listing in listings.items()
        }
        return images, first.labels[indices]


@dataclass(frozen=True)
class NumpyPerturbationLayout(PerturbationLayout):
    """``<perturbation>.npy`` (and ``<noise>_2.npy``, ``_3.npy``): N x frames x H x W x 3."""

    def looks_like(self, root: Path) -> bool:
        from corruptions.perturbations import ALL_PERTURBATIONS

        return any(array.ndim == 5 for array in _known_npy_arrays(root, ALL_PERTURBATIONS))

    def load(self, root: Path, perturbations: List[str], difficulty: int, indices: Optional[np.ndarray]) -> Dict[str, np.ndarray]:
        sequences = {}
        for perturbation in perturbations:
            array = _open_npy(self, root, self.source_name(perturbation, difficulty), 5, "N x frames x H x W x 3")
            chosen = _check_indices(indices, array.shape[0], f"{root}/{self.source_name(perturbation, difficulty)}.npy")
            sequences[perturbation] = np.ascontiguousarray(array[chosen])
        return sequences


@dataclass(frozen=True)
class VideoPerturbationLayout(PerturbationLayout):
    """``<perturbation>/<wnid>/*.mp4``: one video per image, frames brought to ``frame_size`` px."""

    frame_size: int = 224

    def looks_like(self, root: Path) -> bool:
        from corruptions.perturbations import ALL_PERTURBATIONS

        for perturbation in ALL_PERTURBATIONS:
            folder = root / perturbation
            if folder.is_dir():
                for name in _visible_entries(folder, directories=True):
                    if any(f.lower().endswith(VIDEO_SUFFIXES) for f in os.listdir(folder / name)):
                        return True
        return False

    def load(self, root: Path, perturbations: List[str], difficulty: int, indices: Optional[np.ndarray]) -> Dict[str, np.ndarray]:
        sequences = {}
        for perturbation in perturbations:
            source = self.source_name(perturbation, difficulty)
            folder = root / source
            if not folder.is_dir():
                found = ", ".join(_visible_entries(root, directories=True)) or "none"
                raise self.problem(root, f"missing perturbation folder {source} (found: {found})")
            listing = _list_condition_folder(self, root, folder, VIDEO_SUFFIXES, None)
            chosen = _check_indices(indices, len(listing.paths), f"{root}/{source}")
            videos = [read_video_frames(listing.paths[index], self.frame_size) for index in chosen]
            for index, video in zip(chosen, videos):
                if video.shape[0] != videos[0].shape[0]:
                    raise self.problem(
                        root, f"{listing.paths[index].relative_to(root)} has {video.shape[0]} frames, unlike {listing.paths[chosen[0]].relative_to(root)} ({videos[0].shape[0]})"
                    )
            empty = np.zeros((0, 0, self.frame_size, self.frame_size, 3), dtype=np.uint8)
            sequences[perturbation] = np.stack(videos) if videos else empty
        return sequences


LAYOUTS: Registry[PublishedLayout] = Registry("published layout")
LAYOUTS.add("cifar-c", NumpyCorruptionLayout("cifar-c", "CIFAR-10-C/CIFAR-100-C", "<corruption>.npy (5N x 32 x 32 x 3 uint8) plus labels.npy"))
LAYOUTS.add("imagenet-c", FolderCorruptionLayout("imagenet-c", "ImageNet-C", "<corruption>/<severity>/<wnid>/*.JPEG at 224 px", image_size=224))
LAYOUTS.add("tiny-imagenet-c", FolderCorruptionLayout("tiny-imagenet-c", "Tiny-ImageNet-C", "<corruption>/<severity>/<wnid>/*.JPEG at 64 px", image_size=64))
LAYOUTS.add("cifar-p", NumpyPerturbationLayout("cifar-p", "CIFAR-10-P/CIFAR-100-P", "<perturbation>.npy (N x frames x 32 x 32 x 3 uint8)", profile="cifar"))
LAYOUTS.add("imagenet-p", VideoPerturbationLayout("imagenet-p", "ImageNet-P", "<perturbation>/<wnid>/*.mp4", profile="imagenet", frame_size=224))


def detect_layout(root: PathLike) -> str:
    """The name of the layout ``root`` is in; a one-line UserError listing the layouts otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    manifest = read_manifest(root)
    if manifest and manifest.get("layout") in LAYOUTS:
        return manifest["layout"]
    matches = [name for name in LAYOUTS if LAYOUTS.get(name).looks_like(root)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UserError(f"{root} looks like several layouts ({', '.join(matches)}); name one")
    expected = "; ".join(f"{name}: {LAYOUTS.get(name).expected}" for name in LAYOUTS)
    raise UserError(f"{root} matches no published layout; expected one of {expected}")


def _layout_of_kind(root: Path, layout: Optional[str], kind: type, use: str) -> PublishedLayout:
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    name = layout if layout is not None else detect_layout(root)
    found = LAYOUTS.get(name)
    if not isinstance(found, kind):
        raise UserError(f"layout {name!r} holds {found.kind} sets; use {use}")
    manifest = read_manifest(root)
    if manifest and manifest.get("layout") not in (None, name):
        raise UserError(f"{root} was written in layout {manifest.get('layout')!r}, not {name!r}")
    return found


def load_corruption_set(
    root: PathLike,
    layout: Optional[str],
    conditions: Sequence[Tuple[str, int]],
    indices: Optional[np.ndarray] = None,
    *,
    profile: Optional[str] = None,
    seed: Optional[int] = None,
) -> Tuple[Dict[Condition, np.ndarray], np.ndarray]:
    """Reads corrupted images: ``({(corruption, severity): uint8 M x H x W x 3}, labels M)``.

    ``indices`` are positions within each severity block (the same images for every
    condition, so flips against clean predictions pair up); None reads them all.
    ``layout`` None detects it. ``profile``/``seed``, when given, must agree with the
    set's manifest (published sets have none and are not checked).
    """
    root = Path(root)
    found = _layout_of_kind(root, layout, CorruptionLayout, "load_perturbation_set")
    check_manifest(root, profile=profile, seed=seed)
    return found.load(root, _check_conditions(conditions), indices)  # type: ignore[attr-defined]


def load_perturbation_set(
    root: PathLike,
    layout: Optional[str],
    perturbations: Sequence[str],
    difficulty: int = 1,
    indices: Optional[np.ndarray] = None,
) -> Dict[str, np.ndarray]:
    """Reads perturbation sequences: ``{name: uint8 N x frames x H x W x 3}``.

    Noise perturbations at difficulty 2 or 3 come from their own files/folders
    (``<name>_<difficulty>``); gradual ones have one set whatever the difficulty.
    ``indices`` select sequences (videos in ImageFolder order for ImageNet-P).
    """
    from corruptions.perturbations import validate_difficulty

    root = Path(root)
    found = _layout_of_kind(root, layout, PerturbationLayout, "load_corruption_set")
    difficulty = validate_difficulty(list(perturbations), difficulty, found.profile)  # type: ignore[attr-defined]
    return found.load(root, list(dict.fromkeys(perturbations)), difficulty, indices)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class ImageFormat:
    """How the image-folder writer stores one image."""

    suffix: str
    options: Dict[str, object]


IMAGE_FORMATS: Registry[ImageFormat] = Registry("image format")
# Quality 85, as the published ImageNet-C; PNG when exact pixels matter.
IMAGE_FORMATS.add("jpeg", ImageFormat(".JPEG", {"format": "JPEG", "quality": 85}))
IMAGE_FORMATS.add("png", ImageFormat(".png", {"format": "PNG"}))


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
    class_folders: List[str]


class _SetWriter:
    """Writes the units of one layout; subclasses say where units live and how they are stored."""

    file_order: Optional[str] = None

    def check(self, dataset: ImageDataset, severities: List[int]) -> None:
        """Refuses requests the layout cannot represent."""

    def prepare(self, job: _WriteJob) -> None:
        """Writes what every unit shares (labels)."""

    def pending(self, job: _WriteJob, corruption: str, severities: List[int]) -> List[int]:
        raise NotImplementedError

    def sink(self, job: _WriteJob, corruption: str, severity: int) -> _Sink:
        raise NotImplementedError

    def finish(self, job: _WriteJob, corruption: str) -> None:
        """Called once every requested severity of ``corruption`` is committed."""


class _NumpyPartSink(_Sink):
    def __init__(self, path: Path, shape: Tuple[int, ...]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.array = np.lib.format.open_memmap(_partial_name(path), mode="w+", dtype=np.uint8, shape=shape)

    def write(self, start: int, images: np.ndarray) -> None:
        self.array[start : start + len(images)] = images

    def commit(self) -> None:
        self.array.flush()
        del self.array
        _fsync_file(_partial_name(self.path))
        os.replace(_partial_name(self.path), self.path)


class _NumpyStackWriter(_SetWriter):
    """cifar-c: per-severity parts under ``.parts/``, assembled into ``<corruption>.npy``."""

    def check(self, dataset: ImageDataset, severities: List[int]) -> None:
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
        _atomic_save_npy(path, labels)

    def _part(self, job: _WriteJob, corruption: str, severity: int) -> Path:
        return job.root / PARTS_FOLDER / corruption / f"{severity}.npy"

    def pending(self, job: _WriteJob, corruption: str, severities: List[int]) -> List[int]:
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
        stacked = np.lib.format.open_memmap(_partial_name(final), mode="w+", dtype=np.uint8, shape=shape)
        for severity in range(1, SEVERITY_COUNT + 1):
            stacked[(severity - 1) * count : severity * count] = np.load(self._part(job, corruption, severity), mmap_mode="r")
        stacked.flush()
        del stacked
        _fsync_file(_partial_name(final))
        os.replace(_partial_name(final), final)
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

    def pending(self, job: _WriteJob, corruption: str, severities: List[int]) -> List[int]:
        return [severity for severity in severities if not (job.root / corruption / str(severity)).is_dir()]

    def sink(self, job: _WriteJob, corruption: str, severity: int) -> _Sink:
        (job.root / corruption).mkdir(parents=True, exist_ok=True)
        return _ImageFolderSink(job, job.root / corruption / str(severity))


_WRITERS: Registry[_SetWriter] = Registry("writable layout")
_WRITERS.add("cifar-c", _NumpyStackWriter())
_WRITERS.add("imagenet-c", _ImageFolderWriter())
_WRITERS.add("tiny-imagenet-c", _ImageFolderWriter())


def writable_layouts() -> List[str]:
    """Layouts :func:`write_corruption_set` can write (for command-line choices)."""
    return _WRITERS.names()


def _safe_folder_name(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in name).strip(".") or "class"


def class_folder_names(classes: Sequence[str]) -> List[str]:
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
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(dataset.images), dataset.labels.astype(np.int64), indices.astype(np.int64)):
        digest.update(str(array.shape).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``root`` so two writers never interleave their units."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, one writer per folder is then up to the user
        yield
        return
    with open(root / LOCK_NAME, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another process is writing a corruption set into {root}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(root: Path) -> None:
    """Deletes ``.partial`` files and folders of a killed run (where our writers put them)."""
    folders = [root] + [root / name for name in _visible_entries(root, directories=True)]
    if (root / PARTS_FOLDER).is_dir():
        folders += [root / PARTS_FOLDER / name for name in _visible_entries(root / PARTS_FOLDER, directories=True)]
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
        if existing.get(key) != fresh.get(key):
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
    indices: Optional[np.ndarray] = None,
) -> Path:
    """Corrupts ``dataset`` and stores it in a published layout (``cifar-c``, ``imagenet-c``,
    ``tiny-imagenet-c``), with ``manifest.json``; returns ``root``.

    Deterministic: image i is corrupted by :func:`corruptions.corrupt_many` with index
    ``indices[i]`` (default: its position in ``dataset``; pass the original positions of a
    sampled subset so it matches the full set), so every machine writes the same pixels.
    Resumable: finished units are skipped (see the module docstring). ``image_format``
    (``jpeg`` quality 85, or lossless ``png``) applies to the image-folder layouts.
    """
    from corruptions import corrupt_many
    from corruptions.engine import PROFILE_REGISTRY
    from corruptions.registry import check_severity, corruption_id

    writer = _WRITERS.get(layout)
    PROFILE_REGISTRY.get(profile)
    IMAGE_FORMATS.get(image_format)
    corruptions = list(dict.fromkeys(corruptions))
    if not corruptions or not severities:
        raise UserError("write_corruption_set needs at least one corruption and one severity")
    for corruption in corruptions:
        corruption_id(corruption)  # unknown names: UserError listing the known ones
    severities = sorted({check_severity(corruptions[0], severity) for severity in severities})
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
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
    class_folders = class_folder_names(dataset.classes) if dataset.classes else [str(label) for label in range(int(dataset.labels.max()) + 1)]
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
        "corruptions": corruptions,
        "severities": severities,
        "classes": list(dataset.classes),
        "package_version": __version__,
    }
    if writer.file_order:
        fresh["file_order"] = writer.file_order
        fresh["class_folders"] = class_folders
    if not np.array_equal(indices, np.arange(len(dataset))):
        fresh["indices"] = indices.tolist()

    from tqdm import tqdm

    with _exclusive(root):
        _remove_leftovers(root)
        manifest = _merge_manifest(root, fresh)
        if manifest != read_manifest(root):  # unchanged: keep the file (and its mtime)
            _atomic_write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
        writer.prepare(job)
        plan = [(corruption, writer.pending(job, corruption, severities)) for corruption in corruptions]
        chunk = max(1, _CHUNK_BYTES // max(1, int(np.prod(dataset.images.shape[1:]))))
        total = sum(len(pending) for _, pending in plan) * len(dataset)
        with tqdm(total=total, desc=f"writing {layout}", unit="image", file=sys.stderr, disable=not progress) as bar:
            for corruption, pending in plan:
                if pending:
                    sinks = {severity: writer.sink(job, corruption, severity) for severity in pending}
                    for start in range(0, len(dataset), chunk):
                        stop = min(start + chunk, len(dataset))
                        results = corrupt_many(
                            dataset.images[start:stop],
                            [(corruption, severity) for severity in pending],
                            profile=profile,
                            seed=int(seed),
                            indices=indices[start:stop],
                            workers=workers,
                        )
                        for severity, sink in sinks.items():
                            sink.write(start, results[(corruption, severity)])
                        bar.update((stop - start) * len(pending))
                    for sink in sinks.values():
                        sink.commit()
                writer.finish(job, corruption)
    return root
