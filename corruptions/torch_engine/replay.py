"""Run the reference path on the torch engine's own random draws (a validation tool).

A random corruption can only be compared with its reference in distribution, unless both
use the same random numbers. This module feeds one image's torch draws to the reference
function (the ``cifar`` reimplementation through a stand-in for its ``numpy`` generator,
``imagecorruptions`` through stand-ins for the ``numpy.random`` functions it calls), so
that any remaining difference is the computation's. Used by
``benchmarks/corruption_fidelity.py`` and ``tests/test_torch_engine.py``.

Not replayable: impulse_noise (scikit-image builds its own generator from the one it is
given) and ``imagenet`` glass_blur (numba's generator, seeded inside imagecorruptions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from corruptions.cifar_profile import CIFAR_PROFILE
from corruptions.torch_engine.base import Draws
from corruptions.torch_engine.noise import poisson_counts
from corruptions.torch_engine.weather import frost_crop

__all__ = ["REPLAYABLE", "replay_reference"]

# One queued value: ("standard", z) scaled as loc + scale * z, ("unit", u) scaled as
# low + (high - low) * u, or ("value", v) returned as it is.
_Entry = tuple[str, np.ndarray]


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _hwc(tensor: Any) -> np.ndarray:
    # A 3 x H x W per-pixel draw in the reference's H x W x 3 layout.
    return np.moveaxis(_array(tensor), 0, -1)


def _hwc_tensor(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().permute(1, 2, 0)


def _tables(profile: str) -> dict[str, tuple]:
    from corruptions.cifar_profile import CIFAR_SEVERITIES
    from corruptions.imagenet_profile import IMAGENET_SEVERITIES

    return CIFAR_SEVERITIES if profile == "cifar" else IMAGENET_SEVERITIES


def _queue(corruption: str, profile: str, severity: int, image: np.ndarray, draws: Draws) -> list[_Entry]:
    """The values the reference draws, in its order, for one image's torch draws."""
    if corruption in ("gaussian_noise", "speckle_noise"):
        return [("standard", _hwc(draws["normal"]))]
    if corruption == "shot_noise":
        photons = _tables(profile)["shot_noise"][severity - 1]
        counts = poisson_counts(torch.as_tensor(image), photons, _hwc_tensor(draws["uniform"]))
        return [("value", counts.numpy().astype(np.int64))]
    if corruption == "glass_blur":
        offsets = _array(draws["offsets"])
        return [("value", offsets[iteration]) for iteration in range(offsets.shape[0])]
    if corruption == "motion_blur":
        return [("value", np.float64(_array(draws["angle"])))]
    if corruption == "snow":
        return [("standard", _array(draws["normal"])), ("value", np.float64(_array(draws["angle"])))]
    if corruption == "frost":
        height, width = image.shape[:2]
        index, offset = frost_crop(draws["uniform"].detach().cpu().view(1, 3), profile, height, width)
        return [("value", np.int64(index[0])), ("value", np.int64(offset[0, 0])), ("value", np.int64(offset[0, 1]))]
    if corruption == "fog":
        return [("stream", _array(draws["uniform"]))]
    if corruption == "elastic_transform":
        fields = _array(draws["fields"])
        entries = [("unit", fields[0]), ("unit", fields[1])]
        if profile == "cifar":
            entries.insert(0, ("unit", _array(draws["jitter"])))
        return entries
    if corruption == "spatter":
        return [("standard", _array(draws["normal"]))]
    raise ValueError(f"{corruption} has no random draws to replay")


class _Replay:
    """Hands out queued values in order, shaped and scaled as numpy's generators would."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = list(entries)
        self._stream: np.ndarray | None = None
        self._used = 0

    def _next(self, size: Any) -> _Entry:
        if self._entries and self._entries[0][0] == "stream":
            self._stream = self._entries.pop(0)[1].reshape(-1)
        if self._stream is not None:
            count = int(np.prod(size))
            values = self._stream[self._used : self._used + count].reshape(size)
            self._used += count
            return "unit", values
        if not self._entries:
            raise RuntimeError("the reference drew more random numbers than the torch engine")
        kind, value = self._entries.pop(0)
        if size is not None and np.shape(value) != tuple(np.atleast_1d(size)):
            raise RuntimeError(f"the reference drew shape {size}, the torch engine {np.shape(value)}")
        return kind, value

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
        kind, value = self._next(size)
        return loc + scale * value if kind == "standard" else value

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
        kind, value = self._next(size)
        return low + (high - low) * value if kind == "unit" else value

    def integers(self, low: int, high: int | None = None, size: Any = None) -> Any:
        return self._next(size)[1]

    randint = integers

    def poisson(self, lam: Any = 1.0, size: Any = None) -> Any:
        return self._next(np.shape(lam))[1]

    def random(self, size: Any = None) -> Any:
        return self._next(size)[1]

    def exhausted(self) -> bool:
        return not self._entries


@contextlib.contextmanager
def _patched_numpy_random(replay: _Replay) -> Iterator[None]:
    names = ("normal", "uniform", "randint", "poisson")
    saved = {name: getattr(np.random, name) for name in names}
    try:
        for name in names:
            setattr(np.random, name, getattr(replay, name))
        yield
    finally:
        for name, function in saved.items():
            setattr(np.random, name, function)


#: (profile, corruption) pairs this module can replay.
REPLAYABLE: frozenset[tuple[str, str]] = frozenset(
    {("cifar", name) for name in (
        "gaussian_noise", "shot_noise", "speckle_noise", "glass_blur", "motion_blur",
        "snow", "frost", "fog", "elastic_transform", "spatter",
    )}
    | {("imagenet", name) for name in (
        "gaussian_noise", "shot_noise", "speckle_noise", "motion_blur", "snow", "frost", "fog",
        "elastic_transform", "spatter",
    )}
)  # fmt: skip


def replay_reference(image: np.ndarray, corruption: str, severity: int, profile: str, draws: Draws) -> np.ndarray:
    """The reference's output for ``image`` when its random numbers are ``draws``.

    Args:
        image: ``H x W x 3`` uint8.
        corruption: A random corruption in :data:`REPLAYABLE` for ``profile``.
        severity: 1..5.
        profile: ``cifar`` or ``imagenet``.
        draws: One image's draws from the torch engine (each entry of
            :func:`corruptions.torch_engine.draw_batch`'s result at one position).

    Returns:
        ``H x W x 3`` uint8, truncated as the reference engine does.
    """
    if (profile, corruption) not in REPLAYABLE:
        raise ValueError(f"{profile} {corruption} cannot be replayed")
    replay = _Replay(_queue(corruption, profile, severity, image, draws))
    if profile == "cifar":
        result = np.asarray(CIFAR_PROFILE.get(corruption)(image, severity, replay))  # type: ignore[arg-type]
    else:
        import imagecorruptions

        with _patched_numpy_random(replay):
            result = np.asarray(imagecorruptions.corrupt(image, severity=severity, corruption_name=corruption))
    if not replay.exhausted():
        raise RuntimeError("the reference drew fewer random numbers than the torch engine")
    return result if result.dtype == np.uint8 else np.clip(result, 0, 255).astype(np.uint8)
