"""Numeric precision and memory format of inference: ``fp32``, ``bf16`` or ``fp16`` autocast,
channels-last on or off. Importing this module does not import torch (the run config
validates the names); the context manager and the model conversion import it when used.

``bf16`` and ``fp16`` run the model under :func:`torch.autocast` (matrix multiplications
and convolutions in half precision, reductions and softmax-like ops in fp32), and the
logits come back as fp32. ``fp16`` is refused on the CPU with one line: CPU kernels for
float16 are few and slow, and fp16's narrow range buys nothing there; bf16 is the CPU's
half precision. Channels-last (NHWC) memory format speeds up convolutions on CUDA tensor
cores; on the CPU it is off unless asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from robustbench_lift.errors import UserError

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "autocast", "check_precision", "channels_last_for", "precision_record", "to_channels_last"]

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


def check_precision(precision: str, device_type: str | None = None, key: str = "precision") -> None:
    """One-line UserError for an unknown precision, or fp16 on a CPU.

    Args:
        precision: ``fp32``, ``bf16`` or ``fp16``.
        device_type: ``cpu`` or ``cuda`` when known (None: only the name is checked).
        key: the config key, for the message.
    """
    if precision not in PRECISIONS:
        raise UserError(f"{key} {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device_type == "cpu":
        raise UserError(f"{key} fp16 needs a CUDA device; on the CPU use bf16 (or fp32)")


@contextlib.contextmanager
def autocast(precision: str, device_type: str) -> Iterator[None]:
    """Runs the block under torch.autocast in ``precision`` on ``device_type``; fp32: plain.

    Args:
        precision: ``fp32``, ``bf16`` or ``fp16``.
        device_type: ``cpu`` or ``cuda``.
    """
    check_precision(precision, device_type)
    if precision == "fp32":
        yield
        return
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device_type, dtype=dtype):
        yield


def channels_last_for(setting: bool | None, device_type: str) -> bool:
    """Whether inference uses channels-last: ``setting``; None means on (CPU and CUDA alike:
    on the CPU it made the zoo's models 1.1x to 2x faster at one thread, with the same
    predictions)."""
    return True if setting is None else bool(setting)


def precision_record(config: Any, device: str) -> dict[str, Any]:
    """What run.json records: inference and attack precision, channels-last as used on ``device``."""
    device_type = str(device).split(":")[0]
    return {
        "inference": config.precision,
        "attack": config.attack_precision,
        "channels_last": channels_last_for(config.channels_last, device_type),
        "autocast": config.precision != "fp32",
    }


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its 4-D parameters and buffers in channels-last format (in place).

    Converted outside inference mode even when called inside it: parameters made there
    would be inference tensors, which a later attack (gradients with respect to the input
    through the same model) cannot use.
    """
    import torch

    with torch.inference_mode(False), torch.no_grad():
        return model.to(memory_format=torch.channels_last)
