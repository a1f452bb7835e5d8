"""Data sets served on one interface: uint8 images (N x H x W x 3) with integer labels.

Corruptions work on uint8 pixels and models take float [0, 1] tensors, so data sets hand
out pixels and :func:`to_tensor` converts; normalisation lives inside the model.
Fashion-MNIST is padded from 28 to 32 px (zeros, like LeNet's input) and replicated to
three channels so 32-px CIFAR-style models and corruption parameters apply unchanged.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from robustbench_lift.errors import UserError
from robustbench_lift.registry import Registry

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
DEFAULT_CACHE = Path(os.environ.get("ROBUSTBENCH_LIFT_DATA", Path.home() / ".cache" / "robustbench-lift"))


@dataclass
class ImageDataset:
    """Images as uint8 N x H x W x 3, labels as int64 N, and the class names."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: List[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ImageDataset":
        indices = np.asarray(indices)
        return ImageDataset(self.name, self.images[indices], self.labels[indices], self.classes)

    def sample(self, size: Optional[int], seed: int) -> tuple["ImageDataset", np.ndarray]:
        """A seeded random subset of ``size`` images (all when None), in index order.

        Returns the subset and the original indices, which seed per-image corruptions.
        """
        if size is None or size >= len(self):
            indices = np.arange(len(self))
        else:
            if size <= 0:
                raise UserError(f"sample size must be positive, got {size}")
            indices = np.sort(np.random.default_rng(seed).choice(len(self), size=size, replace=False))
        return self.subset(indices), indices


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x H x W in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)


DatasetLoader = Callable[..., ImageDataset]
DATASETS: Registry[DatasetLoader] = Registry("data set")


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions)
    if array.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {array.size}")
    return array.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Optional[Path]:
    for candidate in (folder / f"{stem}.gz", folder / stem, folder / "FashionMNIST" / "raw" / f"{stem}.gz", folder / "FashionMNIST" / "raw" / stem):
        if candidate.exists():
            return candidate
    return None


def fashion_mnist_folder(data_dir: Optional[str | Path] = None, download: bool = False) -> Path:
    """The folder holding Fashion-MNIST's IDX files: ``data_dir``, Debian's package, or a download."""
    folders = [Path(data_dir)] if data_dir else [DEBIAN_FASHION_MNIST, DEFAULT_CACHE / "fashion-mnist"]
    for folder in folders:
        if _find_idx(folder, "t10k-images-idx3-ubyte"):
            return folder
    if download:
        import torchvision

        target = Path(data_dir) if data_dir else DEFAULT_CACHE / "fashion-mnist"
        torchvision.datasets.FashionMNIST(str(target), train=False, download=True)
        torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
        return target
    looked = ", ".join(str(folder) for folder in folders)
    raise UserError(
        f"Fashion-MNIST not found in {looked}; install Debian's dataset-fashion-mnist, pass --data-dir, or allow --download"
    )


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(split: str = "test", data_dir: Optional[str | Path] = None, download: bool = False) -> ImageDataset:
    """Fashion-MNIST as 32 x 32 x 3 uint8 (zero-padded, grey replicated to RGB)."""
    folder = fashion_mnist_folder(data_dir, download)
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise UserError(f"Fashion-MNIST split must be train or test, got {split!r}")
    images_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise UserError(f"Fashion-MNIST {split} files missing in {folder}")
    images = _read_idx(images_path)
    labels = _read_idx(labels_path).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels in {folder}")
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return ImageDataset("fashion_mnist", np.repeat(padded[..., None], 3, axis=3), labels, list(FASHION_MNIST_CLASSES))


@DATASETS.register("cifar10")
def load_cifar10(split: str = "test", data_dir: Optional[str | Path] = None, download: bool = False) -> ImageDataset:
    """CIFAR-10 from torchvision's layout (``cifar-10-batches-py`` under ``data_dir``)."""
    import torchvision

    root = Path(data_dir) if data_dir else DEFAULT_CACHE / "cifar10"
    if split not in ("train", "test"):
        raise UserError(f"CIFAR-10 split must be train or test, got {split!r}")
    try:
        data = torchvision.datasets.CIFAR10(str(root), train=split == "train", download=download)
    except RuntimeError as error:
        raise UserError(f"CIFAR-10 not found under {root} ({error}); pass --data-dir or allow --download") from None
    return ImageDataset("cifar10", np.asarray(data.data, dtype=np.uint8), np.asarray(data.targets, dtype=np.int64), list(data.classes))


@DATASETS.register("image_folder")
def load_image_folder(split: str = "test", data_dir: Optional[str | Path] = None, download: bool = False, image_size: int = 32) -> ImageDataset:
    """Any ``<root>/<class>/<image>`` folder, resized (shorter side) and centre-cropped to ``image_size``."""
    import torchvision
    from torchvision.transforms import CenterCrop, Compose, Resize

    if data_dir is None or not Path(data_dir).is_dir():
        raise UserError(f"image folder {data_dir} does not exist")
    transform = Compose([Resize(image_size), CenterCrop(image_size)])
    try:
        folder = torchvision.datasets.ImageFolder(str(data_dir), transform=transform)
    except (FileNotFoundError, RuntimeError) as error:
        raise UserError(f"{data_dir} is not an image folder (<class>/<image>): {error}") from None
    images = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image, _ in folder])
    labels = np.asarray(folder.targets, dtype=np.int64)
    return ImageDataset(Path(data_dir).name, images, labels, list(folder.classes))


def load_dataset(name: str, split: str = "test", data_dir: Optional[str | Path] = None, download: bool = False) -> ImageDataset:
    """Loads a registered data set by name."""
    return DATASETS.get(name)(split=split, data_dir=data_dir, download=download)


def channel_statistics(dataset: ImageDataset) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images in [0, 1], for the model's normalisation."""
    pixels = dataset.images.reshape(-1, 3).astype(np.float64) / 255
    return pixels.mean(axis=0).round(4).tolist(), pixels.std(axis=0).round(4).tolist()
