"""Corrupt a batch of image tensors on their own device, deterministically.

Determinism contract (parallel to :mod:`corruptions.engine`): image ``i`` of a batch
depends only on its pixels and on (``indices[i]``, corruption, severity, seed, profile),
and on the device type: its random draws come from a torch generator on the images'
device seeded from (seed, index, corruption, severity) (:func:`image_seeds`), so the bytes
are identical for any batch size or split on the same kind of device. CPU and CUDA
generators give different streams, so bytes differ between device types.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from corruptions._checks import check_indices, check_seed
from corruptions.errors import CorruptionError
from corruptions.imagenet_profile import MINIMUM_SIDE
from corruptions.registry import check_severity, corruption_id
from corruptions.torch_engine.base import Draws, TorchCorruption
from corruptions.torch_engine.ops import floor_uint8
from corruptions.torch_engine.profiles import TORCH_PROFILES

__all__ = ["corrupt_batch", "draw_batch", "image_seeds", "is_random", "torch_corruption"]

_MINIMUM_SIDE = {"cifar": 1, "imagenet": MINIMUM_SIDE}


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that mixes every input bit into every output bit."""
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def image_seeds(seed: int, indices: Sequence[int] | np.ndarray, corruption: str, severity: int) -> list[int]:
    """The 64-bit torch seed of each image: a pure function of (seed, index, corruption, severity).

    ``SeedSequence([seed, corruption id, severity])`` gives one key per call; each index is
    mixed in with SplitMix64 (vectorised; distinct indices give distinct seeds), since a
    SeedSequence per image would cost more than many corruptions do.

    Args:
        seed: Run seed (non-negative).
        indices: Global image indices (non-negative).
        corruption: Corruption name.
        severity: 1..5.

    Returns:
        One seed per index.
    """
    key = np.random.SeedSequence([seed, corruption_id(corruption), severity]).generate_state(1, np.uint64)[0]
    with np.errstate(over="ignore"):
        mixed = _splitmix64(np.asarray(indices, dtype=np.uint64) + _GOLDEN)
        return [int(value) for value in _splitmix64(mixed ^ key)]


def torch_corruption(corruption: str, profile: str = "cifar") -> TorchCorruption:
    """The registered torch implementation of one corruption in one profile.

    Args:
        corruption: Corruption name.
        profile: ``cifar`` or ``imagenet``.

    Returns:
        The :class:`~corruptions.torch_engine.base.TorchCorruption`.
    """
    functions = TORCH_PROFILES.get(profile)
    corruption_id(corruption)  # unknown names: the package's one-line error listing the names
    return functions.get(corruption)


def is_random(corruption: str, profile: str = "cifar") -> bool:
    """True when the corruption draws random numbers (output depends on seed and index)."""
    return torch_corruption(corruption, profile).is_random


def _check_images(images: object, profile: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise CorruptionError(f"images must be a torch tensor (N x 3 x H x W), got {type(images).__name__}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise CorruptionError(f"images must have dtype uint8 or a floating dtype, got {images.dtype}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise CorruptionError(f"images must have shape N x 3 x H x W, got {tuple(images.shape)}")
    minimum = _MINIMUM_SIDE[profile]
    if images.shape[2] < minimum or images.shape[3] < minimum:
        raise CorruptionError(
            f"the {profile!r} profile needs images of at least {minimum}x{minimum} px, "
            f"got {images.shape[2]}x{images.shape[3]}"
        )
    if images.is_floating_point() and images.numel():
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            raise CorruptionError(f"floating-point images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return images


def _indices(indices: object, count: int) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    return check_indices(None if indices is None else np.asarray(indices), count)


def _draw(corruption: TorchCorruption, pixels: torch.Tensor, severity: int, seeds: list[int]) -> Draws:
    generator = torch.Generator(device=pixels.device)
    per_image: list[Draws] = []
    for image, image_seed in zip(pixels, seeds):
        generator.manual_seed(image_seed)
        per_image.append(corruption.draw(generator, severity, image))  # type: ignore[misc]
    return {key: torch.stack([draws[key] for draws in per_image]) for key in per_image[0]}


def _pixels(images: torch.Tensor) -> torch.Tensor:
    # float32 0..255 integer levels: the corruptions are defined on 8-bit images.
    if images.dtype == torch.uint8:
        return images.to(torch.float32)
    return torch.round(images.to(torch.float32) * 255)


def _checked(
    images: object, corruption: str, severity: object, profile: str, seed: object, indices: object
) -> tuple[TorchCorruption, torch.Tensor, int, int, np.ndarray]:
    implementation = torch_corruption(corruption, profile)
    checked_severity = check_severity(corruption, severity)
    checked_seed = check_seed(seed)
    checked_images = _check_images(images, profile)
    return implementation, checked_images, checked_severity, checked_seed, _indices(indices, checked_images.shape[0])


def draw_batch(
    images: torch.Tensor,
    corruption: str,
    severity: int,
    *,
    profile: str = "cifar",
    seed: int = 0,
    indices: torch.Tensor | np.ndarray | Sequence[int] | None = None,
) -> Draws:
    """The random draws :func:`corrupt_batch` makes for these arguments (empty for deterministic
    corruptions), each a tensor with a leading batch axis, on the images' device.

    Args:
        images: As for :func:`corrupt_batch`.
        corruption: Corruption name.
        severity: 1..5.
        profile: ``cifar`` or ``imagenet``.
        seed: Non-negative run seed.
        indices: Global image indices (default ``0..N-1``).

    Returns:
        ``{name: N x ... tensor}``.
    """
    implementation, images, severity, seed, index_array = _checked(images, corruption, severity, profile, seed, indices)
    if implementation.draw is None or images.shape[0] == 0:
        return {}
    return _draw(implementation, _pixels(images), severity, image_seeds(seed, index_array, corruption, severity))


def corrupt_batch(
    images: torch.Tensor,
    corruption: str,
    severity: int,
    *,
    profile: str = "cifar",
    seed: int = 0,
    indices: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    draws: Draws | None = None,
) -> torch.Tensor:
    """Corrupt an ``N x 3 x H x W`` batch on its device with the torch implementation.

    Args:
        images: uint8 pixels, or floats in [0, 1] (rounded to 8 bits first: the corruptions
            are defined on 8-bit images).
        corruption: One of the 19 names (:func:`corruptions.corruption_names`).
        severity: 1..5.
        profile: ``cifar`` (32-px parameters) or ``imagenet`` (224-px parameters).
        seed: Non-negative run seed.
        indices: Global dataset index of each image (default ``0..N-1``); image ``i``'s random
            draws depend on ``indices[i]``, never on its position in the batch.
        draws: Random draws to use instead of drawing (from :func:`draw_batch`; for
            validation against the reference with the same random numbers).

    Returns:
        The corrupted batch on the same device with the same shape and dtype: uint8 for
        uint8 input, else 8-bit levels divided by 255.

    Raises:
        CorruptionError: Unknown corruption or profile, bad severity, seed, indices or images.
    """
    implementation, images, severity, seed, index_array = _checked(images, corruption, severity, profile, seed, indices)
    if images.shape[0] == 0:
        return images.clone()
    pixels = _pixels(images)
    if draws is None:
        draws = {}
        if implementation.draw is not None:
            draws = _draw(implementation, pixels, severity, image_seeds(seed, index_array, corruption, severity))
    with torch.no_grad():
        result = implementation.apply(pixels, severity, draws)
    result = result if result.dtype == torch.uint8 else floor_uint8(result)
    if images.dtype == torch.uint8:
        return result
    return result.to(images.dtype) / 255
