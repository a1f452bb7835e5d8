"""Training a model of the zoo: SGD with a one-cycle schedule, light augmentation, the lifting
regularisers, a held-out validation curve, and a checkpoint with its metadata record.

Runs on the CPU or a CUDA device. On a device the whole training split lives there as
uint8, and batches are drawn, augmented and converted there, with one host sync per epoch
(the validation accuracy), so several small models can share one GPU.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from robustbench_lift.data.datasets import channel_statistics, load_dataset
from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.inference import accuracy
from robustbench_lift.models._builder import build_model
from robustbench_lift.models.checkpoints import save_checkpoint
from robustbench_lift.nn.lifting import lift_pools, lifting_regularization
from robustbench_lift.nn.pooling import canonical_kind, resolve_options

__all__ = ["TrainingConfig", "train", "package_versions", "training_device"]

log = logging.getLogger(__name__)

TRANSLATION = 2  # pixels: random shifts of -2..2 in both directions
PROGRESS_EVERY = 50  # steps between progress-bar loss readings (each one waits for the device)


@dataclass
class TrainingConfig:
    """Everything that decides a trained model; stored in its checkpoint's metadata."""

    architecture: str = "small_cnn"
    pooling: str = "max"
    pooling_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion_mnist"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    detail_weight: float = 0.01  # lifting regulariser on the detail band (learned lift only)
    approximation_weight: float = 0.01  # lifting regulariser on the approximation band
    validation_size: int = 5000
    train_size: int | None = None  # use only this many training images (smoke tests); None = all
    seed: int = 0
    threads: int = 1  # one thread: on two shared cores, two threads thrash (4x slower measured)
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"


def training_device(name: str) -> torch.device:
    """The torch device called ``name``; UserError if it is not usable here."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"training runs on cpu or cuda, not {name!r}")
    return device


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by -2..2 px (zero padded) and horizontal flip, per image, batched.

    The draws (per image: two shifts, then one flip decision) come from ``generator``, on
    its device, which must be ``batch``'s; the same generator state gives the same output.
    """
    count, _, height, width = batch.shape
    device = batch.device
    padded = F.pad(batch, (TRANSLATION,) * 4)
    shifts = torch.randint(0, 2 * TRANSLATION + 1, (count, 2), generator=generator, device=device)
    flips = torch.rand(count, generator=generator, device=device) < 0.5
    rows = shifts[:, :1] + torch.arange(height, device=device)  # N x H
    columns = torch.arange(width, device=device)
    columns = shifts[:, 1:] + torch.where(flips[:, None], width - 1 - columns, columns)  # N x W
    images = torch.arange(count, device=device)[:, None, None]
    # Advanced indexing around the channel slice puts the channels last: N x H x W x C.
    return padded[images, :, rows[:, :, None], columns[:, None, :]].permute(0, 3, 1, 2)


def _to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 (any device) -> float32 N x 3 x H x W in [0, 1], as datasets.to_tensor."""
    return pixels.permute(0, 3, 1, 2).float().div_(255)


def package_versions() -> dict[str, str]:
    import torchvision

    from robustbench_lift._version import __version__

    return {
        "robustbench_lift": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def train(
    config: TrainingConfig,
    output: str | Path,
    data_dir: str | None = None,
    download: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains one model and writes ``output`` (safetensors) with its metadata.

    Args:
        config: the recipe; recorded in the metadata.
        output: the checkpoint path to write.
        data_dir: where the data set lives (None: its default place).
        download: fetch the data set if it is missing.
        progress: show a progress bar per epoch.

    Returns:
        The metadata written with the checkpoint. Its ``clean_test_accuracy`` is measured
        on the CPU, where the benchmark evaluates, whatever device trained the model.
    """
    device = training_device(config.device)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    pooling, options = canonical_kind(config.pooling, config.pooling_options)
    options = resolve_options(pooling, options)
    train_set = load_dataset(config.dataset, "train", data_dir, download)
    test_set = load_dataset(config.dataset, "test", data_dir, download)
    order = np.random.default_rng(config.seed).permutation(len(train_set))
    validation = train_set.subset(order[: config.validation_size])
    training = train_set.subset(order[config.validation_size :][: config.train_size])
    if len(training) == 0:
        raise UserError(
            f"no training images left: {len(train_set)} in the split, {config.validation_size} held out for validation"
        )
    mean, std = channel_statistics(training)
    model = build_model(config.architecture, pooling, len(train_set.classes), options, mean, std).to(device)
    learned_lifting = any(pool.learned for pool in lift_pools(model))
    detail_weight = config.detail_weight if learned_lifting else 0.0
    approximation_weight = config.approximation_weight if learned_lifting else 0.0

    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=True,
    )
    steps_per_epoch = math.ceil(len(training) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator(device=device).manual_seed(config.seed)
    # Moved once: uint8 pixels (a quarter of the float size) and labels live on the device.
    images = torch.from_numpy(np.ascontiguousarray(training.images)).to(device)
    labels = torch.from_numpy(training.labels).to(device)
    curve = []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        permutation = torch.randperm(len(training), generator=generator, device=device)
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{pooling} s{config.seed} epoch {epoch + 1}/{config.epochs}",
            leave=False,
            disable=not progress,
        )
        for step in bar:
            batch_indices = permutation[step * config.batch_size : (step + 1) * config.batch_size]
            batch = _augment(_to_float(images[batch_indices]), generator)
            loss = F.cross_entropy(model(batch), labels[batch_indices])
            if detail_weight or approximation_weight:
                detail, approximation = lifting_regularization(model)
                loss = loss + detail_weight * detail + approximation_weight * approximation
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if progress and step % PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        validation_accuracy = accuracy(model, validation.images, validation.labels, device=device)
        curve.append(round(validation_accuracy, 4))
        log.info(
            "%s %s s%d epoch %d: validation accuracy %.4f",
            config.architecture,
            pooling,
            config.seed,
            epoch + 1,
            validation_accuracy,
        )
    training_seconds = time.perf_counter() - started
    model = model.cpu().eval()
    test_accuracy = accuracy(model, test_set.images, test_set.labels)
    metadata = {
        "architecture": config.architecture,
        "pooling": pooling,
        "pooling_options": options,
        "num_classes": len(train_set.classes),
        "dataset": config.dataset,
        "preprocessing": {
            "input": "float RGB in [0, 1], 32 x 32 (Fashion-MNIST zero-padded 28 -> 32, grey replicated)",
            "mean": mean,
            "std": std,
        },
        "seed": config.seed,
        "epochs": config.epochs,
        "training": asdict(config)
        | {"pooling": pooling, "detail_weight": detail_weight, "approximation_weight": approximation_weight},
        "training_images": len(training),
        "validation_accuracy_per_epoch": curve,
        "clean_test_accuracy": round(test_accuracy, 6),
        "test_size": len(test_set),
        "training_seconds": round(training_seconds, 1),
        "training_device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "versions": package_versions(),
    }
    save_checkpoint(model, metadata, output)
    return metadata
