"""A batched torch implementation of the 19 corruptions in both severity profiles.

The numpy path (:mod:`corruptions.engine`: the ``cifar`` reimplementation and
``imagecorruptions``) stays the reference; this engine computes the same corruptions with
the same severity tables as tensor operations on ``N x 3 x H x W`` batches, on the CPU or
a GPU, wherever the images already are. Each corruption is a
:class:`~corruptions.torch_engine.base.TorchCorruption`: a per-image random draw (None for
deterministic corruptions) and a batched computation. Deterministic corruptions follow the
reference step by step (differences are float rounding at 8-bit truncation, measured by
``benchmarks/corruption_fidelity.py``); random ones draw from torch generators, so they
match the reference in distribution, not in bytes.

Usage::

    from corruptions.torch_engine import corrupt_batch
    corrupted = corrupt_batch(images_uint8_nchw, "fog", 3, profile="imagenet", seed=0, indices=indices)
"""

from corruptions.torch_engine.base import TorchCorruption
from corruptions.torch_engine.engine import corrupt_batch, draw_batch, image_seeds, is_random, torch_corruption
from corruptions.torch_engine.profiles import TORCH_PROFILES

__all__ = [
    "TORCH_PROFILES",
    "TorchCorruption",
    "corrupt_batch",
    "draw_batch",
    "image_seeds",
    "is_random",
    "torch_corruption",
]
