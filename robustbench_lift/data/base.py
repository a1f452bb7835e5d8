"""The one interface of every data set: uint8 images (N x H x W x 3) with integer labels.

Corruptions work on uint8 pixels and models take float [0, 1] tensors, so data sets hand
out pixels and :func:`robustbench_lift.evaluation.inference.to_tensor` converts;
normalisation lives inside the model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from robustbench_lift.errors import UserError

if TYPE_CHECKING:
    from robustbench_lift.data.geometry import Geometry

__all__ = ["DEFAULT_CACHE", "IMAGE_SUFFIXES", "ImageDataset", "channel_statistics", "sample_indices"]

DEFAULT_CACHE = Path(os.environ.get("ROBUSTBENCH_LIFT_DATA", Path.home() / ".cache" / "robustbench-lift"))
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def sample_indices(count: int, size: int | None, seed: int, name: str = "data set") -> np.ndarray:
    """The indices a run samples from a data set of ``count`` images: ``size`` of them
    drawn without replacement with ``seed``, sorted (all of them when ``size`` is None or
    ``count``). Every data set samples through this, in memory or on disk, so the same
    seed gives the same images (and existing baselines stay valid). A size larger than
    the data set is refused (UserError naming ``name``) rather than silently shrunk."""
    if size is not None and size > count:
        raise UserError(f"sample size {size} is larger than the {name} split ({count} images); ask for at most {count}")
    if size is None or size == count:
        return np.arange(count)
    if size <= 0:
        raise UserError(f"sample size must be positive, got {size}")
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))


@dataclass
class ImageDataset:
    """Images as uint8 N x H x W x 3, labels as int64 N, and the class names.

    ``class_index``: each class's output index in a 1000-way ImageNet model when the
    classes are ImageNet wnids (:mod:`robustbench_lift.data.classes`), else None.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    class_index: np.ndarray | None = None

    #: The data set's own evaluation geometry: None, images are kept as stored.
    geometry: ClassVar[Geometry | None] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        indices = np.asarray(indices)
        return ImageDataset(self.name, self.images[indices], self.labels[indices], self.classes, self.class_index)

    def sample(self, size: int | None, seed: int) -> tuple[ImageDataset, np.ndarray]:
        """A seeded random subset of ``size`` images (all when None), in index order.

        Returns the subset and the original indices, which seed per-image corruptions.
        A size larger than the data set is refused rather than silently shrunk.
        """
        indices = sample_indices(len(self), size, seed, self.name)
        return self.subset(indices), indices

    def load(
        self, indices: Sequence[int] | np.ndarray, geometry: Geometry | None = None, workers: int | None = None
    ) -> ImageDataset:
        """The images at ``indices``, resized/cropped by ``geometry`` (None: as stored).

        The interface :class:`robustbench_lift.data.files.ImageFiles` shares; ``workers``
        is accepted for it and unused here.
        """
        subset = self.subset(indices)
        if geometry is None:
            return subset
        from robustbench_lift.data.geometry import resize_array

        return dataclasses.replace(subset, images=resize_array(subset.images, geometry))


def channel_statistics(dataset: ImageDataset) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images in [0, 1], for the model's normalisation."""
    pixels = dataset.images.reshape(-1, 3).astype(np.float64) / 255
    return pixels.mean(axis=0).round(4).tolist(), pixels.std(axis=0).round(4).tolist()
