"""Digital corruptions (brightness, saturate, contrast, elastic, pixelate, JPEG) and spatter."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from corruptions.cifar_profile import spatter_wetness
from corruptions.torch_engine import ops
from corruptions.torch_engine.base import Draws, TorchCorruption, to_pixels, unit

__all__ = ["brightness", "contrast", "elastic_transform", "jpeg_compression", "pixelate", "saturate", "spatter"]


# ---------------------------------------------------------------- colour


def brightness(shifts: Sequence[float]) -> TorchCorruption:
    """Raise the HSV value channel (skimage's HSV conversion, float64 as the references).

    Args:
        shifts: Value shift per severity.

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        hsv = ops.rgb_to_hsv(unit(x, torch.float64))
        value = (hsv[:, 2] + shifts[severity - 1]).clamp(0, 1)
        return to_pixels(ops.hsv_to_rgb(torch.stack((hsv[:, 0], hsv[:, 1], value), 1)))

    return TorchCorruption(apply)


def saturate(table: Sequence[tuple[float, float]]) -> TorchCorruption:
    """Scale and shift the HSV saturation channel.

    Args:
        table: ``(scale, shift)`` per severity.

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        scale, shift = table[severity - 1]
        hsv = ops.rgb_to_hsv(unit(x, torch.float64))
        saturation = (hsv[:, 1] * scale + shift).clamp(0, 1)
        return to_pixels(ops.hsv_to_rgb(torch.stack((hsv[:, 0], saturation, hsv[:, 2]), 1)))

    return TorchCorruption(apply)


def contrast(factors: Sequence[float]) -> TorchCorruption:
    """Pull every channel toward its own mean.

    Args:
        factors: Contrast factor per severity.

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        values = unit(x, torch.float64)
        means = values.mean((2, 3), keepdim=True)
        return to_pixels((values - means) * factors[severity - 1] + means)

    return TorchCorruption(apply)


# ---------------------------------------------------------------- geometry


def _normalized(coordinate: torch.Tensor, size: int, align_corners: bool) -> torch.Tensor:
    # Pixel coordinates to grid_sample's [-1, 1].
    if align_corners:
        return coordinate * (2.0 / max(size - 1, 1)) - 1.0
    return (2.0 * coordinate + 1.0) / size - 1.0


def _sample(x: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Bilinear samples of each image at ``N x H x W`` pixel coordinates, borders reflected
    (align_corners True: about the edge pixels, OpenCV's reflect-101; False: about the edges,
    scipy's ``reflect``)."""
    height, width = x.shape[-2:]
    grid = torch.stack((_normalized(columns, width, align_corners), _normalized(rows, height, align_corners)), -1).to(
        x.dtype
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=align_corners)


def _affine_source_grid(
    targets: torch.Tensor, sources: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where ``cv2.warpAffine(image, getAffineTransform(sources, targets))`` reads each output
    pixel: the inverse of the affine map taking the three ``sources`` to ``targets`` (points
    ``N x 3 x 2`` as (x, y)). Returns (rows, columns), each ``N x H x W``."""
    ones = torch.ones(sources.shape[:-1] + (1,), dtype=sources.dtype, device=sources.device)
    forward = torch.linalg.solve(torch.cat((sources, ones), -1), targets).transpose(1, 2)  # N x 2 x 3
    linear_inverse = torch.linalg.inv(forward[:, :, :2])
    offset_inverse = -(linear_inverse @ forward[:, :, 2:])
    rows, columns = torch.meshgrid(
        torch.arange(height, dtype=sources.dtype, device=sources.device),
        torch.arange(width, dtype=sources.dtype, device=sources.device),
        indexing="ij",
    )
    points = torch.stack((columns.reshape(-1), rows.reshape(-1)))  # 2 x HW as (x, y)
    mapped = linear_inverse @ points + offset_inverse  # N x 2 x HW
    return mapped[:, 1].reshape(-1, height, width), mapped[:, 0].reshape(-1, height, width)


def elastic_transform(table: Sequence[tuple[float, float, float]], profile: str) -> TorchCorruption:
    """Smooth random displacement field (plus, for ``cifar``, a random affine warp first).

    ``cifar``: the table holds (alpha, sigma, affine jitter) as fractions of the shorter image
    side; the affine warp reflects at the border as OpenCV's default, the displacement uses
    scipy's ``reflect``. ``imagenet``: (alpha, sigma fraction, displacement fraction) as
    imagecorruptions: sigma = fraction x each side, displacements drawn within
    +-fraction x height.

    Args:
        table: Per-severity parameters as above.
        profile: ``cifar`` or ``imagenet``.

    Returns:
        The corruption.
    """

    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        height, width = image.shape[-2:]
        # Raw uniforms in [0, 1): (column, row) displacement fields, then the affine jitter.
        draws = {"fields": torch.rand((2, height, width), generator=generator, device=image.device)}
        if profile == "cifar":
            draws["jitter"] = torch.rand((3, 2), generator=generator, device=image.device, dtype=torch.float64)
        return draws

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        count, _, height, width = x.shape
        values = unit(x)
        if profile == "cifar":
            size = min(height, width)
            alpha, sigma, jitter_range = (size * value for value in table[severity - 1])
            # Like the generator, the (row, column) centre serves as OpenCV's (x, y) point.
            centre = np.array([height, width], dtype=np.float32) // 2
            half_side = size // 3
            sources = np.array(
                [centre + half_side, [centre[0] + half_side, centre[1] - half_side], centre - half_side],
                dtype=np.float32,
            )
            sources_tensor = torch.as_tensor(sources, dtype=torch.float64, device=x.device).expand(count, 3, 2)
            jitter = (-jitter_range + 2 * jitter_range * draws["jitter"]).to(torch.float32)
            targets = (sources_tensor.to(torch.float32) + jitter).to(torch.float64)
            rows, columns = _affine_source_grid(targets, sources_tensor, height, width)
            values = _sample(values, rows, columns, align_corners=True)
            sigmas: float | tuple[float, float] = sigma
            fields = -1 + 2 * draws["fields"]
        else:
            alpha, sigma_fraction, displacement_fraction = table[severity - 1]
            sigmas = (height * sigma_fraction, width * sigma_fraction)
            largest = height * displacement_fraction  # imagecorruptions uses the height for both
            fields = -largest + 2 * largest * draws["fields"]
        displacement = (ops.gaussian_filter(fields, sigmas, mode="reflect", truncate=3.0) * alpha).to(torch.float32)
        rows = torch.arange(height, device=x.device, dtype=torch.float32).view(1, -1, 1) + displacement[:, 1]
        columns = torch.arange(width, device=x.device, dtype=torch.float32).view(1, 1, -1) + displacement[:, 0]
        return to_pixels(_sample(values, rows, columns, align_corners=False))

    return TorchCorruption(apply, draw)


def pixelate(factors: Sequence[float], profile: str) -> TorchCorruption:
    """Pillow box-downsampling, then Pillow upsampling back (``cifar``: box; ``imagenet``: nearest),
    in Pillow's own fixed-point arithmetic.

    Args:
        factors: Downsampling factor per severity.
        profile: ``cifar`` or ``imagenet``.

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        factor = factors[severity - 1]
        height, width = x.shape[-2:]
        if profile == "cifar":
            small = (max(1, int(height * factor)), max(1, int(width * factor)))
            up = "box"
        else:
            small = (int(height * factor), int(width * factor))
            up = "nearest"
        reduced = ops.pil_resize(x, small, "box")
        return ops.pil_resize(reduced, (height, width), up).to(torch.float32)

    return TorchCorruption(apply)


def _cpu_workers(device: torch.device, count: int) -> int:
    """Threads for per-image CPU steps: torch's thread count for CPU batches, every core for
    GPU batches (the CPU is otherwise idle then); these steps release the GIL."""
    workers = torch.get_num_threads() if device.type == "cpu" else (os.cpu_count() or 1)
    return max(1, min(workers, count))


def _map_images(function: Callable[[Any], Any], items: list, workers: int) -> list:
    if workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def jpeg_compression(qualities: Sequence[int]) -> TorchCorruption:
    """Round trip through libjpeg at a low quality (torchvision's codec, the same library and
    settings as Pillow's: bit-identical output here).

    On a GPU the batch still goes through libjpeg on the CPU: nvJPEG is another codec
    (mean difference 1.5-2 grey levels at 224 px) and was no faster on an H100 host.

    Args:
        qualities: JPEG quality per severity.

    Returns:
        The corruption.
    """

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

        quality = int(qualities[severity - 1])

        def round_trip(image: torch.Tensor) -> torch.Tensor:
            return decode_jpeg(encode_jpeg(image, quality=quality), mode=ImageReadMode.RGB)

        images = list(x.to(torch.uint8).cpu())
        with warnings.catch_warnings():
            # torchvision 0.29 marks its codecs deprecated in favour of TorchCodec.
            warnings.simplefilter("ignore")
            decoded = _map_images(round_trip, images, _cpu_workers(x.device, len(images)))
        return torch.stack(decoded).to(x.device)

    return TorchCorruption(apply, departure="libjpeg through torchvision instead of through Pillow (same output)")


# ---------------------------------------------------------------- spatter


def spatter(table: Sequence[tuple], profile: str) -> TorchCorruption:
    """Water drops (severities 1-3) or mud (4-5) splashed over the image.

    The water branch's drop-edge map (Canny edges, distance transform, histogram
    equalisation, emboss) runs per image on the CPU through the reference's own OpenCV
    helper, :func:`corruptions.cifar_profile.spatter_wetness`; everything else is batched.

    Args:
        table: ``(mean, spread, smoothing, threshold, intensity, is_mud)`` per severity.
        profile: ``cifar`` or ``imagenet`` (same steps, different tables).

    Returns:
        The corruption.
    """

    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        height, width = image.shape[-2:]
        return {"normal": torch.randn((height, width), generator=generator, device=image.device)}

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        mean, spread, smoothing, threshold, intensity, is_mud = table[severity - 1]
        values = unit(x)
        liquid = ops.gaussian_filter(mean + spread * draws["normal"], smoothing)  # N x H x W
        liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
        if not is_mud:
            layers = list(liquid.cpu().numpy())
            workers = _cpu_workers(x.device, len(layers))
            wetness = np.stack(_map_images(lambda layer: spatter_wetness(layer, intensity), layers, workers))
            wetness_tensor = torch.as_tensor(wetness, dtype=torch.float32, device=x.device).unsqueeze(1)
            water = torch.tensor([175.0, 238.0, 238.0], device=x.device).view(1, 3, 1, 1) / 255
            return to_pixels(values + wetness_tensor * water)
        mask = ops.gaussian_filter((liquid > threshold).to(torch.float32), intensity)
        mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask).unsqueeze(1)
        mud = torch.tensor([63.0, 42.0, 20.0], device=x.device).view(1, 3, 1, 1) / 255 * mask
        return to_pixels(values * (1 - mask) + mud)

    return TorchCorruption(
        apply,
        draw,
        departure="water drops: edge and distance map per image on the CPU (OpenCV), the rest batched",
    )
