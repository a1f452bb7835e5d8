"""Pixel conversions between uint8 images and floats, shared by every generator.

The reference generators convert back to 8 bits in two ways: ``np.uint8(255 * x)``
truncates, while image libraries (ImageMagick, PIL, OpenCV resampling) round. Each
generator says which one it reproduces.
"""

from __future__ import annotations

import numpy as np

__all__ = ["round_to_uint8", "truncate_to_uint8", "unit_float"]


def unit_float(image: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """uint8 pixels -> floats in [0, 1] of ``dtype``."""
    return image.astype(dtype) / dtype(255.0)


def truncate_to_uint8(unit_values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (clipped) -> uint8 by truncation, as ``np.uint8(255 * x)`` does."""
    return (np.clip(unit_values, 0, 1) * 255).astype(np.uint8)


def round_to_uint8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 255] (clipped) -> uint8 by rounding, as 8-bit image libraries do."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
