"""Trains the model zoo: one small_cnn per pooling kind and training seed on Fashion-MNIST,
same architecture and recipe; only the pooling and the seed differ.

    .venv/bin/python scripts/train_zoo.py [--kinds max avg ...] [--seeds 0 1 2] [--epochs 10]
        [--device cpu|cuda] [--jobs N] [--threads T] [--output-dir DIR] [--train-size N]

Writes DIR/fashion_mnist-small_cnn-<kind>-s<seed>.safetensors (default DIR: the package's
zoo_weights). Resumable: a model whose file exists is skipped (files are written
atomically, so an existing file is complete). ``--jobs N`` trains N models at once, each
in its own process with T torch threads (default: CPU cores / N); on a GPU the processes
share it. ``--train-size`` (and ``--validation-size``) train on a subset: smoke tests,
not zoo models.
Exit status: 0 when every model is trained or present, 1 when one failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from robustbench_lift.errors import UserError  # noqa: E402
from robustbench_lift.models.zoo import (  # noqa: E402
    ZOO_DIRECTORY,
    ZOO_KINDS,
    ZOO_POOLING_OPTIONS,
    ZOO_SEEDS,
    zoo_file_name,
    zoo_model_name,
)

# The slowest kinds first, so that parallel jobs finish together.
_COST_ORDER = ("lift", "cdf53_sum", "cdf53_ll", "haar_sum", "blur", "skip", "avg", "max")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--kinds", nargs="+", default=list(ZOO_KINDS), help=f"pooling kinds (default: {' '.join(ZOO_KINDS)})"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(ZOO_SEEDS), help="training seeds (default: 0 1 2)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--jobs", type=int, default=1, help="models trained at once, one process each")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job (default: CPU cores / jobs)")
    parser.add_argument("--output-dir", type=Path, default=ZOO_DIRECTORY)
    parser.add_argument(
        "--train-size",
        "--limit",
        dest="train_size",
        type=int,
        default=None,
        help="train on this many images only (smoke tests)",
    )
    parser.add_argument(
        "--validation-size", type=int, default=None, help="held-out validation images (default: the recipe's 5000)"
    )
    parser.add_argument("--data-dir", default=None)
    return parser.parse_args(argv)


def _validate(arguments: argparse.Namespace) -> None:
    from robustbench_lift.nn.kinds import POOLINGS
    from robustbench_lift.training import training_device

    unknown = [kind for kind in arguments.kinds if kind not in POOLINGS]
    if unknown:
        raise UserError(f"unknown pooling kind {unknown[0]!r}; the zoo's: {', '.join(ZOO_KINDS)}")
    if any(seed < 0 for seed in arguments.seeds):
        raise UserError("seeds must be non-negative")
    for name, value, least in (
        ("--jobs", arguments.jobs, 1),
        ("--epochs", arguments.epochs, 1),
        ("--threads", arguments.threads, 1),
        ("--train-size", arguments.train_size, 1),
        ("--validation-size", arguments.validation_size, 1),
    ):
        if value is not None and value < least:
            raise UserError(f"{name} must be at least {least}, got {value}")
    training_device(arguments.device)
    if arguments.output_dir.exists() and not arguments.output_dir.is_dir():
        raise UserError(f"--output-dir {arguments.output_dir} is not a directory")


def _train_one(kind: str, seed: int, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Trains (kind, seed) in this process; returns (model name, metadata)."""
    from robustbench_lift.training import TrainingConfig, train

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [{kind} s{seed}] %(message)s")
    config = TrainingConfig(
        architecture="small_cnn",
        pooling=kind,
        pooling_options=dict(ZOO_POOLING_OPTIONS.get(kind, {})),
        epochs=settings["epochs"],
        seed=seed,
        threads=settings["threads"],
        device=settings["device"],
        train_size=settings["train_size"],
        **({} if settings["validation_size"] is None else {"validation_size": settings["validation_size"]}),
    )
    output = Path(settings["output_dir"]) / zoo_file_name(kind, seed)
    metadata = train(config, output, data_dir=settings["data_dir"], progress=settings["progress"])
    return zoo_model_name(kind, seed), metadata


def main(argv: list[str] | None = None) -> int:
    arguments = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        _validate(arguments)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    order = {kind: index for index, kind in enumerate(_COST_ORDER)}
    tasks = sorted(
        ((kind, seed) for kind in dict.fromkeys(arguments.kinds) for seed in dict.fromkeys(arguments.seeds)),
        key=lambda task: (order.get(task[0], -1), task[1]),
    )
    todo = [(kind, seed) for kind, seed in tasks if not (arguments.output_dir / zoo_file_name(kind, seed)).exists()]
    for kind, seed in tasks:
        if (kind, seed) not in todo:
            logging.info("%s: present, skipped", zoo_model_name(kind, seed))
    jobs = min(arguments.jobs, max(1, len(todo)))
    settings = {
        "epochs": arguments.epochs,
        "threads": arguments.threads or max(1, (os.cpu_count() or 1) // jobs),
        "device": arguments.device,
        "train_size": arguments.train_size,
        "validation_size": arguments.validation_size,
        "output_dir": str(arguments.output_dir),
        "data_dir": arguments.data_dir,
        "progress": jobs == 1,  # parallel progress bars would interleave
    }
    started = time.perf_counter()
    failed: list[str] = []

    def report(name: str, metadata: dict[str, Any]) -> None:
        logging.info(
            "%s: test accuracy %.4f, validation curve %s, %.0f s",
            name,
            metadata["clean_test_accuracy"],
            metadata["validation_accuracy_per_epoch"],
            metadata["training_seconds"],
        )

    if jobs == 1:
        for kind, seed in todo:
            try:
                report(*_train_one(kind, seed, settings))
            except Exception as error:  # one model's failure must not lose the others
                logging.error("%s failed: %s", zoo_model_name(kind, seed), error)
                failed.append(zoo_model_name(kind, seed))
    else:
        # spawn: CUDA cannot be used in forked children.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(_train_one, kind, seed, settings): zoo_model_name(kind, seed) for kind, seed in todo}
            for future in concurrent.futures.as_completed(futures):
                try:
                    report(*future.result())
                except Exception as error:
                    logging.error("%s failed: %s", futures[future], error)
                    failed.append(futures[future])
    logging.info(
        "%d trained, %d present, %d failed in %.0f s",
        len(todo) - len(failed),
        len(tasks) - len(todo),
        len(failed),
        time.perf_counter() - started,
    )
    if failed:
        print(f"error: training failed for {', '.join(sorted(failed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
