"""SHA-256 digests of numpy arrays: the one copy every module uses.

Array digests feed the run's config hash, the corruption cache key and the manifest of a
written corruption set, so their byte layout is fixed: changing it would invalidate
stored runs, caches and sets.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["array_digest"]


def array_digest(*arrays: np.ndarray, with_dtype: bool = True) -> str:
    """Hex SHA-256 over each array's header (dtype and shape) and C-ordered bytes.

    Args:
        arrays: the arrays, in order.
        with_dtype: include the dtype in each header (the corruption-set manifest was
            defined without it and keeps that layout).

    Returns:
        64 hex characters.
    """
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        header = f"{array.dtype}{array.shape}" if with_dtype else str(array.shape)
        digest.update(header.encode())
        digest.update(array.data.cast("B"))
    return digest.hexdigest()
