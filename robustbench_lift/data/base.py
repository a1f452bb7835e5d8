"""The one interface of every data set: uint8 images (N x H x W x 3) with integer labels.

Corruptions work on uint8 pixels and models take float [0, 1] tensors, so data sets hand
out pixels and :func:`robustbench_lift.evaluation.inference.to_tensor` converts;
normalisation lives inside the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustbench_lift.errors import UserError

__all__ = ["DEFAULT_CACHE", "IMAGE_SUFFIXES", "ImageDataset", "channel_statistics"]

DEFAULT_CACHE = Path(os.environ.get("ROBUSTBENCH_LIFT_DATA", Path.home() / ".cache" / "robustbench-lift"))
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass
class ImageDataset:
    """Images as uint8 N x H x W x 3, labels as int64 N, and the class names."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        indices = np.asarray(indices)
        return ImageDataset(self.name, self.images[indices], self.labels[indices], self.classes)

    def sample(self, size: int | None, seed: int) -> tuple[ImageDataset, np.ndarray]:
        """A seeded random subset of ``size`` images (all when None), in index order.

        Returns the subset and the original indices, which seed per-image corruptions.
        A size larger than the data set is refused rather than silently shrunk.
        """
        if size is not None and size > len(self):
            raise UserError(f"sample size {size} is larger than the {self.name} split ({len(self)} images); ask for at most {len(self)}")
        if size is None or size == len(self):
            indices = np.arange(len(self))
        else:
            if size <= 0:
                raise UserError(f"sample size must be positive, got {size}")
            indices = np.sort(np.random.default_rng(seed).choice(len(self), size=size, replace=False))
        return self.subset(indices), indices


def channel_statistics(dataset: ImageDataset) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images in [0, 1], for the model's normalisation."""
    pixels = dataset.images.reshape(-1, 3).astype(np.float64) / 255
    return pixels.mean(axis=0).round(4).tolist(), pixels.std(axis=0).round(4).tolist()
