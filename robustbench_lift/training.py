"""Training a model of the zoo: SGD with cosine decay, light augmentation, the lifting
regularisers, a held-out validation curve, and a checkpoint with its metadata record."""
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
from robustbench_lift.evaluation.inference import accuracy, to_tensor
from robustbench_lift.models._builder import build_model
from robustbench_lift.models.checkpoints import save_checkpoint
from robustbench_lift.nn.lifting import lift_pools, lifting_regularization
from robustbench_lift.nn.pooling import resolve_options

log = logging.getLogger(__name__)


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
    seed: int = 0
    threads: int = 1  # one thread: on two shared cores, two threads thrash (4x slower measured)


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 2-px translation (zero padded) and horizontal flip, per image."""
    count, _, height, width = batch.shape
    padded = F.pad(batch, (2, 2, 2, 2))
    shifts = torch.randint(0, 5, (count, 2), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5
    out = torch.empty_like(batch)
    for index in range(count):
        top, left = int(shifts[index, 0]), int(shifts[index, 1])
        crop = padded[index, :, top : top + height, left : left + width]
        out[index] = crop.flip(-1) if flips[index] else crop
    return out


def package_versions() -> dict[str, str]:
    import torchvision

    from robustbench_lift._version import __version__

    return {"robustbench_lift": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__, "python": platform.python_version()}


def train(config: TrainingConfig, output: str | Path, data_dir: str | None = None, download: bool = False) -> dict[str, Any]:
    """Trains one model and writes ``output`` (safetensors) with its metadata; returns the metadata."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    options = resolve_options(config.pooling, config.pooling_options)
    train_set = load_dataset(config.dataset, "train", data_dir, download)
    test_set = load_dataset(config.dataset, "test", data_dir, download)
    order = np.random.default_rng(config.seed).permutation(len(train_set))
    validation = train_set.subset(order[: config.validation_size])
    training = train_set.subset(order[config.validation_size :])
    mean, std = channel_statistics(training)
    model = build_model(config.architecture, config.pooling, len(train_set.classes), options, mean, std)
    learned_lifting = any(pool.scheme == "learned" for pool in lift_pools(model))
    detail_weight = config.detail_weight if learned_lifting else 0.0
    approximation_weight = config.approximation_weight if learned_lifting else 0.0

    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True)
    steps_per_epoch = math.ceil(len(training) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch, pct_start=0.15)
    generator = torch.Generator().manual_seed(config.seed)
    images = to_tensor(training.images)
    labels = torch.from_numpy(training.labels)
    curve = []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        permutation = torch.randperm(len(training), generator=generator)
        progress = tqdm(range(steps_per_epoch), desc=f"{config.pooling} epoch {epoch + 1}/{config.epochs}", leave=False)
        running = 0.0
        for step in progress:
            batch_indices = permutation[step * config.batch_size : (step + 1) * config.batch_size]
            batch = _augment(images[batch_indices], generator)
            loss = F.cross_entropy(model(batch), labels[batch_indices])
            if detail_weight or approximation_weight:
                detail, approximation = lifting_regularization(model)
                loss = loss + detail_weight * detail + approximation_weight * approximation
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
            progress.set_postfix(loss=f"{running:.3f}")
        validation_accuracy = accuracy(model, validation.images, validation.labels)
        curve.append(round(validation_accuracy, 4))
        log.info("%s %s epoch %d: validation accuracy %.4f", config.architecture, config.pooling, epoch + 1, validation_accuracy)
    test_accuracy = accuracy(model, test_set.images, test_set.labels)
    metadata = {
        "architecture": config.architecture,
        "pooling": config.pooling,
        "pooling_options": options,
        "num_classes": len(train_set.classes),
        "dataset": config.dataset,
        "preprocessing": {"input": "float RGB in [0, 1], 32 x 32 (Fashion-MNIST zero-padded 28 -> 32, grey replicated)", "mean": mean, "std": std},
        "seed": config.seed,
        "epochs": config.epochs,
        "training": asdict(config) | {"detail_weight": detail_weight, "approximation_weight": approximation_weight},
        "validation_accuracy_per_epoch": curve,
        "clean_test_accuracy": round(test_accuracy, 6),
        "test_size": len(test_set),
        "training_seconds": round(time.perf_counter() - started, 1),
        "versions": package_versions(),
    }
    model.eval()
    save_checkpoint(model, metadata, output)
    return metadata
