"""The unit the torch engine registers: a corruption split into its random draw and its batched math."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["ApplyFunction", "DrawFunction", "Draws", "TorchCorruption", "to_pixels", "unit"]

#: Per-image random draws, stacked over the batch by the engine (leading axis ``N``).
Draws = dict[str, torch.Tensor]
#: ``draw(generator, severity, image) -> {name: tensor}`` for one ``3 x H x W`` image
#: (float32, 0..255, on the generator's device); every random number comes from ``generator``.
DrawFunction = Callable[[torch.Generator, int, torch.Tensor], Draws]
#: ``apply(images, severity, draws) -> corrupted`` for an ``N x 3 x H x W`` float32 batch of
#: 0..255 values; returns 0..255 floats (truncated to uint8 by the engine, as the references'
#: ``np.uint8(...)``) or uint8.
ApplyFunction = Callable[[torch.Tensor, int, Draws], torch.Tensor]


@dataclass(frozen=True)
class TorchCorruption:
    """One corruption of one severity profile.

    Attributes:
        apply: The batched computation (see :data:`ApplyFunction`).
        draw: The per-image random draw (see :data:`DrawFunction`); None for deterministic
            corruptions, whose output depends on the pixels alone.
        departure: How the computation departs from the reference path beyond float rounding
            (empty when it follows it step by step).
    """

    apply: ApplyFunction
    draw: DrawFunction | None = None
    departure: str = ""

    @property
    def is_random(self) -> bool:
        """True when the output depends on random draws (and so on the seed and image index)."""
        return self.draw is not None


def unit(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """0..255 pixel values as [0, 1] floats of ``dtype`` (the references' ``x / 255.``)."""
    return x.to(dtype) / 255.0


def to_pixels(unit_values: torch.Tensor) -> torch.Tensor:
    """The references' closing ``np.clip(x, 0, 1) * 255``, in float32."""
    return (unit_values.clamp(0, 1) * 255).to(torch.float32)
