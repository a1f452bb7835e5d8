"""Weather corruptions (snow, frost, fog) as batched tensor operations."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from corruptions.cifar_profile import FROST_FILES, _frost_directory, _frost_layer_for, next_power_of_two
from corruptions.torch_engine import ops
from corruptions.torch_engine.base import Draws, TorchCorruption, to_pixels, unit
from corruptions.torch_engine.blur import cifar_line_blur, imagecorruptions_line_blur

__all__ = ["fog", "frost", "frost_crop", "rgb_to_gray", "snow"]

# imagecorruptions draws from all six photographs it ships (randint(6)); the CIFAR
# generator from the first five (see corruptions.cifar_profile.FROST_FILES).
_IMAGENET_FROST_FILES = FROST_FILES + ("frost6.jpg",)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """``cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)`` on floats: ``N x 3 x H x W`` -> ``N x 1 x H x W``."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


# ---------------------------------------------------------------- snow


def snow(table: Sequence[tuple], profile: str) -> TorchCorruption:
    """Motion-blurred random flakes over a whitened image.

    Args:
        table: ``(flake mean, spread, zoom, threshold, blur radius, blur sigma, image weight)``
            per severity.
        profile: ``cifar`` (flakes zoomed about the centre, 8-bit ImageMagick blur) or
            ``imagenet`` (imagecorruptions: the whole zoomed layer is blurred, then cut).

    Returns:
        The corruption.
    """

    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        height, width = image.shape[-2:]
        normal = torch.randn((height, width), generator=generator, device=image.device)
        uniform = torch.rand(1, generator=generator, device=image.device, dtype=torch.float64)
        return {"normal": normal, "angle": -135.0 + 90.0 * uniform[0]}

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        mean, spread, zoom, threshold, radius, sigma, image_weight = table[severity - 1]
        height, width = x.shape[-2:]
        flakes = (mean + spread * draws["normal"]).unsqueeze(1)  # N x 1 x H x W
        if profile == "cifar":
            flakes = ops.zoom_center(flakes, float(zoom), center_trim=True)
            flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
            flakes_8bit = torch.floor(flakes.clamp(0, 1) * 255)
            layer = cifar_line_blur(flakes_8bit, radius, sigma, draws["angle"]) / 255.0
        else:
            flakes = ops.zoom_center(flakes, float(zoom), center_trim=False, keep_size=False)
            flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp(0, 1)
            blurred = imagecorruptions_line_blur(flakes, radius, sigma, draws["angle"])
            layer = (torch.round(blurred * 255) / 255.0)[..., :height, :width].to(torch.float32)
        values = unit(x)
        gray = rgb_to_gray(values)
        values = image_weight * values + (1 - image_weight) * torch.maximum(values, gray * 1.5 + 0.5)
        return to_pixels(values + layer + torch.flip(layer, (-2, -1)))

    return TorchCorruption(apply, draw)


# ---------------------------------------------------------------- frost


@functools.cache
def _imagenet_photograph(index: int) -> np.ndarray:
    path = _frost_directory() / _IMAGENET_FROST_FILES[index]
    photograph = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photograph is None:
        raise RuntimeError(f"cannot read frost image {path}")
    return photograph


def _imagenet_frost_layer(index: int, height: int, width: int) -> np.ndarray:
    """imagecorruptions' resize of one frost photograph for an ``height x width`` image (RGB)."""
    photograph = _imagenet_photograph(index)
    photo_height, photo_width = photograph.shape[:2]
    if photo_height >= height and photo_width >= width:
        factor = 1.0
    elif photo_height < height and photo_width >= width:
        factor = height / photo_height
    elif photo_height >= height and photo_width < width:
        factor = width / photo_width
    else:
        factor = max(height / photo_height, width / photo_width)
    factor *= 1.1
    size = (int(np.ceil(photo_width * factor)), int(np.ceil(photo_height * factor)))
    return cv2.resize(photograph, dsize=size, interpolation=cv2.INTER_CUBIC)[..., ::-1]


@functools.lru_cache(maxsize=32)
def _frost_stack(profile: str, height: int, width: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All frost layers for one image size, zero-padded to one ``F x 3 x Hmax x Wmax`` tensor,
    and their ``F x 2`` (height, width)."""
    if profile == "cifar":
        layers = [_frost_layer_for(index, height, width) for index in range(len(FROST_FILES))]
    else:
        layers = [_imagenet_frost_layer(index, height, width) for index in range(len(_IMAGENET_FROST_FILES))]
    sizes = np.array([layer.shape[:2] for layer in layers], dtype=np.int64)
    stack = np.zeros((len(layers), 3, sizes[:, 0].max(), sizes[:, 1].max()), dtype=np.float32)
    for position, layer in enumerate(layers):
        stack[position, :, : layer.shape[0], : layer.shape[1]] = np.transpose(layer, (2, 0, 1))
    return torch.as_tensor(stack, device=device), torch.as_tensor(sizes, device=device)


def frost_crop(uniform: torch.Tensor, profile: str, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which frost photograph and where its crop starts, from three uniforms per image.

    The references draw ``randint(photographs)``, then ``randint(0, layer side - image
    side)`` per axis (the last offset is never drawn, in both; kept).

    Args:
        uniform: ``N x 3`` float64 uniforms in [0, 1).
        profile: ``cifar`` or ``imagenet``.
        height: Image height.
        width: Image width.

    Returns:
        (photograph index ``N``, (top, left) offsets ``N x 2``), long tensors.
    """
    _, sizes = _frost_stack(profile, height, width, str(uniform.device))
    index = torch.floor(uniform[:, 0] * sizes.shape[0]).long()
    room = (sizes[index] - torch.tensor([height, width], device=uniform.device)).to(torch.float64)
    return index, torch.floor(uniform[:, 1:] * room).long()


def frost(table: Sequence[tuple[float, float]], profile: str) -> TorchCorruption:
    """Blend with a random crop of a random frost photograph (the files imagecorruptions ships).

    Args:
        table: ``(image weight, frost weight)`` per severity.
        profile: ``cifar`` (five photographs scaled by 0.2) or ``imagenet`` (six, scaled to
            1.1 times what covers the image, bicubic).

    Returns:
        The corruption.
    """

    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        # Photograph, then top and left offset, each from one uniform (see frost_crop).
        return {"uniform": torch.rand(3, generator=generator, device=image.device, dtype=torch.float64)}

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        image_weight, frost_weight = table[severity - 1]
        count, _, height, width = x.shape
        stack, _ = _frost_stack(profile, height, width, str(x.device))
        index, offset = frost_crop(draws["uniform"], profile, height, width)
        rows = offset[:, 0:1] + torch.arange(height, device=x.device)  # N x H
        columns = offset[:, 1:2] + torch.arange(width, device=x.device)  # N x W
        crops = stack[index.view(-1, 1, 1), :, rows.view(count, height, 1), columns.view(count, 1, width)]
        crops = crops.permute(0, 3, 1, 2)  # advanced indexing put the channel axis last
        # float64 as the references: the blend is often an integer, and float32 rounding
        # would move some of those below it before the truncation to 8 bits.
        return (image_weight * x.double() + frost_weight * crops.double()).clamp(0, 255)

    return TorchCorruption(apply, draw)


# ---------------------------------------------------------------- fog


def fog(table: Sequence[tuple[float, float]], profile: str) -> TorchCorruption:
    """Add a plasma-fractal haze, then rescale so the brightest value is kept.

    Args:
        table: ``(strength, wibble decay)`` per severity.
        profile: ``cifar`` (float64 height map, as the generator) or ``imagenet`` (float32).

    Returns:
        The corruption.
    """
    dtype = torch.float64 if profile == "cifar" else torch.float32

    def draw(generator: torch.Generator, severity: int, image: torch.Tensor) -> Draws:
        map_size = next_power_of_two(max(image.shape[-2:]))
        return {"uniform": torch.rand(map_size * map_size - 1, generator=generator, device=image.device, dtype=dtype)}

    def apply(x: torch.Tensor, severity: int, draws: Draws) -> torch.Tensor:
        strength, wibble_decay = table[severity - 1]
        height, width = x.shape[-2:]
        map_size = next_power_of_two(max(height, width))
        haze = ops.plasma_fractal(draws["uniform"], map_size, wibble_decay, dtype)[:, None, :height, :width]
        values = unit(x, dtype)
        max_value = values.amax((1, 2, 3), keepdim=True)
        values = values + strength * haze
        return to_pixels(values * max_value / (max_value + strength))

    return TorchCorruption(apply, draw)
