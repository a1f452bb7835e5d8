"""The data-set registry: name -> loader ``(split, data_dir, download) -> ImageDataset``.

To add a data set, write its loader (e.g. in :mod:`robustbench_lift.data.loaders`) and
add one ``DATASETS.add`` line here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from robustbench_lift.data import loaders
from robustbench_lift.data.base import DEFAULT_CACHE, IMAGE_SUFFIXES, ImageDataset, channel_statistics
from robustbench_lift.data.files import ImageFiles
from robustbench_lift.data.loaders import DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES
from robustbench_lift.registry import Registry

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "DEFAULT_CACHE",
    "FASHION_MNIST_CLASSES",
    "IMAGE_SUFFIXES",
    "DatasetLoader",
    "ImageDataset",
    "ImageFiles",
    "channel_statistics",
    "list_datasets",
    "load_dataset",
]

DatasetLoader = Callable[..., ImageDataset | ImageFiles]
DATASETS: Registry[DatasetLoader] = Registry("data set")
DATASETS.add("fashion_mnist", loaders.load_fashion_mnist)
DATASETS.add("cifar10", loaders.load_cifar10)
DATASETS.add("image_folder", loaders.load_image_folder)
DATASETS.add("cifar100", loaders.load_cifar100)
DATASETS.add("imagenet", loaders.load_imagenet)
DATASETS.add("tiny_imagenet", loaders.load_tiny_imagenet)


def load_dataset(
    name: str, split: str = "test", data_dir: str | Path | None = None, download: bool = False
) -> ImageDataset | ImageFiles:
    """Loads a registered data set by name: in memory (:class:`ImageDataset`) or, for image
    folders, listed and decoded when sampled (:class:`ImageFiles`, same ``sample`` /
    ``subset`` / ``load`` interface)."""
    return DATASETS.get(name)(split=split, data_dir=data_dir, download=download)


def list_datasets() -> list[str]:
    """Names of the registered data sets."""
    return DATASETS.names()
