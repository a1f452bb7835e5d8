"""The segmentation benchmark runner: ``robustbench-lift run --task segmentation``.

It resolves segmentation models (the segmentation zoo by default, see
:mod:`robustbench_lift.models.segmentation_zoo`; checkpoints, torchvision segmentation
specs or ``python:`` specs by name), reads the segmentation data set
(``segmentation_dataset``), runs every cell of the ``segmentation`` suite through the
local executor (on the CPU, models in forked one-thread processes, ``model_processes``)
and writes ``results.csv``, ``summary.csv`` and ``run.json`` in the same long format as a
classification run, plus the report's prediction grid as small PNGs
(``segmentation_grid/``, with ``segmentation_grid.json``) so the report needs no torch.

Unlike the classification runner it keeps no cell store: an interrupted segmentation run
starts again from the beginning (a quick run takes minutes).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.suites import SUITES, ModelEntry, RunContext
from robustbench_lift.evaluation.suites.segmentation import SegmentationSuite, selected_segmentation_corruptions
from robustbench_lift.metrics.seeds import POOLING_SUMMARY_FILE, pooling_summary
from robustbench_lift.results import RESULT_COLUMNS, write_run
from robustbench_lift.run.config import RunConfig, validate
from robustbench_lift.run.executors import Cell, CellResult, LocalExecutor
from robustbench_lift.run.progress import CellProgress
from robustbench_lift.utils.digest import array_digest

__all__ = [
    "GRID_FOLDER",
    "GRID_MANIFEST",
    "QUICK_SEGMENTATION_SAMPLE_SIZE",
    "QUICK_SEGMENTATION_SEQUENCE_COUNT",
    "SEGMENTATION_SAMPLE_SIZE",
    "SEGMENTATION_SEQUENCE_COUNT",
    "class_palette",
    "run_segmentation_benchmark",
    "segmentation_config",
]

log = logging.getLogger(__name__)

# Sized so the 18-model zoo runs in under 10 minutes on 2 CPU cores (README, docs/segmentation.md).
SEGMENTATION_SAMPLE_SIZE = 80
SEGMENTATION_SEQUENCE_COUNT = 12
QUICK_SEGMENTATION_SAMPLE_SIZE = 40
QUICK_SEGMENTATION_SEQUENCE_COUNT = 6
GRID_FOLDER = "segmentation_grid"
GRID_MANIFEST = "segmentation_grid.json"
_GARMENT_SCENES = "garment_scenes"


def segmentation_config(quick: bool = False) -> RunConfig:
    """The built-in segmentation benchmark (``--quick``: fewer scenes, severities 1, 3, 5).

    Args:
        quick: the small CI preset.

    Returns:
        A config running the ``segmentation`` suite alone on garment scenes.
    """
    if quick:
        return RunConfig(
            suites=["segmentation"],
            run_name="segmentation-quick",
            sample_size=QUICK_SEGMENTATION_SAMPLE_SIZE,
            severities=[1, 3, 5],
            segmentation_sequence_count=QUICK_SEGMENTATION_SEQUENCE_COUNT,
        )
    return RunConfig(
        suites=["segmentation"],
        run_name="segmentation",
        sample_size=SEGMENTATION_SAMPLE_SIZE,
        segmentation_sequence_count=SEGMENTATION_SEQUENCE_COUNT,
    )


def is_segmentation_run(config: RunConfig) -> bool:
    """Whether ``config`` selects the segmentation suite (which then must run alone)."""
    return "segmentation" in config.suites


def zoo_model_names() -> list[str]:
    """The segmentation zoo models present; a one-line UserError naming the training command when none is."""
    from robustbench_lift.models.segmentation_zoo import (
        SEGMENTATION_TRAINING_COMMAND,
        SEGMENTATION_ZOO_DIRECTORY,
        segmentation_zoo_names,
    )

    names = segmentation_zoo_names()
    if not names:
        raise UserError(
            f"the segmentation zoo has no weights in {SEGMENTATION_ZOO_DIRECTORY}; train it with: "
            f"{SEGMENTATION_TRAINING_COMMAND} (or name segmentation models with --models)"
        )
    return names


def resolve_segmentation_models(names: list[str], classes: list[str]) -> list[ModelEntry]:
    """Segmentation models by name (default: the segmentation zoo), checked against the data's classes."""
    from robustbench_lift.models._factory import resolve_model

    names = names or zoo_model_names()
    entries = []
    for name in names:
        entry = ModelEntry(*resolve_model(name))
        if entry.metadata.get("task") != "segmentation":
            raise UserError(f"model {entry.name!r} is not a segmentation model; the segmentation suite needs one")
        count = entry.metadata.get("num_classes")
        if count is not None and int(count) != len(classes):
            raise UserError(
                f"model {entry.name!r} predicts {count} classes but the segmentation data has {len(classes)}"
            )
        entries.append(entry)
    if len({entry.name for entry in entries}) != len(entries):
        raise UserError("a model is named twice")
    return entries


def _load_data(config: RunConfig) -> tuple[Any, np.ndarray]:
    """The sampled segmentation data set and the sample's positions in the split."""
    from robustbench_lift.data.base import sample_indices
    from robustbench_lift.data.segmentation import generate_garment_scenes, load_segmentation_dataset

    name = config.segmentation_dataset
    if name == _GARMENT_SCENES:
        # Scenes are generated, not sampled: scene i of the test split, i < sample_size
        # (seed 0 gives the zoo's own test scenes).
        count = config.sample_size or 1000
        split = config.segmentation_split or "test"
        data = generate_garment_scenes(count, split, config.seed, data_dir=config.data_dir)
        return data, np.arange(count)
    options: dict[str, Any] = {"fit": config.segmentation_fit}
    if config.segmentation_size is not None:
        options["size"] = list(config.segmentation_size) * (2 if len(config.segmentation_size) == 1 else 1)
    source = load_segmentation_dataset(name, config.segmentation_split or "val", config.data_dir, **options)
    indices = sample_indices(len(source), config.sample_size, config.seed, name)
    return source.load(indices), indices


def class_palette(count: int) -> np.ndarray:
    """PASCAL VOC's color map (bit-interleaved RGB per class id), uint8 256 x 3; 255 (ignore) is white."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    palette[255] = (255, 255, 255)
    return palette


def _grid_condition(config: RunConfig) -> str | None:
    """The corrupted condition the grid shows: gaussian noise at the middle severity when run."""
    names = selected_segmentation_corruptions(config)
    severities = sorted(config.severities)
    severity = severities[len(severities) // 2]
    name = "gaussian_noise" if "gaussian_noise" in names else names[0] if names else None
    return None if name is None else f"{name}/{severity}"


def _write_grid(
    staging: Path,
    data: Any,
    models: list[ModelEntry],
    arrays: dict[str, dict[str, np.ndarray]],
    config: RunConfig,
    corrupted: np.ndarray | None,
) -> None:
    """Saves input, ground truth and each model's prediction (clean and corrupted) as PNGs."""
    from PIL import Image

    count = min(config.segmentation_grid_images, len(data))
    condition = _grid_condition(config)
    if count == 0:
        return
    folder = staging / GRID_FOLDER
    folder.mkdir()
    palette = class_palette(len(data.classes))
    manifest: dict[str, Any] = {"condition": condition, "classes": data.classes, "images": []}

    def save(position: int, key: str, pixels: np.ndarray) -> str:
        file = f"{position}-{key}.png"
        Image.fromarray(pixels).save(folder / file)
        return f"{GRID_FOLDER}/{file}"

    for position in range(count):
        files: dict[str, Any] = {}
        files["input"] = save(position, "input", data.images[position])
        files["truth"] = save(position, "truth", palette[data.labels[position]])
        if corrupted is not None:
            files["input_corrupted"] = save(position, "input-corrupted", corrupted[position])
        files["models"] = {}
        for index, entry in enumerate(models):
            predictions = {}
            for key, cell in (("clean", "clean"), ("corrupted", condition)):
                grid = arrays.get(entry.name, {}).get(f"{cell}/grid")
                if grid is not None and position < len(grid):
                    predictions[key] = save(position, f"model{index}-{key}", palette[grid[position]])
            files["models"][entry.name] = predictions
        manifest["images"].append(files)
    (staging / GRID_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _evaluate(
    suite: SegmentationSuite,
    entries: list[ModelEntry],
    prepared: dict[str, Any],
    context: RunContext,
    conditions: list[str],
    config: RunConfig,
) -> dict[str, tuple[list[dict[str, Any]], dict[str, np.ndarray], float]]:
    """Every model on every condition through the local executor (on the CPU, models in
    forked one-thread processes, ``model_processes``), with the progress bar and its ETA.

    Returns:
        Per model: its finalized rows in condition order, its per-image arrays and the
        seconds its cells took.
    """
    cells = [Cell(entry.name, suite.name, condition) for entry in entries for condition in conditions]
    executor = LocalExecutor(config)
    parallelism = executor.parallelism(len(entries), str(context.device))
    results: dict[tuple[str, str, str], CellResult] = {}

    def work(suite_name: str, condition: str) -> float:
        return suite.expected_work(condition, context)

    with executor, CellProgress([cell.key for cell in cells], work, parallelism=parallelism) as progress:
        for result in executor.run(cells, {entry.name: entry for entry in entries}, {suite.name: prepared}, context):
            results[result.cell.key] = result
            progress.finished(result.cell.key, result.seconds)
    outputs = {}
    for entry in entries:
        finished = [results[(entry.name, suite.name, condition)] for condition in conditions]
        per_image: dict[str, np.ndarray] = {}
        rows: list[dict[str, Any]] = []
        for result in finished:
            rows += result.rows
            per_image.update(result.per_image)
        rows = suite.finalize(entry.name, rows, per_image, context)
        outputs[entry.name] = (rows, per_image, sum(result.seconds for result in finished))
        log.info("%s: clean mIoU %.4f", entry.name, next((r.get("miou", np.nan) for r in rows), np.nan))
    return outputs


def _check_previous(directory: Path, config: RunConfig, overwrite: bool) -> None:
    record = directory / "run.json"
    if overwrite or not record.is_file():
        return
    try:
        previous = json.loads(record.read_text()).get("config")
    except (OSError, ValueError):
        previous = None
    if previous is not None and previous != json.loads(json.dumps(config.to_dict(), default=str)):
        raise UserError(
            f"{directory} holds a finished run of another config; choose another --run-name or pass --overwrite"
        )


def run_segmentation_benchmark(
    config: RunConfig, models: list[ModelEntry] | None = None, overwrite: bool = False
) -> Path:
    """Runs the ``segmentation`` suite on every model and writes the run; returns its folder.

    Args:
        config: a config selecting the ``segmentation`` suite alone.
        models: loaded models (None: resolve ``config.models``, default the segmentation zoo).
        overwrite: replace a finished run of another config in the run folder.
    """
    import torch

    from robustbench_lift.evaluation.inference import resolve_device
    from robustbench_lift.training import package_versions

    validate(config)
    suite = cast(SegmentationSuite, SUITES.get("segmentation"))
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    directory = config.run_directory
    _check_previous(directory, config, overwrite)
    names = list(config.models) or (zoo_model_names() if models is None else [])
    data, indices = _load_data(config)
    data.check()
    entries = resolve_segmentation_models(names, data.classes) if models is None else list(models)
    device = resolve_device(config.device)
    context = RunContext(config, cast(Any, data), np.asarray(indices), device=device)
    conditions = suite.conditions(context)
    log.info(
        "segmentation run %s: %d models, %d images of %s, %d cells",
        config.run_name, len(entries), len(data), data.name, len(entries) * len(conditions),
    )  # fmt: skip
    tick = time.perf_counter()
    prepared = suite.prepare(context, conditions)
    timings: dict[str, Any] = {"prepare": {suite.name: round(time.perf_counter() - tick, 2)}, "evaluate": {}}
    outputs = _evaluate(suite, entries, prepared, context, conditions, config)
    rows: list[dict[str, Any]] = []
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for entry in entries:
        model_rows, arrays[entry.name], seconds = outputs[entry.name]
        timings["evaluate"][f"{entry.name}/{suite.name}"] = round(seconds, 2)
        rows += [
            {
                "run": config.run_name,
                "model": entry.name,
                "architecture": entry.architecture,
                "pooling": entry.pooling,
                "dataset": data.name,
            }
            | row
            for row in model_rows
        ]
    grid_condition = _grid_condition(config)
    corrupted = None
    if grid_condition is not None and config.segmentation_grid_images:
        name, severity = grid_condition.rsplit("/", 1)
        corrupted = prepared["corrupted"][(name, int(severity))][: config.segmentation_grid_images].copy()
    del prepared
    results = pd.DataFrame(rows)
    results = results.reindex(columns=RESULT_COLUMNS + [c for c in results.columns if c not in RESULT_COLUMNS])
    summary = pd.DataFrame(index=pd.Index([entry.name for entry in entries], name="model"))
    summary["architecture"] = [entry.architecture for entry in entries]
    summary["pooling"] = [entry.pooling for entry in entries]
    summary["seed"] = [entry.metadata.get("seed", np.nan) for entry in entries]
    summary["recorded_clean_miou"] = [entry.metadata.get("clean_test_miou", np.nan) for entry in entries]
    summary = summary.join(suite.summarize(results, arrays, entries, context), how="left")
    timings["total_seconds"] = round(time.perf_counter() - started, 2)
    record = {
        "run_name": config.run_name,
        "task": "segmentation",
        "config": config.to_dict(),
        "seed": config.seed,
        "dataset": data.name,
        "classes": list(data.classes),
        "sample_size": len(data),
        "sample_digest": array_digest(np.asarray(indices, dtype=np.int64), data.images, data.labels),
        "device": device,
        "executor": "local",
        "cells": {"total": len(entries) * len(conditions), "computed": len(entries) * len(conditions), "resumed": 0},
        "models": {
            entry.name: {
                key: entry.metadata.get(key)
                for key in (
                    "architecture",
                    "pooling",
                    "pooling_options",
                    "dataset",
                    "clean_test_miou",
                    "epochs",
                    "seed",
                )
            }
            for entry in entries
        },
        "versions": package_versions() | {"pandas": pd.__version__},
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "timings": timings,
        "suites": {suite.name: suite.record(config)},
        "segmentation_grid": GRID_MANIFEST if config.segmentation_grid_images else None,
    }

    # Per pooling kind over its training seeds, as classification runs write it.
    kinds = pooling_summary(summary.reset_index(), record["models"])

    def extra(staging: Path) -> None:
        _write_grid(staging, data, entries, arrays, config, corrupted)
        kinds.to_csv(staging / POOLING_SUMMARY_FILE, index=False)

    written = write_run(directory, results, summary.reset_index(), record, extra=extra)
    log.info("wrote %s in %.1f s", written, timings["total_seconds"])
    return written
