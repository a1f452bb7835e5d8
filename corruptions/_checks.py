"""Argument checks shared by the corruption and perturbation generators (and reused by
``robustbench_lift``): seeds, per-image indices and uint8 image arrays.

Each raises a one-line :class:`~corruptions.errors.CorruptionError`.
"""

from __future__ import annotations

import numpy as np

from corruptions.errors import CorruptionError

__all__ = ["check_index", "check_indices", "check_seed", "check_uint8_images"]


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int, or CorruptionError unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CorruptionError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_index(index: object) -> int:
    """One image's data-set index as an int (a non-negative integer)."""
    return check_seed(index, what="index")


def check_indices(
    indices: np.ndarray | None, count: int | None = None, *, limit: int | None = None, where: str = ""
) -> np.ndarray:
    """Per-image indices as int64, or ``arange`` when None.

    Args:
        indices: a 1-D array of non-negative integers, or None.
        count: the number of images the indices belong to (their required length), or None.
        limit: an exclusive upper bound (the size of the set they index), or None.
        where: what ``limit`` counts, for the message.

    Returns:
        The indices as an int64 array.
    """
    if indices is None:
        return np.arange(count if count is not None else (limit or 0), dtype=np.int64)
    indices = np.asarray(indices)
    if count is not None and indices.shape != (count,):
        raise CorruptionError(f"indices must have shape ({count},) to match the images, got {indices.shape}")
    if limit is None:
        if indices.size and (not np.issubdtype(indices.dtype, np.integer) or indices.min() < 0):
            raise CorruptionError("indices must be non-negative integers")
        return indices.astype(np.int64)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise CorruptionError(
            f"indices must be a 1-D array of integers, got shape {indices.shape} and dtype {indices.dtype}"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= limit):
        raise CorruptionError(
            f"indices must lie in 0..{limit - 1} ({where} holds {limit} per condition), "
            f"got {indices.min()}..{indices.max()}"
        )
    return indices.astype(np.int64)


def check_uint8_images(images: object, batch: bool) -> np.ndarray:
    """One image (HxWx3) or a batch (NxHxWx3) of uint8 pixels, else a one-line CorruptionError."""
    what = "images" if batch else "image"
    expected = "NxHxWx3" if batch else "HxWx3"
    if not isinstance(images, np.ndarray):
        raise CorruptionError(f"{what} must be a numpy array ({expected} uint8), got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise CorruptionError(f"{what} must have dtype uint8, got {images.dtype}")
    if images.ndim != (4 if batch else 3) or images.shape[-1] != 3 or min(images.shape[-3:-1], default=0) < 1:
        raise CorruptionError(f"{what} must have shape {expected}, got {images.shape}")
    return images
