"""Reproduces the shipped model zoo: one small_cnn per pooling kind on Fashion-MNIST,
same architecture, schedule and seed; only the pooling differs.

    .venv/bin/python scripts/train_zoo.py [--kinds max avg ...] [--epochs 10]

Writes robustbench_lift/zoo_weights/fashion_mnist-small_cnn-<kind>.safetensors.
"""
from __future__ import annotations

import argparse
import logging

from robustbench_lift.models.zoo import ZOO_KINDS, zoo_checkpoint_path
from robustbench_lift.training import TrainingConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(ZOO_KINDS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for kind in arguments.kinds:
        config = TrainingConfig(architecture="small_cnn", pooling=kind, epochs=arguments.epochs, seed=arguments.seed)
        metadata = train(config, zoo_checkpoint_path(kind), data_dir=arguments.data_dir)
        logging.info("%s: test accuracy %.4f, curve %s, %.0f s", kind, metadata["clean_test_accuracy"], metadata["validation_accuracy_per_epoch"], metadata["training_seconds"])


if __name__ == "__main__":
    main()
