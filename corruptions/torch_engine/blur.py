"""Blur corruptions (gaussian, glass, defocus, motion, zoom) as batched convolutions and gathers."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from corruptions.cifar_profile import _disk_kernel
from corruptions.torch_engine import ops
from corruptions.torch_engine.base import DrawFunction, Draws, TorchCorruption, to_pixels, unit

__all__ = [
    "copy_pass",
    "defocus_blur",
    "gaussian_blur",
    "glass_blur",
    "imagemagick_to_uint8",
    "motion_blur",
    "motion_weights",
    "zoom_blur",
]


def gaussian_blur(sigmas: Sequence[float]) -> TorchCorruption:
    """Gaussian blur (skimage/scipy: border ``nearest``, 4 standard deviations).

    Args:
        sigmas: Standard deviation in pixels per severity.

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        return to_pixels(ops.gaussian_filter(unit(x), sigmas[severity - 1]))

    return TorchCorruption(apply)


# ---------------------------------------------------------------- glass blur


def copy_pass(x: torch.Tensor, offsets: torch.Tensor, max_delta: int) -> torch.Tensor:
    """One pass of glass blur's pixel "swaps", exactly, in parallel.

    The references visit rows ``H-d .. d+1`` and within each row columns ``W-d .. d+1``
    (both descending) and set pixel (h, w) to the current value of (h + dy, w + dx), with
    ``(dx, dy)`` drawn from [-d, d) (their swap statement copies, see
    :func:`corruptions.cifar_profile.shuffle_pixels_once`). A pixel therefore reads either a
    pre-pass value (its source is visited later, or not at all) or the value its source
    received earlier in the pass, which is itself a pre-pass value read further along a
    chain. Pointer jumping resolves every chain to its pre-pass source in O(log length)
    parallel rounds; the result equals the sequential loop's bit for bit.

    Args:
        x: ``N x C x H x W`` tensor.
        offsets: ``N x R x K x 2`` long tensor of ``(dx, dy)`` for the ``R`` visited rows and
            ``K`` visited columns, in visiting order.
        max_delta: ``d``.

    Returns:
        The tensor after the pass.
    """
    count, channels, height, width = x.shape
    rows = torch.arange(height - max_delta, max_delta, -1, device=x.device)
    columns = torch.arange(width - max_delta, max_delta, -1, device=x.device)
    if rows.numel() == 0 or columns.numel() == 0:
        return x
    dx, dy = offsets[..., 0], offsets[..., 1]
    source_rows = rows.view(1, -1, 1) + dy
    source_columns = columns.view(1, 1, -1) + dx
    sources = source_rows * width + source_columns  # N x R x K
    # The source was visited before this pixel: a later row (rows go down-to-up), or the
    # same row and a later column, and inside the visited block.
    inside = (
        (source_rows <= height - max_delta)
        & (source_rows > max_delta)
        & (source_columns <= width - max_delta)
        & (source_columns > max_delta)
    )
    earlier = (dy > 0) | ((dy == 0) & (dx > 0))
    visited = (rows.view(-1, 1) * width + columns.view(1, -1)).reshape(-1)
    pixels = height * width
    # Flat (image, pixel) indices over the whole batch; non-visited pixels keep themselves.
    base = (torch.arange(count, device=x.device) * pixels).view(-1, 1)
    target = torch.arange(count * pixels, device=x.device).view(count, pixels)
    target[:, visited] = sources.reshape(count, -1) + base
    target = target.reshape(-1)
    pairs = (inside & earlier).reshape(count, -1).nonzero()  # (image, visited position)
    links = pairs[:, 0] * pixels + visited[pairs[:, 1]]
    linked = torch.zeros(count * pixels, dtype=torch.bool, device=x.device)
    linked[links] = True
    # Pointer jumping over the linked pixels only; each round halves every chain.
    while links.numel():
        hop = target[links]
        target[links] = target[hop]
        still = linked[hop]
        linked[links] = still
        links = links[still]
    local = (target.view(count, pixels) - base).unsqueeze(1).expand(count, channels, pixels)
    return x.reshape(count, channels, pixels).gather(2, local).reshape(x.shape)


def glass_blur(table: Sequence[tuple[float, int, int]]) -> TorchCorruption:
    """Blur, truncate to 8 bits, locally shuffle pixels (:func:`copy_pass`), blur again.

    Args:
        table: ``(sigma, max_delta, iterations)`` per severity.

    Returns:
        The corruption.
    """

    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        _, max_delta, iterations = table[severity - 1]
        height, width = image.shape[-2:]
        shape = (iterations, max(height - 2 * max_delta, 0), max(width - 2 * max_delta, 0), 2)
        offsets = torch.randint(-max_delta, max_delta, shape, generator=generator, device=image.device)
        return {"offsets": offsets}

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        sigma, max_delta, iterations = table[severity - 1]
        shuffled = torch.floor(ops.gaussian_filter(unit(x), sigma) * 255)
        for iteration in range(iterations):
            shuffled = copy_pass(shuffled, draws["offsets"][:, iteration], max_delta)
        return to_pixels(ops.gaussian_filter(shuffled / 255.0, sigma))

    return TorchCorruption(apply, draw)


# ---------------------------------------------------------------- defocus


@functools.lru_cache(maxsize=64)
def _disk_tensor(radius: float, alias_blur: float, device: str) -> torch.Tensor:
    kernel = np.array(_disk_kernel(radius, alias_blur))
    # The references' kernel is at least 17 x 17 but zero beyond the disk plus one pixel of
    # anti-aliasing; its centred nonzero block gives the same sums at a fraction of the cost.
    rows, columns = np.nonzero(kernel)
    centre = kernel.shape[0] // 2
    reach = int(max(np.abs(rows - centre).max(), np.abs(columns - centre).max()))
    kernel = kernel[centre - reach : centre + reach + 1, centre - reach : centre + reach + 1]
    return torch.as_tensor(kernel, dtype=torch.float32, device=device)


def defocus_blur(table: Sequence[tuple[float, float]]) -> TorchCorruption:
    """Correlation with the references' anti-aliased disk (``cv2.filter2D``, border reflect-101).

    Args:
        table: ``(radius, alias blur)`` per severity.

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        radius, alias_blur = table[severity - 1]
        kernel = _disk_tensor(float(radius), float(alias_blur), str(x.device))
        return to_pixels(ops.filter2d(unit(x), kernel, mode="mirror"))

    return TorchCorruption(apply)


# ---------------------------------------------------------------- motion blur


def motion_weights(taps: int, sigma: float, device: torch.device) -> torch.Tensor:
    """One-sided Gaussian tap weights ``exp(-i^2 / 2 sigma^2)``, normalised (float64)."""
    steps = torch.arange(taps, dtype=torch.float64, device=device)
    weights = torch.exp(-(steps**2) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def imagemagick_to_uint8(values: torch.Tensor) -> torch.Tensor:
    """8-bit values as the CIFAR generator got them back from ImageMagick (Q16): ``round(257 v)``
    truncated to 8 bits (:func:`corruptions.cifar_profile.imagemagick_to_uint8`)."""
    quantum = torch.floor(values.to(torch.float64) * 257.0 + 0.5).clamp(0, 65535)
    return torch.floor(quantum / 257.0).to(torch.float32)


def _angle_draw(low: float, high: float) -> DrawFunction:
    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        uniform = torch.rand(1, generator=generator, device=image.device, dtype=torch.float64)
        return {"angle": low + (high - low) * uniform[0]}

    return draw


def cifar_line_blur(x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """The CIFAR generator's ImageMagick motion blur: ``2 ceil(radius) + 1`` taps, 8-bit output.

    Args:
        x: ``N x C x H x W`` 0..255 values.
        radius: Kernel radius.
        sigma: Gaussian sigma of the tap weights.
        angles: ``N`` angles in degrees.

    Returns:
        0..255 integer-valued float32 tensor.
    """
    taps = 2 * math.ceil(radius) + 1
    rows, columns = ops.line_blur_offsets(angles, taps)
    weights = motion_weights(taps, sigma, x.device)
    return imagemagick_to_uint8(ops.line_blur(x, weights, rows, columns))


def imagecorruptions_line_blur(x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' ``_motion_blur``: ``2 radius + 1`` taps, stopping at the first tap that
    moves a whole image side or more.

    Args:
        x: ``N x C x H x W`` values.
        radius: Kernel radius (an integer in the references' tables).
        sigma: Gaussian sigma of the tap weights.
        angles: ``N`` angles in degrees.

    Returns:
        Blurred tensor (dtype of ``x``).
    """
    height, width = x.shape[-2:]
    taps = int(radius) * 2 + 1
    rows, columns = ops.line_blur_offsets(angles, taps)
    weights = motion_weights(taps, sigma, x.device).expand(x.shape[0], taps)
    beyond = (rows.abs() >= height) | (columns.abs() >= width)
    weights = torch.where(torch.cumsum(beyond.long(), 1) > 0, torch.zeros_like(weights), weights)
    return ops.line_blur(x, weights, rows, columns)


def motion_blur(table: Sequence[tuple[float, float]], profile: str) -> TorchCorruption:
    """Blur along a line at an angle drawn uniformly from [-45, 45) degrees.

    Args:
        table: ``(radius, sigma)`` per severity.
        profile: ``cifar`` (ImageMagick kernel and 8-bit rounding) or ``imagenet``
            (imagecorruptions' kernel, truncated).

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        radius, sigma = table[severity - 1]
        if profile == "cifar":
            return cifar_line_blur(x, radius, sigma, draws["angle"])
        return imagecorruptions_line_blur(x, radius, sigma, draws["angle"]).clamp(0, 255)

    return TorchCorruption(apply, _angle_draw(-45.0, 45.0))


# ---------------------------------------------------------------- zoom blur


def zoom_blur(table: Sequence[np.ndarray], center_trim: bool) -> TorchCorruption:
    """Mean of the image and centred zooms of it (bilinear, as ``scipy.ndimage.zoom(order=1)``).

    Args:
        table: Zoom factors per severity.
        center_trim: True for the CIFAR generator (zooms cut around the centre), False for
            imagecorruptions (zooms keep their top-left corner).

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        factors = table[severity - 1]
        values = unit(x)
        total = torch.zeros_like(values)
        for factor in factors:
            total += ops.zoom_center(values, float(factor), center_trim)
        return to_pixels((values + total) / (len(factors) + 1))

    return TorchCorruption(apply)
