"""Pre-made robustness data sets in their published layouts: detection and readers.

Layouts (``docs/corruptions.md``; facts from the reference code in hendrycks/robustness):

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
flips against clean predictions are paired. Sets we write ourselves (:func:`~robustbench_lift.data.writer.write_corruption_set`)
carry a ``manifest.json``; the reader then orders images by the data-set index in their
file names and takes class indices from the manifest. Writing lives in
:mod:`robustbench_lift.data.writer`, video decoding in :mod:`robustbench_lift.data.video`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from robustbench_lift.data.base import IMAGE_SUFFIXES
from robustbench_lift.data.video import read_video_frames
from robustbench_lift.errors import UserError, corruption_input
from robustbench_lift.registry import Registry
from robustbench_lift.utils.io import PARTIAL
from robustbench_lift.utils.seeds import check_indices

Condition = tuple[str, int]
PathLike = str | os.PathLike

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.npy"
PARTS_FOLDER = ".parts"
VIDEO_SUFFIXES = (".mp4",)
SEVERITY_COUNT = 5
MANIFEST_FORMAT = "robustbench-lift corruption set"


# ---------------------------------------------------------------- small helpers


def visible_entries(folder: Path, directories: bool) -> list[str]:
    """Sorted names of sub-folders (or files) that are not hidden and not temporary."""
    names = []
    for entry in os.scandir(folder):
        if entry.name.startswith(".") or PARTIAL in entry.name:
            continue
        if entry.is_dir() == directories:
            names.append(entry.name)
    return sorted(names)


def _check_conditions(conditions: Sequence[tuple[str, int]]) -> list[Condition]:
    checked = []
    for condition in conditions:
        try:
            corruption, severity = condition
        except (TypeError, ValueError):
            raise UserError(f"a condition must be a (corruption, severity) pair, got {condition!r}") from None
        if (
            isinstance(severity, bool)
            or not isinstance(severity, (int, np.integer))
            or not 1 <= severity <= SEVERITY_COUNT
        ):
            raise UserError(f"severity for corruption {corruption!r} must be an integer in 1..5, got {severity!r}")
        checked.append((str(corruption), int(severity)))
    return list(dict.fromkeys(checked))


def read_manifest(root: PathLike) -> dict | None:
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


def check_manifest(root: PathLike, *, profile: str | None = None, seed: int | None = None) -> None:
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

    def load(
        self, root: Path, conditions: list[Condition], indices: np.ndarray | None
    ) -> tuple[dict[Condition, np.ndarray], np.ndarray]:
        raise NotImplementedError


@dataclass(frozen=True)
class PerturbationLayout(PublishedLayout):
    """A layout of perturbation sequences (frames of one image), one set per perturbation."""

    profile: str = "cifar"
    kind: ClassVar[str] = "perturbation"

    def load(
        self, root: Path, perturbations: list[str], difficulty: int, indices: np.ndarray | None
    ) -> dict[str, np.ndarray]:
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

    def load(
        self, root: Path, conditions: list[Condition], indices: np.ndarray | None
    ) -> tuple[dict[Condition, np.ndarray], np.ndarray]:
        labels_path = root / LABELS_NAME
        if not labels_path.is_file():
            raise self.problem(root, f"missing {LABELS_NAME}")
        try:
            all_labels = np.load(labels_path)
        except (OSError, ValueError) as error:
            raise self.problem(root, f"{LABELS_NAME} is unreadable ({error})") from None
        if all_labels.ndim != 1 or not np.issubdtype(all_labels.dtype, np.integer):
            raise self.problem(
                root, f"{LABELS_NAME} holds {all_labels.dtype} {all_labels.shape}, expected integers of shape (5N,)"
            )
        arrays = {corruption: _open_npy(self, root, corruption, 4, "5N x H x W x 3") for corruption, _ in conditions}
        block: int | None = None
        first = ""
        for corruption, array in arrays.items():
            if array.shape[0] % SEVERITY_COUNT:
                raise self.problem(
                    root, f"{corruption}.npy holds {array.shape[0]} images, not a multiple of 5 severity blocks"
                )
            if block is not None and array.shape[0] != block * SEVERITY_COUNT:
                raise self.problem(
                    root,
                    f"{corruption}.npy holds {array.shape[0]} images but {first}.npy holds {block * SEVERITY_COUNT}",
                )
            block, first = array.shape[0] // SEVERITY_COUNT, corruption
            if all_labels.shape[0] not in (block, block * SEVERITY_COUNT):
                raise self.problem(
                    root,
                    f"{corruption}.npy holds 5 x {block} images but {LABELS_NAME} has {all_labels.shape[0]} labels (expected {block * 5} or {block})",
                )
        if block is None:  # no conditions asked for: the labels alone say how many images
            block = (
                all_labels.shape[0] // SEVERITY_COUNT
                if all_labels.shape[0] % SEVERITY_COUNT == 0
                else all_labels.shape[0]
            )
        labels = all_labels[:block]
        if (
            all_labels.shape[0] == block * SEVERITY_COUNT
            and block
            and not (all_labels.reshape(SEVERITY_COUNT, block) == labels).all()
        ):
            raise self.problem(
                root, f"{LABELS_NAME} does not repeat the same {block} labels for each of the 5 severity blocks"
            )
        indices = check_indices(indices, limit=block, where=str(root))
        images = {
            (corruption, severity): np.ascontiguousarray(arrays[corruption][(severity - 1) * block + indices])
            for corruption, severity in conditions
        }
        return images, labels[indices].astype(np.int64)


@dataclass(frozen=True)
class _FolderListing:
    """The images of one condition folder, in reading order, with their labels."""

    keys: list[tuple[str, str]]  # (class folder, file stem): identifies an image across conditions
    paths: list[Path]
    labels: np.ndarray


def _list_condition_folder(
    layout: PublishedLayout, root: Path, folder: Path, suffixes: tuple[str, ...], manifest: dict | None
) -> _FolderListing:
    classes = visible_entries(folder, directories=True)
    if not classes:
        raise layout.problem(root, f"{folder.relative_to(root)} holds no class folders")
    if manifest and "class_folders" in manifest:
        # Our writer names folders so that sorted order is class order, but a subset may
        # lack whole classes, so the manifest's list is the authority.
        positions = {name: index for index, name in enumerate(manifest["class_folders"])}
        unknown = [name for name in classes if name not in positions]
        if unknown:
            raise layout.problem(
                root, f"class folder {unknown[0]} in {folder.relative_to(root)} is not in {MANIFEST_NAME}"
            )
    else:
        positions = {name: index for index, name in enumerate(classes)}
    by_index = bool(manifest and manifest.get("file_order") == "index")
    entries = []
    for name in classes:
        files = [f for f in visible_entries(folder / name, directories=False) if f.lower().endswith(suffixes)]
        if not files:
            raise layout.problem(root, f"empty class folder {(folder / name).relative_to(root)}")
        for file in files:
            stem = Path(file).stem
            if by_index and not stem.isdigit():
                raise layout.problem(
                    root, f"{(folder / name / file).relative_to(root)} is not named <index>{Path(file).suffix}"
                )
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


def _first_image_size(folder: Path) -> tuple[int, int] | None:
    """Width and height of the first image under ``folder/<class>/``, reading only its header."""
    from PIL import Image

    for name in visible_entries(folder, directories=True):
        for file in visible_entries(folder / name, directories=False):
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

    def matches_size(self, size: tuple[int, int]) -> bool:
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

    def load(
        self, root: Path, conditions: list[Condition], indices: np.ndarray | None
    ) -> tuple[dict[Condition, np.ndarray], np.ndarray]:
        manifest = read_manifest(root)
        listings: dict[Condition, _FolderListing] = {}
        for corruption, severity in conditions:
            folder = root / corruption / str(severity)
            if not folder.is_dir():
                if (root / corruption).is_dir():
                    found = ", ".join(visible_entries(root / corruption, directories=True)) or "none"
                    raise self.problem(
                        root, f"missing severity folder {corruption}/{severity} (severities found: {found})"
                    )
                found = ", ".join(visible_entries(root, directories=True)) or "none"
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
        indices = check_indices(indices, limit=len(first.keys), where=str(root))
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

    def load(
        self, root: Path, perturbations: list[str], difficulty: int, indices: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        sequences = {}
        for perturbation in perturbations:
            array = _open_npy(self, root, self.source_name(perturbation, difficulty), 5, "N x frames x H x W x 3")
            chosen = check_indices(
                indices, limit=array.shape[0], where=f"{root}/{self.source_name(perturbation, difficulty)}.npy"
            )
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
                for name in visible_entries(folder, directories=True):
                    if any(f.lower().endswith(VIDEO_SUFFIXES) for f in os.listdir(folder / name)):
                        return True
        return False

    def load(
        self, root: Path, perturbations: list[str], difficulty: int, indices: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        sequences = {}
        for perturbation in perturbations:
            source = self.source_name(perturbation, difficulty)
            folder = root / source
            if not folder.is_dir():
                found = ", ".join(visible_entries(root, directories=True)) or "none"
                raise self.problem(root, f"missing perturbation folder {source} (found: {found})")
            listing = _list_condition_folder(self, root, folder, VIDEO_SUFFIXES, None)
            chosen = check_indices(indices, limit=len(listing.paths), where=f"{root}/{source}")
            videos = [read_video_frames(listing.paths[index], self.frame_size) for index in chosen]
            for index, video in zip(chosen, videos):
                if video.shape[0] != videos[0].shape[0]:
                    raise self.problem(
                        root,
                        f"{listing.paths[index].relative_to(root)} has {video.shape[0]} frames, unlike {listing.paths[chosen[0]].relative_to(root)} ({videos[0].shape[0]})",
                    )
            empty = np.zeros((0, 0, self.frame_size, self.frame_size, 3), dtype=np.uint8)
            sequences[perturbation] = np.stack(videos) if videos else empty
        return sequences


LAYOUTS: Registry[PublishedLayout] = Registry("published layout")
LAYOUTS.add(
    "cifar-c",
    NumpyCorruptionLayout(
        "cifar-c", "CIFAR-10-C/CIFAR-100-C", "<corruption>.npy (5N x 32 x 32 x 3 uint8) plus labels.npy"
    ),
)
LAYOUTS.add(
    "imagenet-c",
    FolderCorruptionLayout(
        "imagenet-c", "ImageNet-C", "<corruption>/<severity>/<wnid>/*.JPEG at 224 px", image_size=224
    ),
)
LAYOUTS.add(
    "tiny-imagenet-c",
    FolderCorruptionLayout(
        "tiny-imagenet-c", "Tiny-ImageNet-C", "<corruption>/<severity>/<wnid>/*.JPEG at 64 px", image_size=64
    ),
)
LAYOUTS.add(
    "cifar-p",
    NumpyPerturbationLayout(
        "cifar-p", "CIFAR-10-P/CIFAR-100-P", "<perturbation>.npy (N x frames x 32 x 32 x 3 uint8)", profile="cifar"
    ),
)
LAYOUTS.add(
    "imagenet-p",
    VideoPerturbationLayout(
        "imagenet-p", "ImageNet-P", "<perturbation>/<wnid>/*.mp4", profile="imagenet", frame_size=224
    ),
)


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


def _layout_of_kind(root: Path, layout: str | None, kind: type, use: str) -> PublishedLayout:
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
    layout: str | None,
    conditions: Sequence[tuple[str, int]],
    indices: np.ndarray | None = None,
    *,
    profile: str | None = None,
    seed: int | None = None,
) -> tuple[dict[Condition, np.ndarray], np.ndarray]:
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
    layout: str | None,
    perturbations: Sequence[str],
    difficulty: int = 1,
    indices: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Reads perturbation sequences: ``{name: uint8 N x frames x H x W x 3}``.

    Noise perturbations at difficulty 2 or 3 come from their own files/folders
    (``<name>_<difficulty>``); gradual ones have one set whatever the difficulty.
    ``indices`` select sequences (videos in ImageFolder order for ImageNet-P).
    """
    from corruptions.perturbations import validate_difficulty

    root = Path(root)
    found = _layout_of_kind(root, layout, PerturbationLayout, "load_corruption_set")
    with corruption_input():
        difficulty = validate_difficulty(list(perturbations), difficulty, found.profile)  # type: ignore[attr-defined]
    return found.load(root, list(dict.fromkeys(perturbations)), difficulty, indices)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- writing
