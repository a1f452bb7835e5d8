"""Measures the LiftDownPool options that docs/layers.md leaves to measurement (kernel size K of the
predict/update convolution, depthwise or dense grouping) on the built-in task, to pick
the defaults: short training of small_cnn with each variant, same seed and schedule,
validation accuracy and training cost.

    .venv/bin/python scripts/measure_lift_defaults.py [--epochs 2] [--train-size 20000]

Writes reports/baselines/lift_defaults.csv (committed) and prints it.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from robustbench_lift.data.datasets import channel_statistics, load_dataset
from robustbench_lift.evaluation.inference import accuracy, to_tensor
from robustbench_lift.models import build_model
from robustbench_lift.nn.lifting import lifting_regularization

OUTPUT = Path(__file__).resolve().parents[1] / "reports" / "baselines" / "lift_defaults.csv"


def measure(kernel_size: int, groups: str, epochs: int, train_size: int, seed: int) -> dict:
    torch.manual_seed(seed)
    full = load_dataset("fashion_mnist", "train")
    order = np.random.default_rng(seed).permutation(len(full))
    validation, training = full.subset(order[:5000]), full.subset(order[5000 : 5000 + train_size])
    mean, std = channel_statistics(training)
    model = build_model("small_cnn", "lift", 10, {"kernel_size": kernel_size, "groups": groups}, mean, std)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images, labels = to_tensor(training.images), torch.from_numpy(training.labels)
    generator = torch.Generator().manual_seed(seed)
    # The zoo's one-cycle schedule, so the last epoch anneals and accuracies are comparable.
    total_steps = epochs * -(-len(training) // 128)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=total_steps, pct_start=0.15)
    steps = 0
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        permutation = torch.randperm(len(training), generator=generator)
        for start in range(0, len(training), 128):
            batch = permutation[start : start + 128]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            detail, approximation = lifting_regularization(model)
            loss = loss + 0.01 * detail + 0.01 * approximation
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
    seconds = time.perf_counter() - started
    return {
        "kernel_size": kernel_size,
        "groups": groups,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "validation_accuracy": round(accuracy(model, validation.images, validation.labels), 4),
        "milliseconds_per_step": round(1000 * seconds / steps, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    rows = [
        measure(kernel_size, groups, arguments.epochs, arguments.train_size, arguments.seed)
        for kernel_size, groups in itertools.product((3, 5, 7), ("depthwise", "dense"))
    ]
    table = pd.DataFrame(rows)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUTPUT, index=False)
    print(table.to_csv(index=False))


if __name__ == "__main__":
    main()
