"""The geometric part of a model's preprocessing: resize, centre crop, final size.

ImageNet-C corrupts the image a model sees: the photograph resized (shorter side to 256)
and centre-cropped (224 px), *before* normalisation. A :class:`Geometry` is that step,
applied to uint8 pixels before any corruption: to a decoded file (image folders, ImageNet)
or to an in-memory uint8 array (CIFAR, Fashion-MNIST). The arithmetic is torchvision's
``Resize(int)`` and ``CenterCrop`` on PIL images, so pixels equal those of a torchvision
weights' ``transforms()`` up to the float conversion. Torch-free (Pillow and numpy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from robustbench_lift.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["INTERPOLATIONS", "Geometry", "apply_geometry", "resize_array"]

#: Interpolation names accepted by :class:`Geometry` (Pillow's resampling filters; Pillow
#: antialiases bilinear and bicubic when it downsamples, as torchvision does on PIL images).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _pair(value: int | Sequence[int] | None, what: str) -> tuple[int, int] | None:
    """``value`` as (height, width): an int n means n x n."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise UserError(f"{what} must be a positive integer or (height, width), got {value!r}")
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (1, 2):
        items = [int(item) for item in value if isinstance(item, (int, np.integer)) and not isinstance(item, bool)]
        if len(items) != len(value):
            raise UserError(f"{what} must be a positive integer or (height, width), got {value!r}")
        pair = (items[0], items[-1])
    else:
        raise UserError(f"{what} must be a positive integer or (height, width), got {value!r}")
    if min(pair) < 1:
        raise UserError(f"{what} must be positive, got {value!r}")
    return pair


@dataclass(frozen=True, init=False)
class Geometry:
    """How a decoded image becomes the pixels a model sees, in this order:

    Attributes:
        resize: shorter side resized to this many pixels, aspect ratio kept (torchvision
            ``Resize(int)``: the longer side becomes ``int(resize * long / short)``).
        crop: centre crop of (height, width) pixels after the resize (torchvision
            ``CenterCrop``; a crop larger than the image pads it with zeros).
        size: the whole image resized to exactly (height, width) last, aspect ratio not
            kept, for a model with a fixed input size on data of another size.
        interpolation: one of :data:`INTERPOLATIONS`.

    Every field None means "as decoded". Ints are accepted for square sizes.
    """

    resize: int | None
    crop: tuple[int, int] | None
    size: tuple[int, int] | None
    interpolation: str

    def __init__(
        self,
        resize: int | None = None,
        crop: int | Sequence[int] | None = None,
        size: int | Sequence[int] | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        shorter = _pair(resize, "resize")
        if shorter is not None and shorter[0] != shorter[1]:
            raise UserError(f"resize is the shorter side's length (one integer), got {resize!r}")
        if interpolation not in INTERPOLATIONS:
            raise UserError(f"unknown interpolation {interpolation!r}; known: {', '.join(INTERPOLATIONS)}")
        object.__setattr__(self, "resize", None if shorter is None else shorter[0])
        object.__setattr__(self, "crop", _pair(crop, "crop"))
        object.__setattr__(self, "size", _pair(size, "size"))
        object.__setattr__(self, "interpolation", interpolation)

    @property
    def is_identity(self) -> bool:
        """True when the geometry changes nothing (no resize, crop or size)."""
        return self.resize is None and self.crop is None and self.size is None

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the result for an image of ``height`` x ``width``."""
        if self.resize is not None:
            height, width = _resized(height, width, self.resize)
        if self.crop is not None:
            height, width = self.crop
        if self.size is not None:
            height, width = self.size
        return height, width

    def leaves_unchanged(self, height: int, width: int) -> bool:
        """True when this geometry returns an image of ``height`` x ``width`` untouched
        (e.g. resize 32 and crop 32 on 32 x 32 pixels)."""
        if self.resize is not None and _resized(height, width, self.resize) != (height, width):
            return False
        return all(pair is None or pair == (height, width) for pair in (self.crop, self.size))

    def key(self) -> tuple[Any, ...]:
        """A hashable key: two geometries with equal keys give equal pixels."""
        interpolation = None if self.resize is None and self.size is None else self.interpolation
        return (self.resize, self.crop, self.size, interpolation)

    def describe(self) -> str:
        """A short human-readable form, e.g. ``resize 256, crop 224 (bilinear)``."""
        parts = []
        if self.resize is not None:
            parts.append(f"resize {self.resize}")
        if self.crop is not None:
            parts.append(f"crop {_text(self.crop)}")
        if self.size is not None:
            parts.append(f"size {_text(self.size)}")
        if not parts:
            return "as decoded"
        return ", ".join(parts) + (
            f" ({self.interpolation})" if self.resize is not None or self.size is not None else ""
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (lists for pairs)."""
        return {
            "resize": self.resize,
            "crop": _listed(self.crop),
            "size": _listed(self.size),
            "interpolation": self.interpolation,
        }

    def apply(self, image: Image.Image) -> Image.Image:
        """This geometry applied to a PIL image."""
        from PIL import Image

        resample = getattr(Image.Resampling, self.interpolation.upper())
        if self.resize is not None:
            height, width = _resized(image.height, image.width, self.resize)
            if (height, width) != (image.height, image.width):
                image = image.resize((width, height), resample)
        if self.crop is not None:
            crop_height, crop_width = self.crop
            top = _crop_offset(image.height, crop_height)
            left = _crop_offset(image.width, crop_width)
            # Pillow fills the part of the box outside the image with zeros, as CenterCrop pads.
            image = image.crop((left, top, left + crop_width, top + crop_height))
        if self.size is not None and self.size != (image.height, image.width):
            image = image.resize((self.size[1], self.size[0]), resample)
        return image


def _text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _listed(pair: tuple[int, int] | None) -> list[int] | None:
    return None if pair is None else list(pair)


def _resized(height: int, width: int, shorter: int) -> tuple[int, int]:
    """torchvision's size for ``Resize(shorter)``: the longer side is truncated, not rounded."""
    if width <= height:
        return int(shorter * height / width), shorter
    return shorter, int(shorter * width / height)


def _crop_offset(length: int, crop: int) -> int:
    """torchvision's ``CenterCrop`` offset along one axis (negative when it pads)."""
    if crop > length:
        return -((crop - length) // 2)
    return int(round((length - crop) / 2.0))


def apply_geometry(image: Image.Image, geometry: Geometry | None) -> np.ndarray:
    """A PIL image (any mode) as uint8 H x W x 3 RGB after ``geometry`` (None: as is)."""
    image = image.convert("RGB")  # some ImageNet files are greyscale or CMYK
    if geometry is not None:
        image = geometry.apply(image)
    return np.asarray(image, dtype=np.uint8)


def resize_array(images: np.ndarray, geometry: Geometry) -> np.ndarray:
    """uint8 N x H x W x 3 ``images`` after ``geometry``, image by image (for in-memory data sets)."""
    from PIL import Image

    if images.shape[0] == 0 or geometry.leaves_unchanged(images.shape[1], images.shape[2]):
        return images
    height, width = geometry.output_size(images.shape[1], images.shape[2])
    out = np.empty((images.shape[0], height, width, 3), dtype=np.uint8)
    for position, pixels in enumerate(images):
        out[position] = apply_geometry(Image.fromarray(np.ascontiguousarray(pixels)), geometry)
    return out
