"""Image files listed first, decoded only when sampled: the lazy data set of image folders.

An :class:`ImageFiles` holds the paths, labels and classes of a folder (listing
directories opens no image) and decodes images only when asked for some: a run samples
its indices with the run's seed (the same indices :meth:`ImageDataset.sample` draws for
a data set of that length), and only those files are opened and decoded, by a pool of
threads (Pillow releases the GIL while decoding), straight into one preallocated uint8
array. At most ``2 x workers`` decoded images wait to be copied, so memory is the
sample's array plus a few images, whatever the folder's size. Torch-free.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from robustbench_lift.data.base import ImageDataset, sample_indices
from robustbench_lift.data.geometry import Geometry, apply_geometry
from robustbench_lift.errors import UserError

__all__ = ["ImageFiles", "decode_files", "default_workers"]

log = logging.getLogger(__name__)


def default_workers() -> int:
    """Decoding threads when the caller names none: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _decode(path: Path, geometry: Geometry | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return apply_geometry(image, geometry)
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"cannot decode image {path}: {error}") from None


def decode_files(paths: Sequence[Path], geometry: Geometry | None = None, workers: int | None = None) -> np.ndarray:
    """Decodes ``paths`` (in order) to one uint8 N x H x W x 3 array, after ``geometry``.

    Args:
        paths: image files.
        geometry: resize/crop applied to each decoded image (None: as decoded; the
            images must then share one size).
        workers: decoding threads (None: :func:`default_workers`).

    Returns:
        The images; N x 0 x 0 x 3 when ``paths`` is empty.

    Raises:
        UserError: a file cannot be decoded, or images differ in size.
    """
    if not paths:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    first = _decode(paths[0], geometry)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first

    def store(position: int, future: Future[np.ndarray]) -> None:
        image = future.result()
        if image.shape != first.shape:
            raise UserError(
                f"{paths[position]} is {image.shape[1]}x{image.shape[0]} px but {paths[0]} is {first.shape[1]}x{first.shape[0]} px; "
                "images must share one size (declare a resize/crop)"
            )
        out[position] = image

    threads = max(1, workers or default_workers())
    window: deque[tuple[int, Future[np.ndarray]]] = deque()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        try:
            for position in range(1, len(paths)):
                window.append((position, pool.submit(_decode, paths[position], geometry)))
                if len(window) >= 2 * threads:
                    store(*window.popleft())
            while window:
                store(*window.popleft())
        finally:
            for _, future in window:
                future.cancel()
    return out


class ImageFiles:
    """A data set of image files, decoded on demand (see the module docstring).

    Attributes:
        name: the data set's name.
        paths: one file per image, in data-set order.
        labels: int64 label of each image.
        classes: class names, indexed by label.
        geometry: the data set's own evaluation geometry (e.g. resize 256 / crop 224 for
            ImageNet); None decodes images as stored.
        class_index: each class's output index in a 1000-way ImageNet model when the
            classes are ImageNet wnids (see :mod:`robustbench_lift.data.classes`).
    """

    def __init__(
        self,
        name: str,
        paths: Sequence[Path],
        labels: np.ndarray,
        classes: list[str],
        geometry: Geometry | None = None,
        class_index: np.ndarray | None = None,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.name = name
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = classes
        self.geometry = geometry
        self.class_index = class_index
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        geometry = self.geometry.describe() if self.geometry is not None else "as decoded"
        return f"ImageFiles({self.name!r}, {len(self)} files, {len(self.classes)} classes, {geometry})"

    def load(
        self, indices: Sequence[int] | np.ndarray, geometry: Geometry | None = None, workers: int | None = None
    ) -> ImageDataset:
        """The images at ``indices``, decoded now (only those files are opened).

        Args:
            indices: positions in this data set, in the order wanted.
            geometry: resize/crop instead of the data set's own (None: its own).
            workers: decoding threads.
        """
        indices = np.asarray(indices, dtype=np.int64)
        images = decode_files([self.paths[int(index)] for index in indices], geometry or self.geometry, workers)
        return ImageDataset(self.name, images, self.labels[indices], self.classes, self.class_index)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """The images at ``indices``, decoded at the data set's own geometry."""
        return self.load(indices)

    def sample(self, size: int | None, seed: int, workers: int | None = None) -> tuple[ImageDataset, np.ndarray]:
        """A seeded random subset of ``size`` images (all when None), in index order,
        decoded now; the same indices as :meth:`ImageDataset.sample`.

        Returns the subset and the original indices, which seed per-image corruptions.
        """
        indices = sample_indices(len(self), size, seed, self.name)
        return self.load(indices, workers=workers), indices

    @property
    def images(self) -> np.ndarray:
        """Every image, decoded (once, then kept): N x H x W x 3 bytes of memory. Runs
        decode only their sample; this is for code that wants the whole split."""
        if self._images is None:
            log.info("decoding all %d images of %s", len(self), self.name)
            self._images = decode_files(self.paths, self.geometry)
        return self._images
