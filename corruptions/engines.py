"""The two corruption engines behind one call: ``numpy`` (the reference) and ``torch``.

``numpy``  :func:`corruptions.corrupt_many`: the ``cifar`` reimplementation and
           ``imagecorruptions``, per image in worker processes; the reference, and the
           bytes of the published generators' random streams. Returns ``N x H x W x 3``
           uint8 arrays.
``torch``  :mod:`corruptions.torch_engine`: the same corruptions and severity tables as
           batched tensor operations on ``device``. Returns ``N x 3 x H x W`` uint8
           tensors on that device (no copy back to host memory). Deterministic
           corruptions match the reference to float rounding; random ones match it in
           distribution, and their bytes depend on the device type (CPU and CUDA
           generators differ), see ``docs/corruptions.md``.

Both are deterministic per image: image ``i``'s pixels depend on its own pixels and
(``indices[i]``, corruption, severity, seed, profile), never on the batch or worker count.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from corruptions._checks import check_indices, check_uint8_images
from corruptions._registry import Registry
from corruptions.registry import check_severity

if TYPE_CHECKING:
    import torch

__all__ = ["ENGINES", "ENGINE_NAMES", "Engine", "generate", "to_nhwc_array"]

Condition = tuple[str, int]
#: ``generate(images, conditions, profile=, seed=, indices=, workers=, device=, progress=)``.
GenerateFunction = Callable[..., dict[Condition, Any]]

# Input pixels per torch call: bounds the float32 intermediates (a few times this) while
# keeping batches large enough for the device to be busy.
_TORCH_CHUNK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Engine:
    """One way of generating corrupted images.

    Attributes:
        generate: the generation function (see :func:`generate`).
        device_dependent: True when random corruptions' bytes depend on the device type.
        description: one line for listings and documentation.
    """

    generate: GenerateFunction
    device_dependent: bool
    description: str


def _numpy_generate(
    images: np.ndarray,
    conditions: Sequence[Condition],
    *,
    profile: str,
    seed: int,
    indices: np.ndarray | None,
    workers: int,
    device: str,
    progress: bool,
) -> dict[Condition, np.ndarray]:
    import corruptions

    if not isinstance(images, np.ndarray):  # a tensor (N x 3 x H x W) from the torch side
        images = to_nhwc_array(images)
    return corruptions.corrupt_many(
        images, conditions, profile=profile, seed=seed, indices=indices, workers=workers, progress=progress
    )


def _torch_generate(
    images: np.ndarray | torch.Tensor,
    conditions: Sequence[Condition],
    *,
    profile: str,
    seed: int,
    indices: np.ndarray | None,
    workers: int,
    device: str,
    progress: bool,
) -> dict[Condition, torch.Tensor]:
    import torch
    from tqdm import tqdm

    from corruptions.torch_engine import corrupt_batch

    if isinstance(images, np.ndarray):
        # Copy the compact NHWC bytes once, then lay them out as NCHW on the device.
        array = np.ascontiguousarray(check_uint8_images(images, batch=True))
        if not array.flags.writeable:  # shared read-only (Ray's object store): torch warns
            array = array.copy()
        pixels = torch.from_numpy(array).to(device)
        pixels = pixels.permute(0, 3, 1, 2).contiguous()
    else:
        pixels = images.to(device)
    count = pixels.shape[0]
    index_array = check_indices(indices, count)
    unique = list(
        dict.fromkeys((corruption, check_severity(corruption, severity)) for corruption, severity in conditions)
    )
    chunk = max(1, _TORCH_CHUNK_BYTES // max(1, int(np.prod(pixels.shape[1:]))))
    results: dict[Condition, torch.Tensor] = {}
    with tqdm(
        total=count * len(unique),
        desc=f"corrupting ({profile}, torch {pixels.device.type})",
        unit="image",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        for corruption, severity in unique:
            output = torch.empty_like(pixels)
            for start in range(0, count, chunk):
                stop = min(start + chunk, count)
                output[start:stop] = corrupt_batch(
                    pixels[start:stop],
                    corruption,
                    severity,
                    profile=profile,
                    seed=seed,
                    indices=index_array[start:stop],
                )
                bar.update(stop - start)
            results[(corruption, severity)] = output
    return results


#: Engine name -> :class:`Engine`; ``numpy`` is the reference and the default everywhere.
ENGINES: Registry[Engine] = Registry("corruption engine")
ENGINES.add(
    "numpy",
    Engine(_numpy_generate, False, "the reference: numpy/OpenCV (cifar) and imagecorruptions (imagenet), per image"),
)
ENGINES.add(
    "torch",
    Engine(_torch_generate, True, "batched torch tensors on the evaluation device; close to the reference"),
)
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES.names())


def generate(
    engine: str,
    images: np.ndarray | torch.Tensor,
    conditions: Sequence[Condition],
    *,
    profile: str = "cifar",
    seed: int = 0,
    indices: np.ndarray | None = None,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = False,
) -> dict[Condition, Any]:
    """Corrupt a batch under every (corruption, severity) condition with one engine.

    Args:
        engine: ``numpy`` or ``torch`` (:data:`ENGINE_NAMES`).
        images: uint8 ``N x H x W x 3`` array (or, for ``torch``, an ``N x 3 x H x W`` uint8 tensor).
        conditions: (corruption, severity) pairs; duplicates are computed once.
        profile: ``cifar`` or ``imagenet``.
        seed: non-negative run seed.
        indices: each image's index in the full data set (default ``0..N-1``).
        workers: worker processes of the ``numpy`` engine (the torch engine uses torch's threads).
        device: where the ``torch`` engine computes (ignored by ``numpy``).
        progress: show a progress bar on stderr.

    Returns:
        ``{(corruption, severity): images}``: uint8 ``N x H x W x 3`` arrays from ``numpy``,
        uint8 ``N x 3 x H x W`` tensors on ``device`` from ``torch``.

    Raises:
        CorruptionError: unknown engine, corruption or profile, bad severity, seed or images.
    """
    return ENGINES.get(engine).generate(
        images,
        conditions,
        profile=profile,
        seed=seed,
        indices=indices,
        workers=workers,
        device=device,
        progress=progress,
    )


def to_nhwc_array(images: Any) -> np.ndarray:
    """Engine output as a uint8 ``N x H x W x 3`` host array (tensors are copied from their device)."""
    if isinstance(images, np.ndarray):
        return images
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())
