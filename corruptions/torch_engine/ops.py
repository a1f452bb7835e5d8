"""Batched tensor primitives of the torch corruption engine.

Every function takes and returns ``N x C x H x W`` tensors on any device and works on the
whole batch at once; per-image differences (a motion-blur angle, a crop offset) come in as
tensors with a leading ``N`` axis. Border modes use scipy's names:

* ``nearest``: ``a a | a b c | c c`` (scipy ``nearest``, OpenCV ``BORDER_REPLICATE``);
* ``reflect``: ``b a | a b c | c b`` (scipy ``reflect``, OpenCV ``BORDER_REFLECT``);
* ``mirror``: ``c b | a b c | b a`` (scipy ``mirror``, OpenCV ``BORDER_REFLECT_101``).

Constant tensors (kernels, index maps, resampling matrices) are built once per
(parameters, device) and cached.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "border_index",
    "filter2d",
    "floor_uint8",
    "gaussian_filter",
    "gaussian_kernel1d",
    "hsv_to_rgb",
    "line_blur",
    "line_blur_offsets",
    "pad",
    "pil_resize",
    "plasma_fractal",
    "rgb_to_hsv",
    "zoom_center",
]


def _device_key(device: torch.device | str) -> str:
    return str(torch.device(device))


# ---------------------------------------------------------------- borders and padding


@functools.lru_cache(maxsize=256)
def _border_index_cached(length: int, before: int, after: int, mode: str, device: str) -> torch.Tensor:
    positions = np.arange(-before, length + after)
    if mode == "nearest":
        index = np.clip(positions, 0, length - 1)
    elif mode == "reflect":
        period = 2 * length
        index = np.mod(positions, period)
        index = np.where(index >= length, period - 1 - index, index)
    elif mode == "mirror":
        if length == 1:
            index = np.zeros_like(positions)
        else:
            period = 2 * length - 2
            index = np.mod(positions, period)
            index = np.where(index >= length, period - index, index)
    else:
        raise ValueError(f"unknown border mode {mode!r}")
    return torch.as_tensor(index, dtype=torch.long, device=device)


def border_index(length: int, before: int, after: int, mode: str, device: torch.device | str) -> torch.Tensor:
    """Source positions of a padded axis: entry ``i`` is the input index that padded position
    ``i - before`` reads, for any pad width (also wider than the axis).

    Args:
        length: Size of the axis.
        before: Positions added before index 0.
        after: Positions added after the last index.
        mode: ``nearest``, ``reflect`` or ``mirror`` (see the module docstring).
        device: Where the index tensor lives.

    Returns:
        Long tensor of ``length + before + after`` indices.
    """
    return _border_index_cached(int(length), int(before), int(after), mode, _device_key(device))


def pad(x: torch.Tensor, rows: tuple[int, int], columns: tuple[int, int], mode: str) -> torch.Tensor:
    """Pad the last two axes of ``x`` by ``rows`` = (top, bottom) and ``columns`` = (left, right).

    Args:
        x: Tensor of at least two dimensions.
        rows: Rows added above and below.
        columns: Columns added left and right.
        mode: ``nearest``, ``reflect`` or ``mirror``.

    Returns:
        The padded tensor.
    """
    height, width = x.shape[-2:]
    if any(rows):
        x = x.index_select(-2, border_index(height, rows[0], rows[1], mode, x.device))
    if any(columns):
        x = x.index_select(-1, border_index(width, columns[0], columns[1], mode, x.device))
    return x


# ---------------------------------------------------------------- linear filters


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian: ``int(truncate * sigma + 0.5)`` taps either side, normalised.

    Args:
        sigma: Standard deviation in pixels (> 0).
        truncate: Support in standard deviations.

    Returns:
        float64 weights of odd length.
    """
    radius = int(truncate * float(sigma) + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 / (float(sigma) * float(sigma)) * taps * taps)
    return weights / weights.sum()


def _depthwise(padded: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid correlation of every ``Hp x Wp`` plane of a ``B x Hp x Wp`` tensor with one kernel.

    The planes become the channels of one depthwise convolution (channels-last on the CPU):
    oneDNN vectorises that across channels, while a single-channel convolution over a batch
    runs an order of magnitude slower.
    """
    planes = padded.shape[0]
    inputs = padded.unsqueeze(0)
    if inputs.device.type == "cpu":
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    weight = kernel.to(padded.dtype).view(1, 1, *kernel.shape).expand(planes, 1, *kernel.shape).contiguous()
    # Full float32 on GPUs too: TF32 (cuDNN's default) would cost up to a grey level here.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        return F.conv2d(inputs, weight, groups=planes)[0].contiguous()


@functools.lru_cache(maxsize=512)
def _filter_operator(
    length: int, sigma: float, truncate: float, mode: str, dtype: torch.dtype, device: str
) -> torch.Tensor:
    """The ``length x length`` matrix of one axis of a Gaussian filter, border handling folded in:
    row ``i`` holds the weights the filtered sample ``i`` gives to each input sample."""
    weights = gaussian_kernel1d(sigma, truncate)
    radius = (weights.size - 1) // 2
    sources = border_index(length, radius, radius, mode, "cpu").numpy()
    operator = np.zeros((length, length), dtype=np.float64)
    rows = np.repeat(np.arange(length), weights.size)
    columns = sources[np.arange(length)[:, None] + np.arange(weights.size)[None, :]].reshape(-1)
    np.add.at(operator, (rows, columns), np.tile(weights, length))
    return torch.as_tensor(operator, dtype=dtype, device=device)


def gaussian_filter(
    x: torch.Tensor, sigma: float | tuple[float, float], mode: str = "nearest", truncate: float = 4.0
) -> torch.Tensor:
    """Per-channel 2-D Gaussian smoothing of the last two axes, as ``scipy.ndimage.gaussian_filter``
    (and ``skimage.filters.gaussian``) with no smoothing across channels.

    Each axis is one matrix product with a banded operator that already holds the border
    handling: at the references' image sizes BLAS does that faster on a CPU than padding
    plus a convolution, and it needs no layout changes.

    Args:
        x: ``... x H x W`` floating tensor.
        sigma: One standard deviation for both axes, or (rows, columns); values <= 1e-15
            skip that axis, as scipy does.
        mode: Border mode (``nearest``, ``reflect``, ``mirror``).
        truncate: Support in standard deviations.

    Returns:
        Tensor of the shape and dtype of ``x``.
    """
    row_sigma, column_sigma = (sigma, sigma) if isinstance(sigma, (int, float)) else tuple(sigma)
    height, width = x.shape[-2:]
    device = _device_key(x.device)
    if float(column_sigma) > 1e-15:
        operator = _filter_operator(width, float(column_sigma), float(truncate), mode, x.dtype, device)
        x = torch.matmul(x, operator.T)
    if float(row_sigma) > 1e-15:
        operator = _filter_operator(height, float(row_sigma), float(truncate), mode, x.dtype, device)
        x = torch.matmul(operator, x)
    return x


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str = "mirror") -> torch.Tensor:
    """Per-channel 2-D correlation with an odd-sized kernel (``cv2.filter2D``; default border
    ``BORDER_REFLECT_101`` = ``mirror``), the output the size of the input.

    Args:
        x: ``N x C x H x W`` floating tensor.
        kernel: ``kh x kw`` tensor (odd sides) of the dtype and device of ``x``.
        mode: Border mode.

    Returns:
        Filtered tensor, shape of ``x``.
    """
    shape = x.shape
    kernel_height, kernel_width = kernel.shape
    flat = x.reshape(-1, shape[-2], shape[-1])
    padded = pad(flat, (kernel_height // 2,) * 2, (kernel_width // 2,) * 2, mode)
    return _depthwise(padded, kernel).reshape(shape)


# ---------------------------------------------------------------- motion blur


def line_blur_offsets(angles_degrees: torch.Tensor, taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel offsets of the taps of a line kernel at per-image angles.

    Tap ``i`` reads the pixel ``ceil(i sin(angle) - 0.5)`` rows and ``ceil(i cos(angle) - 0.5)``
    columns away (ImageMagick's rounding, kept by the CIFAR generator's Wand call and by
    imagecorruptions' ``_motion_blur``, whose ``shift(x, -dx, -dy)`` reads the same pixels).

    Args:
        angles_degrees: ``N`` angles.
        taps: Number of taps.

    Returns:
        (row offsets, column offsets), each a long tensor ``N x taps``.
    """
    radians = angles_degrees.to(torch.float64) * (math.pi / 180.0)
    steps = torch.arange(taps, dtype=torch.float64, device=angles_degrees.device)
    rows = torch.ceil(steps[None, :] * torch.sin(radians)[:, None] - 0.5).long()
    columns = torch.ceil(steps[None, :] * torch.cos(radians)[:, None] - 0.5).long()
    return rows, columns


def line_blur(
    x: torch.Tensor, weights: torch.Tensor, row_offsets: torch.Tensor, column_offsets: torch.Tensor
) -> torch.Tensor:
    """Weighted sum of shifted copies of each image, edge pixels repeated beyond the border.

    ``out[n, :, h, w] = sum_t weights[n, t] * x[n, :, clamp(h + rows[n, t]), clamp(w + columns[n, t])]``,
    one gather of the whole batch per tap.

    Args:
        x: ``N x C x H x W`` floating tensor.
        weights: ``N x T`` (or ``T``) tap weights.
        row_offsets: ``N x T`` long row offsets.
        column_offsets: ``N x T`` long column offsets.

    Returns:
        Blurred tensor, shape of ``x``.
    """
    count, channels, height, width = x.shape
    taps = row_offsets.shape[1]
    if weights.dim() == 1:
        weights = weights.expand(count, taps)
    weights = weights.to(x.dtype)
    margin = int(max(row_offsets.abs().max().item(), column_offsets.abs().max().item())) if count else 0
    # Clamped offsets beyond the image read the edge anyway; cap the padding there.
    margin_rows = min(margin, height)
    margin_columns = min(margin, width)
    row_offsets = row_offsets.clamp(-margin_rows, margin_rows)
    column_offsets = column_offsets.clamp(-margin_columns, margin_columns)
    padded = F.pad(x, (margin_columns, margin_columns, margin_rows, margin_rows), mode="replicate")
    if x.device.type == "cpu":
        # On the CPU, strided slices of the padded image beat a gather by ~6x; on a GPU one
        # gather per tap for the whole batch beats N x T small kernels.
        out = torch.zeros_like(x)
        rows_list, columns_list, weights_list = row_offsets.tolist(), column_offsets.tolist(), weights.tolist()
        for image in range(count):
            target, source = out[image], padded[image]
            for tap in range(taps):
                top = margin_rows + rows_list[image][tap]
                left = margin_columns + columns_list[image][tap]
                target.add_(source[:, top : top + height, left : left + width], alpha=weights_list[image][tap])
        return out
    padded_width = width + 2 * margin_columns
    flat = padded.reshape(count, channels, -1)
    rows = torch.arange(height, device=x.device) + margin_rows
    columns = torch.arange(width, device=x.device) + margin_columns
    base = (rows[:, None] * padded_width + columns[None, :]).reshape(1, -1)
    shifts = row_offsets * padded_width + column_offsets  # N x T
    out = torch.zeros(count, channels, height * width, dtype=x.dtype, device=x.device)
    for tap in range(taps):
        index = (base + shifts[:, tap : tap + 1]).unsqueeze(1).expand(count, channels, height * width)
        out.add_(flat.gather(2, index) * weights[:, tap].view(count, 1, 1))
    return out.reshape(count, channels, height, width)


# ---------------------------------------------------------------- zoom


def _zoomed_length(crop: int, zoom_factor: float) -> int:
    return round(crop * zoom_factor)


def zoom_center(x: torch.Tensor, zoom_factor: float, center_trim: bool, keep_size: bool = True) -> torch.Tensor:
    """Crop the centre ``ceil(side / zoom)`` of each axis and enlarge it linearly by ``zoom``,
    as ``scipy.ndimage.zoom(order=1)`` does (output ``round(crop * zoom)``, corners aligned).

    Args:
        x: ``N x C x H x W`` floating tensor (float32 or float64).
        zoom_factor: Factor >= 1.
        center_trim: Cut the zoomed picture back to ``H x W`` around its centre (the CIFAR
            generator's ``clipped_zoom``); otherwise keep its top-left ``H x W``
            (imagecorruptions').
        keep_size: False returns the whole zoomed picture (imagecorruptions' snow layer).

    Returns:
        The zoomed tensor.
    """
    height, width = x.shape[-2:]
    crop_height = math.ceil(height / zoom_factor)
    crop_width = math.ceil(width / zoom_factor)
    top = (height - crop_height) // 2
    left = (width - crop_width) // 2
    crop = x[:, :, top : top + crop_height, left : left + crop_width]
    size = (_zoomed_length(crop_height, zoom_factor), _zoomed_length(crop_width, zoom_factor))
    zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    if not keep_size:
        return zoomed
    if center_trim:
        trim_top = (size[0] - height) // 2
        trim_left = (size[1] - width) // 2
        return zoomed[..., trim_top : trim_top + height, trim_left : trim_left + width]
    return zoomed[..., :height, :width]


# ---------------------------------------------------------------- colour


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``skimage.color.rgb2hsv`` on ``N x 3 x H x W`` values in [0, 1] (same tie rules: blue
    beats green beats red as the maximum; hue and saturation 0 where the pixel is grey).

    Args:
        rgb: ``N x 3 x H x W`` floating tensor.

    Returns:
        ``N x 3 x H x W`` (hue, saturation, value), each in [0, 1].
    """
    red, green, blue = rgb.unbind(1)
    value = rgb.amax(1)
    delta = value - rgb.amin(1)
    grey = delta == 0
    safe_delta = delta.masked_fill(grey, 1.0)
    saturation = (delta / value.masked_fill(grey, 1.0)).masked_fill_(grey, 0.0)
    # Later rules win, as skimage assigns red, then green, then blue.
    hue = torch.where(
        blue == value,
        4.0 + (red - green) / safe_delta,
        torch.where(green == value, 2.0 + (blue - red) / safe_delta, (green - blue) / safe_delta),
    )
    hue = torch.remainder(hue / 6.0, 1.0).masked_fill_(grey, 0.0)
    return torch.stack((hue, saturation, value), 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """``skimage.color.hsv2rgb`` on ``N x 3 x H x W`` (the same arithmetic per sector).

    Args:
        hsv: ``N x 3 x H x W`` (hue, saturation, value).

    Returns:
        ``N x 3 x H x W`` RGB.
    """
    hue, saturation, value = hsv.unbind(1)
    sector = torch.floor(hue * 6)
    fraction = hue * 6 - sector
    p = value * (1 - saturation)
    q = value * (1 - fraction * saturation)
    t = value * (1 - (1 - fraction) * saturation)
    sector = torch.remainder(sector, 6)
    # skimage's table, per sector 0..5: R = v q p p t v, G = t v v q p p, B = p p t v v q.
    red = torch.where((sector == 0) | (sector == 5), value, torch.where(sector == 1, q, torch.where(sector == 4, t, p)))
    green = torch.where(
        (sector == 1) | (sector == 2), value, torch.where(sector == 0, t, torch.where(sector == 3, q, p))
    )
    blue = torch.where(
        (sector == 3) | (sector == 4), value, torch.where(sector == 2, t, torch.where(sector == 5, q, p))
    )
    return torch.stack((red, green, blue), 1)


# ---------------------------------------------------------------- PIL resampling


def _pil_box_weights(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's BOX coefficients (``precompute_coeffs`` + ``normalize_coeffs_8bpc``) as an
    ``out x in`` matrix of the fixed-point integers Pillow sums (22 fractional bits)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for output in range(out_size):
        center = (output + 0.5) * scale
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        positions = (np.arange(low, high) - center + 0.5) / filter_scale
        weights = ((positions > -0.5) & (positions <= 0.5)).astype(np.float64)
        total = weights.sum()
        if total != 0:
            weights = weights / total
        matrix[output, low:high] = np.trunc(0.5 + weights * (1 << 22))
    return matrix


@functools.lru_cache(maxsize=64)
def _pil_nearest_index(in_size: int, out_size: int) -> np.ndarray:
    # Read Pillow's own NEAREST mapping off a 32-bit index image (its fixed-point affine
    # transform rounds in ways not worth re-deriving).
    from PIL import Image

    ramp = Image.fromarray(np.arange(in_size, dtype=np.int32)[None, :], mode="I")
    return np.asarray(ramp.resize((out_size, 1), Image.Resampling.NEAREST), dtype=np.int64)[0]


@functools.lru_cache(maxsize=128)
def _pil_box_operator(in_size: int, out_size: int, device: str) -> torch.Tensor:
    return torch.as_tensor(_pil_box_weights(in_size, out_size), dtype=torch.float64, device=device)


@functools.lru_cache(maxsize=128)
def _pil_nearest_tensor(in_size: int, out_size: int, device: str) -> torch.Tensor:
    return torch.as_tensor(_pil_nearest_index(in_size, out_size), device=device)


def _pil_pass(x: torch.Tensor, out_size: int, resample: str) -> torch.Tensor:
    # Resample the last axis of float64 integers 0..255 as Pillow does.
    device = _device_key(x.device)
    if resample == "nearest":
        return x.index_select(-1, _pil_nearest_tensor(x.shape[-1], out_size, device))
    if resample != "box":
        raise ValueError(f"unsupported resampling {resample!r}")
    # (2^21 + sum(pixel * weight)) >> 22, clipped to 0..255: integers below 2^53, exact in float64.
    total = torch.matmul(x, _pil_box_operator(x.shape[-1], out_size, device).T)
    return torch.floor((total + float(1 << 21)) / float(1 << 22)).clamp_(0, 255)


def pil_resize(x: torch.Tensor, size: tuple[int, int], resample: str) -> torch.Tensor:
    """``PIL.Image.resize`` of 8-bit RGB images: horizontal pass, 8-bit rounding, vertical pass.

    Args:
        x: ``N x C x H x W`` tensor of integer values 0..255 (any dtype).
        size: Output (height, width).
        resample: ``box`` or ``nearest``.

    Returns:
        float64 ``N x C x height x width`` tensor of integers 0..255, identical to Pillow's.
    """
    height, width = x.shape[-2:]
    out_height, out_width = size
    y = x.to(torch.float64)
    if out_width != width:
        y = _pil_pass(y, out_width, resample)
    if out_height != height:
        y = _pil_pass(y.transpose(-1, -2), out_height, resample).transpose(-1, -2)
    return y


# ---------------------------------------------------------------- fog


def plasma_fractal(uniforms: torch.Tensor, map_size: int, wibble_decay: float, dtype: torch.dtype) -> torch.Tensor:
    """Diamond-square height maps (the ImageNet-C ``plasma_fractal``), one per image, scaled to [0, 1].

    Args:
        uniforms: ``N x (map_size**2 - 1)`` uniform [0, 1) draws, consumed in the reference's
            order: per step, the square centres, then the two diamond grids.
        map_size: Side, a power of two.
        wibble_decay: Divisor of the noise amplitude per step.
        dtype: Working precision (float64 for the CIFAR generator, float32 for imagecorruptions).

    Returns:
        ``N x map_size x map_size`` tensor.
    """
    count = uniforms.shape[0]
    height_map = torch.zeros(count, map_size, map_size, dtype=dtype, device=uniforms.device)
    step = map_size
    wibble = 100.0
    used = 0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        nonlocal used
        size = total.shape[1] * total.shape[2]
        draw = uniforms[:, used : used + size].reshape(total.shape).to(dtype)
        used += size
        return total / 4 + wibble * (wibble * (2 * draw - 1))

    while step >= 2:
        half = step // 2
        corners = height_map[:, 0::step, 0::step]
        square_sum = corners + torch.roll(corners, -1, 1)
        square_sum = square_sum + torch.roll(square_sum, -1, 2)
        height_map[:, half::step, half::step] = wibbled_mean(square_sum)
        centres = height_map[:, half::step, half::step]
        corners = height_map[:, 0::step, 0::step]
        left_sum = centres + torch.roll(centres, 1, 1) + corners + torch.roll(corners, -1, 2)
        height_map[:, 0::step, half::step] = wibbled_mean(left_sum)
        top_sum = centres + torch.roll(centres, 1, 2) + corners + torch.roll(corners, -1, 1)
        height_map[:, half::step, 0::step] = wibbled_mean(top_sum)
        step //= 2
        wibble /= wibble_decay
    flat = height_map.reshape(count, -1)
    flat = flat - flat.amin(1, keepdim=True)
    flat = flat / flat.amax(1, keepdim=True)
    return flat.reshape(count, map_size, map_size)


# ---------------------------------------------------------------- output


def floor_uint8(values: torch.Tensor) -> torch.Tensor:
    """0..255 floats to uint8 by clipping and truncation (the references' ``np.uint8(...)``).

    Args:
        values: Floating tensor (values outside 0..255 are clipped).

    Returns:
        uint8 tensor of the same shape.
    """
    return values.clamp(0, 255).to(torch.uint8)
