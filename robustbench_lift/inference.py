"""Batched inference on uint8 image arrays."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from robustbench_lift.datasets import to_tensor


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 500, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits of ``model`` (eval mode) for uint8 N x H x W x 3 ``images``, on the CPU."""
    model.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = to_tensor(images[start : start + batch_size]).to(device)
        outputs.append(model(batch).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on uint8 images."""
    predictions = predict_logits(model, images, batch_size).argmax(1).numpy()
    return float((predictions == labels).mean())
