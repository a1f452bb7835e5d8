"""Batched inference on uint8 image arrays, the uint8 -> float tensor conversion, device
resolution and out-of-memory back-off; precision (autocast) and channels-last are in
:mod:`robustbench_lift.evaluation.precision`."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.precision import autocast, check_precision, to_channels_last

log = logging.getLogger(__name__)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x H x W in [0, 1] (the input every model takes)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other names are checked.

    Raises a one-line UserError for a malformed name or a CUDA device this machine lacks.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device {device!r} asked for, but torch sees no CUDA GPU on this machine (use --device auto or cpu)"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return str(parsed)


def is_out_of_memory(error: BaseException) -> bool:
    """True for torch's CUDA OOM error and for RuntimeErrors that say "out of memory"."""
    out_of_memory = getattr(torch.cuda, "OutOfMemoryError", None)
    if out_of_memory is not None and isinstance(error, out_of_memory):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _input_batch(images: np.ndarray | torch.Tensor, start: int, size: int, device: str | torch.device) -> torch.Tensor:
    """Images ``start:start+size`` as the float batch models take, on ``device``."""
    if isinstance(images, torch.Tensor):  # uint8 N x 3 x H x W, e.g. the torch engine's output on the device
        return images[start : start + size].to(device).float().div_(255)
    pixels = images[start : start + size]
    if not pixels.flags.writeable:  # shared read-only (Ray's object store): torch warns
        pixels = pixels.copy()
    return to_tensor(pixels).to(device)


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits of ``model`` (eval mode) for uint8 N x H x W x 3 ``images`` (or a uint8
    N x 3 x H x W tensor, read where it lies), on the CPU, as fp32.

    On out-of-memory the batch is halved and retried (down to 1 image); the smaller size
    is kept for the rest of this call. Each image's logits do not depend on the batch it
    was in, so the result is the same whatever size finally fits. ``precision`` (fp32,
    bf16, fp16) runs the model under autocast; ``channels_last`` converts the model (in
    place) and each batch to channels-last memory format.
    """
    device_type = torch.device(device).type
    check_precision(precision, device_type)
    model.eval()
    if channels_last:
        to_channels_last(model)
    outputs = []
    start = 0
    size = max(1, int(batch_size))
    while start < images.shape[0]:
        try:
            batch = _input_batch(images, start, size, device)
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(precision, device_type):
                logits = model(batch)
            outputs.append(logits.float().cpu())
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            del error  # drop the traceback's references to the failed batch's tensors
            batch = None
            _release_cached_memory()
            if size == 1:
                raise UserError(f"out of memory on {device} even with a batch of one image") from None
            size = max(1, size // 2)
            log.warning("out of memory on %s; retrying with batch size %d", device, size)
            continue
        start += min(size, images.shape[0] - start)
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500, device: str | torch.device = "cpu"
) -> float:
    """Top-1 accuracy of ``model`` (on ``device``) on uint8 images."""
    predictions = predict_logits(model, images, batch_size, device).argmax(1).numpy()
    return float((predictions == labels).mean())
