"""Test images shared by the corruption benchmarks: natural photographs and Fashion-MNIST.

* Natural images: scikit-image's sample photographs (``skimage.data``), centre-cropped to
  a square and resized (anti-aliased) to the profile's side.
* Fashion-MNIST test images as the project's data loader gives them (28 px zero-padded
  to 32, grey replicated to RGB), nearest-neighbour enlarged for the 224-px profile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: skimage.data photographs used, in order (all ship with scikit-image, no download).
PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "hubble_deep_field", "retina")


def natural_images(count: int, side: int) -> np.ndarray:
    """``count`` RGB photographs as ``count x side x side x 3`` uint8 (the set repeats past 8).

    Args:
        count: Number of images.
        side: Output side in pixels.

    Returns:
        uint8 array.
    """
    from skimage import data, transform

    photographs = []
    for name in PHOTOGRAPHS[: min(count, len(PHOTOGRAPHS))]:
        image = getattr(data, name)()
        height, width = image.shape[:2]
        square = min(height, width)
        top, left = (height - square) // 2, (width - square) // 2
        crop = image[top : top + square, left : left + square, :3]
        resized = transform.resize(crop, (side, side), anti_aliasing=True, preserve_range=True)
        photographs.append(np.clip(np.rint(resized), 0, 255).astype(np.uint8))
    return np.stack([photographs[index % len(photographs)] for index in range(count)])


def _load_dataset():
    from robustbench_lift.data.datasets import load_dataset

    return load_dataset


def fashion_mnist_images(count: int, side: int = 32, data_dir: str | Path | None = None) -> np.ndarray:
    """The first ``count`` Fashion-MNIST test images, ``count x side x side x 3`` uint8.

    Args:
        count: Number of images.
        side: 32, or a multiple of 32 (nearest-neighbour enlargement).
        data_dir: Folder with the IDX files (default: the loader's search path).

    Returns:
        uint8 array.
    """
    images = _load_dataset()("fashion_mnist", "test", data_dir=data_dir).images[:count]
    factor, remainder = divmod(side, images.shape[1])
    if remainder:
        raise ValueError(f"side must be a multiple of {images.shape[1]}, got {side}")
    if factor > 1:
        images = np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)
    return np.ascontiguousarray(images)


def available_fashion_mnist(data_dir: str | Path | None = None) -> bool:
    """True when the data loader finds Fashion-MNIST (without downloading)."""
    from robustbench_lift.errors import UserError

    try:
        fashion_mnist_images(1, 32, data_dir)
    except (UserError, OSError):
        return False
    return True
