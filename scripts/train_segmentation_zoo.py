"""Trains the segmentation zoo: one segnet_small per pooling kind and seed on garment scenes
(Fashion-MNIST garments on textured backgrounds), same recipe for every kind; only the
down/up pooling pair differs.

    python scripts/train_segmentation_zoo.py [--kinds max avg skip blur lift haar] [--seeds 0 1 2]
        [--device cpu|cuda] [--jobs N] [--output-dir DIR] [--epochs E]

Resumable: a model whose checkpoint exists is skipped (``--force`` retrains). Writes
``<output-dir>/garment_scenes-segnet_small-<kind>-seed<s>.safetensors`` with metadata
(recipe, scene generator config, curves, clean test mIoU with its bootstrap interval,
versions); the scenes are generated once into ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from robustbench_lift.errors import UserError  # noqa: E402
from robustbench_lift.models.segmentation_zoo import (  # noqa: E402
    SEGMENTATION_ZOO_DIRECTORY,
    SEGMENTATION_ZOO_KINDS,
    SEGMENTATION_ZOO_SEEDS,
)
from robustbench_lift.training_segmentation import SegmentationTrainingConfig, train_segmentation_zoo  # noqa: E402

# The zoo loader (robustbench_lift.models.segmentation_zoo) reads exactly what this writes.
ZOO_KINDS = SEGMENTATION_ZOO_KINDS
DEFAULT_OUTPUT = SEGMENTATION_ZOO_DIRECTORY


def main(argv: list[str] | None = None) -> int:
    defaults = SegmentationTrainingConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(ZOO_KINDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEGMENTATION_ZOO_SEEDS))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every tensor of a training step lives there)")
    parser.add_argument("--jobs", type=int, default=1, help="models trained in parallel processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="scene cache (default ~/.cache/robustbench-lift/garment-scenes)"
    )
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--optimizer", default=defaults.optimizer, help="sgd or adamw")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--train-scenes", type=int, default=defaults.train_scenes)
    parser.add_argument("--validation-scenes", type=int, default=defaults.validation_scenes)
    parser.add_argument("--test-scenes", type=int, default=defaults.test_scenes)
    parser.add_argument(
        "--widths", nargs="+", type=int, default=list(defaults.widths), help="encoder stage widths (zoo: 16 32 64)"
    )
    parser.add_argument("--force", action="store_true", help="retrain models whose checkpoint exists")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    base = SegmentationTrainingConfig(
        epochs=arguments.epochs,
        batch_size=arguments.batch_size,
        optimizer=arguments.optimizer,
        learning_rate=arguments.learning_rate,
        weight_decay=arguments.weight_decay,
        train_scenes=arguments.train_scenes,
        validation_scenes=arguments.validation_scenes,
        test_scenes=arguments.test_scenes,
        widths=tuple(arguments.widths),
        threads=arguments.threads,
        device=arguments.device,
    )
    started = time.perf_counter()
    try:
        records = train_segmentation_zoo(
            arguments.kinds, arguments.seeds, arguments.output_dir, base, arguments.jobs,
            arguments.cache_dir, arguments.data_dir, arguments.force, progress=True,
        )  # fmt: skip
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for record in records:
        if record["status"] == "trained":
            logging.info(
                "%s seed %d: test mIoU %.4f, %.0f s (%.1f s/epoch)", record["kind"], record["seed"],
                record["clean_test_miou"], record["training_seconds"],
                sum(record["epoch_seconds"]) / len(record["epoch_seconds"]),
            )  # fmt: skip
        else:
            logging.info("%s seed %d: checkpoint exists, skipped (%s)", record["kind"], record["seed"], record["path"])
    logging.info("zoo done in %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
