"""Noise corruptions (gaussian, shot, impulse, speckle): one draw per pixel, elementwise math."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import special

from corruptions.torch_engine.base import Draws, TorchCorruption, to_pixels, unit

__all__ = ["gaussian_noise", "impulse_noise", "poisson_counts", "shot_noise", "speckle_noise"]


def _normal(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
    return {"normal": torch.randn(image.shape, generator=generator, device=image.device)}


def gaussian_noise(sigmas: Sequence[float]) -> TorchCorruption:
    """Additive Gaussian noise ``clip(x + N(0, sigma))``.

    Args:
        sigmas: Noise standard deviation per severity (fraction of full scale).

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        return to_pixels(unit(x) + draws["normal"] * sigmas[severity - 1])

    return TorchCorruption(apply, _normal)


def speckle_noise(sigmas: Sequence[float]) -> TorchCorruption:
    """Multiplicative Gaussian noise ``clip(x + x * N(0, sigma))``.

    Args:
        sigmas: Noise standard deviation per severity.

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        values = unit(x)
        return to_pixels(values + values * draws["normal"] * sigmas[severity - 1])

    return TorchCorruption(apply, _normal)


@functools.lru_cache(maxsize=32)
def _poisson_alias_tables(photons: float, device: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Walker alias tables of Poisson(level / 255 * photons) for the 256 pixel levels.

    Row ``level`` holds ``width`` columns: (acceptance probability, alias count). One uniform
    ``u`` samples a count exactly: column ``j = floor(u * width)``, accepted when the
    fraction ``u * width - j`` is below the column's probability, else its alias.
    """
    rates = np.arange(256, dtype=np.float64) / 255 * photons
    width = int(photons + 12 * math.sqrt(photons) + 30)  # tail beyond: probability < 1e-25
    counts = np.arange(width)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = counts[None, :] * np.log(rates[:, None]) - rates[:, None] - special.gammaln(counts + 1)[None, :]
    pmf = np.exp(log_pmf)
    pmf[0] = 0.0
    pmf[0, 0] = 1.0  # level 0: rate 0, always 0 photons
    pmf /= pmf.sum(1, keepdims=True)
    probability = np.ones((256, width))
    alias = np.tile(counts, (256, 1))
    for level in range(256):
        # Vose's method on one row.
        scaled = pmf[level] * width
        small = [column for column in range(width) if scaled[column] < 1.0]
        large = [column for column in range(width) if scaled[column] >= 1.0]
        while small and large:
            low, high = small.pop(), large.pop()
            probability[level, low] = scaled[low]
            alias[level, low] = high
            scaled[high] = scaled[high] + scaled[low] - 1.0
            (small if scaled[high] < 1.0 else large).append(high)
    return (
        torch.as_tensor(probability.reshape(-1), device=device),
        torch.as_tensor(alias.reshape(-1), dtype=torch.float32, device=device),
        width,
    )


def poisson_counts(levels: torch.Tensor, photons: float, uniform: torch.Tensor) -> torch.Tensor:
    """Poisson(level / 255 * photons) samples from one float64 uniform each (alias method).

    Args:
        levels: 0..255 integer pixel values (any float or integer dtype).
        photons: Photons per unit intensity.
        uniform: float64 uniforms in [0, 1), shape of ``levels``.

    Returns:
        float32 counts, shape of ``levels``.
    """
    probability, alias, width = _poisson_alias_tables(float(photons), str(levels.device))
    scaled = uniform * width
    column = torch.floor(scaled)
    index = levels.to(torch.long) * width + column.to(torch.long)
    accept = (scaled - column) < probability[index]
    return torch.where(accept, column.to(torch.float32), alias[index])


def shot_noise(photons: Sequence[float]) -> TorchCorruption:
    """Poisson noise ``clip(Poisson(x * photons) / photons)``.

    The counts come from one uniform per value through :func:`poisson_counts` (the 8-bit
    input has 256 possible rates, so exact per-rate alias tables replace a Poisson
    sampler: several times faster on the CPU, the same distribution).

    Args:
        photons: Photons per unit intensity per severity.

    Returns:
        The corruption.
    """

    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        return {"uniform": torch.rand(image.shape, generator=generator, device=image.device, dtype=torch.float64)}

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        scale = photons[severity - 1]
        return to_pixels(poisson_counts(x, scale, draws["uniform"]) / float(scale))

    return TorchCorruption(apply, draw)


def impulse_noise(amounts: Sequence[float]) -> TorchCorruption:
    """Salt-and-pepper noise on channel values, as ``skimage.util.random_noise(mode="s&p")``:
    each value is replaced with probability ``amount``, by 1 or 0 with equal odds.

    One uniform draw per value decides both (below ``amount / 2``: salt; below ``amount``:
    pepper), which has the distribution of skimage's two Bernoulli draws.

    Args:
        amounts: Replaced fraction per severity.

    Returns:
        The corruption.
    """

    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        return {"uniform": torch.rand(image.shape, generator=generator, device=image.device)}

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        amount = amounts[severity - 1]
        uniform = draws["uniform"]
        values = unit(x)
        values = torch.where(uniform < amount, torch.zeros_like(values), values)
        values = torch.where(uniform < amount / 2, torch.ones_like(values), values)
        return to_pixels(values)

    return TorchCorruption(apply, draw)
