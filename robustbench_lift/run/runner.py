"""The evaluation runner: resolves models, evaluates every cell (model x suite x condition)
through an executor, commits each cell to the run's store as it finishes, and writes
results.csv, summary.csv and run.json (derived from the store) atomically.

Cells are the unit: a suite names its conditions from the config alone, so the runner
knows which cells the store already holds before preparing anything, prepares inputs only
for the conditions still pending (once, in this process: per input group of models that
take the same images, in batches of conditions bounded in memory, see
:mod:`robustbench_lift.evaluation.inputs`), and hands the pending cells to the executor
(``local`` or ``ray``, see :mod:`robustbench_lift.run.executors`). Rerunning the same
command resumes: finished cells are skipped (see :mod:`robustbench_lift.run.store` for the
store and the resume rule).

Results are written into a hidden temporary folder beside the target, together with a
copy of the store, and renamed into place at the end, so an interrupted or failed run
never leaves partial result files; the cells it finished stay in
``<output_dir>/.<run_name>.inprogress/store.sqlite`` until a rerun completes the run.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustbench_lift._version import __version__
from robustbench_lift.data.base import sample_indices
from robustbench_lift.data.datasets import load_dataset
from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.inputs import RunInputs, check_classes, group_models, with_classes, with_preprocessing
from robustbench_lift.evaluation.precision import precision_record
from robustbench_lift.evaluation.suites import SUITES, ModelEntry, RunContext, Suite
from robustbench_lift.metrics.seeds import POOLING_SUMMARY_FILE, pooling_summary
from robustbench_lift.models._factory import resolve_model
from robustbench_lift.models.zoo import zoo_names
from robustbench_lift.per_image import FILE_NAME as PER_IMAGE_FILE
from robustbench_lift.per_image import collect, write_per_image
from robustbench_lift.results import RESULT_COLUMNS, write_run
from robustbench_lift.run.config import RunConfig, validate
from robustbench_lift.run.executors import EXECUTORS, Cell, Executor
from robustbench_lift.run.progress import CellProgress
from robustbench_lift.run.store import STORE_NAME, RunStore, Store, config_hash, model_fingerprint
from robustbench_lift.utils.digest import array_digest

log = logging.getLogger(__name__)

#: Prepared inputs (corrupted copies of the sample, perturbation frames) held at once, in
#: bytes: the runner prepares and evaluates a suite's conditions in batches within it.
PREPARED_BYTES = 2 * 2**30


def resolve_models(names: list[str]) -> list[ModelEntry]:
    """Zoo names (``small_cnn-lift``, ``lift``), checkpoint paths, pretrained-model specs
    (``torchvision:resnet18:IMAGENET1K_V1``, see :mod:`robustbench_lift.models.pretrained`)
    or ``python:`` specs, each optionally named ``NAME=SPEC`` -> loaded models."""
    if not names:
        names = zoo_names()
        if not names:
            raise UserError(
                "the model zoo has no weights; run scripts/train_zoo.py or name checkpoint files with --models"
            )
    entries = [ModelEntry(*resolve_model(name)) for name in names]
    _check_unique_names(entries)
    return entries


def _check_unique_names(entries: list[ModelEntry]) -> None:
    seen = set()
    for entry in entries:
        if entry.name in seen:
            raise UserError(f"model {entry.name!r} is named twice")
        seen.add(entry.name)


def _versions() -> dict[str, str]:
    import torchvision

    return {
        "robustbench_lift": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
    }


def plan_cells(models: list[ModelEntry], suites: list[Suite], context: RunContext) -> list[Cell]:
    """Every cell of a run, in result order (model, then suite, then condition)."""
    conditions = {suite.name: suite.conditions(context) for suite in suites}
    return [
        Cell(entry.name, suite.name, condition)
        for entry in models
        for suite in suites
        for condition in conditions[suite.name]
    ]


def run_benchmark(config: RunConfig, models: list[ModelEntry] | None = None, overwrite: bool = False) -> Path:
    """Runs every suite of ``config`` on every model; returns the run folder.

    Resumes from the run's store when the same config ran (part of) this run before.

    Args:
        config: what to run.
        models: the models, already loaded (e.g. modules given to ``evaluate``); None
            resolves ``config.models``, which then only describes them.
        overwrite: replace a finished run of another config in the run folder; without
            it such a run is refused with one line (:mod:`robustbench_lift.run.store`).

    Returns:
        The run folder, ``<output_dir>/<run_name>``.
    """
    from robustbench_lift.run.segmentation import is_segmentation_run, run_segmentation_benchmark

    if is_segmentation_run(config):  # segmentation data and models: its own, store-less runner
        return run_segmentation_benchmark(config, models, overwrite)
    validate(config)
    executor = EXECUTORS.get(config.executor)(config)
    executor.check()  # e.g. an unreachable Ray cluster: fail before loading anything
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    timings: dict[str, Any] = {"prepare": {}, "evaluate": {}}
    models = [
        with_preprocessing(entry) for entry in (list(models) if models is not None else resolve_models(config.models))
    ]
    _check_unique_names(models)
    full = load_dataset(config.dataset, config.split, config.data_dir, config.download)
    check_classes(models, full, config.dataset)
    indices = sample_indices(len(full), config.sample_size, config.seed, config.dataset)
    inputs = RunInputs(full, indices, group_models(models, full), config.workers)
    dataset = inputs.first_dataset()
    context = RunContext(config, dataset, indices, device=executor.context_device())
    executor.start()  # connects (or fails with one line) before anything is written
    try:
        directory, computed, resumed = _run_cells(
            config, executor, models, inputs, context, started, timings, overwrite
        )
    finally:
        executor.close()
    log.info(
        "wrote %s in %.1f s (%d cells computed, %d resumed)", directory, timings["total_seconds"], computed, resumed
    )
    return directory


def _run_cells(
    config: RunConfig,
    executor: Executor,
    models: list[ModelEntry],
    inputs: RunInputs,
    context: RunContext,
    started: float,
    timings: dict[str, Any],
    overwrite: bool = False,
) -> tuple[Path, int, int]:
    """Resumes or opens the run's store, evaluates the pending cells, writes the run.

    Cells go input group by input group (each group's images decoded once), and within
    a group suite by suite in batches of conditions whose prepared inputs fit
    :data:`PREPARED_BYTES`; each batch's inputs are generated once and freed after it."""
    dataset, indices = context.dataset, inputs.indices
    suites = [SUITES.get(name) for name in config.suites]
    plan = plan_cells(models, suites, context)
    fingerprints = {entry.name: model_fingerprint(entry.model, entry.metadata) for entry in models}
    sample_digest = array_digest(np.asarray(indices, dtype=np.int64), dataset.images)
    hash_extra = {"version": __version__, "sample": sample_digest}
    hash_value = config_hash(config.to_dict(), hash_extra)
    log.info(
        "run %s: %d models, %d images of %s/%s, suites %s, %d cells, executor %s",
        config.run_name,
        len(models),
        len(dataset),
        config.dataset,
        config.split,
        ", ".join(config.suites),
        len(plan),
        config.executor,
    )

    with RunStore.open(
        config.run_directory, hash_value, config.to_dict(), hash_extra, overwrite=overwrite
    ) as run_store:
        store = run_store.store
        finished = store.finished()
        stale = [cell.key for cell in plan if cell.key in finished and finished[cell.key] != fingerprints[cell.model]]
        if stale:
            log.warning(
                "%d stored cells were computed with other weights of the same model name; recomputing them", len(stale)
            )
            store.discard(stale)
            finished = store.finished()
        pending = [cell for cell in plan if cell.key not in finished]
        resumed = len(plan) - len(pending)
        if resumed:
            log.info(
                "resuming from the %s: %d of %d cells done, %d to go",
                run_store.resumed_from,
                resumed,
                len(plan),
                len(pending),
            )
        if pending:
            log.info(
                "committing cells to %s as they finish; if interrupted, rerun the same command to resume", store.path
            )

        computed = 0
        by_name = {entry.name: entry for entry in models}
        suite_by_name = {suite.name: suite for suite in suites}

        def work(suite: str, condition: str) -> float:
            return suite_by_name[suite].expected_work(condition, context)

        parallelism = executor.parallelism(len({cell.model for cell in pending}), str(context.device))
        with CellProgress([cell.key for cell in pending], work, parallelism=parallelism) as progress:
            for group in inputs.groups:
                cells = [cell for cell in pending if cell.model in group.models]
                if not cells:
                    continue
                group_context = inputs.context(group, context)
                entries = {
                    name: with_classes(by_name[name], group_context.dataset, config.dataset) for name in group.models
                }
                if len(inputs.groups) > 1:
                    log.info("inputs %s for %s", group.describe(inputs.data), ", ".join(group.models))
                for batch in _batches(suites, cells, group_context.dataset.images.nbytes):
                    prepared = _prepare(suites, batch, group_context, timings, executor)
                    for result in executor.run(batch, entries, prepared, group_context):
                        store.commit_cell(
                            result.cell.key,
                            fingerprints[result.cell.model],
                            result.rows,
                            result.per_image,
                            result.device,
                            result.seconds,
                        )
                        computed += 1
                        progress.finished(result.cell.key, result.seconds)
                    del prepared
                del group_context

        results, summary, devices, timings["evaluate"], per_image = _tables(
            config, models, suites, plan, store, context
        )
        timings["total_seconds"] = round(time.perf_counter() - started, 2)
        models_record: dict[str, dict[str, Any]] = {
            entry.name: {
                key: entry.metadata.get(key)
                for key in (
                    "architecture",
                    "pooling",
                    "pooling_options",
                    "dataset",
                    "clean_test_accuracy",
                    "epochs",
                    "seed",
                )
            }
            | {"fingerprint": fingerprints[entry.name], "input": inputs.describe(entry.name)}
            for entry in models
        }
        record = {
            "run_name": config.run_name,
            "config": config.to_dict(),
            "config_hash": hash_value,
            "seed": config.seed,
            "sample_size": len(dataset),
            "sample_digest": sample_digest,
            "device": ",".join(devices),
            "executor": config.executor,
            "precision": precision_record(config, context.device),
            "cells": {"total": len(plan), "computed": computed, "resumed": resumed},
            "store": STORE_NAME,
            "models": models_record,
            "versions": _versions(),
            "machine": {
                "platform": platform.platform(),
                "processor": platform.machine(),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
            },
            "timings": timings,
            # What readers of the run need from the suites (e.g. attack labels), torch-free.
            "suites": {suite.name: suite.record(config, context) for suite in suites},
        }
        # Per-image outcomes, compact and torch-free, for paired gates (robustbench_lift.per_image).
        outcomes = collect(
            per_image,
            {
                "sample_digest": sample_digest,
                "dataset": config.dataset,
                "split": config.split,
                "seed": config.seed,
                "suites": {suite.name: suite.per_image_record(models, context) for suite in suites},
            },
        )

        # Per pooling kind over its training seeds (one row per kind; sd needs two seeds).
        kinds = pooling_summary(summary.reset_index(), models_record)

        def extra(staging: Path) -> None:
            store.copy_to(staging / STORE_NAME)
            write_per_image(staging / PER_IMAGE_FILE, outcomes)
            kinds.to_csv(staging / POOLING_SUMMARY_FILE, index=False)

        directory = write_run(
            config.run_directory,
            results,
            summary.reset_index(),
            record,
            extra=extra,
            keep_previous=run_store.same_config_finished,
        )
        run_store.finished()
    return directory, computed, resumed


def _batches(suites: list[Suite], cells: list[Cell], sample_bytes: int) -> list[list[Cell]]:
    """``cells`` in batches whose prepared inputs stay within :data:`PREPARED_BYTES`: one
    suite per batch, at most ``PREPARED_BYTES // sample_bytes`` of its conditions (at least
    one). A condition's inputs are about one sample's size (a corrupted copy of it), so a
    5,000-image ImageNet sample (718 MiB) prepares two corruptions at a time, while a
    Fashion-MNIST sample prepares each suite at once."""
    per_batch = max(1, PREPARED_BYTES // max(1, sample_bytes))
    batches = []
    for suite in suites:
        conditions = list(dict.fromkeys(cell.condition for cell in cells if cell.suite == suite.name))
        for start in range(0, len(conditions), per_batch):
            chosen = set(conditions[start : start + per_batch])
            batches.append([cell for cell in cells if cell.suite == suite.name and cell.condition in chosen])
    return batches


def _prepare(
    suites: list[Suite], cells: list[Cell], context: RunContext, timings: dict[str, Any], executor: Executor
) -> dict[str, Any]:
    """Each suite's shared inputs for the conditions ``cells`` still need, prepared where
    the executor prepares them (here, or in Ray workers: then the time is only dispatch)."""
    prepared: dict[str, Any] = {}
    for suite in suites:
        wanted = list(dict.fromkeys(cell.condition for cell in cells if cell.suite == suite.name))
        if not wanted:
            continue
        tick = time.perf_counter()
        prepared[suite.name] = executor.prepare(suite, context, wanted)
        seconds = time.perf_counter() - tick
        timings["prepare"][suite.name] = round(timings["prepare"].get(suite.name, 0.0) + seconds, 2)
        log.info("prepared %s inputs (%d conditions) in %.1f s", suite.name, len(wanted), seconds)
    return prepared


def _tables(
    config: RunConfig,
    models: list[ModelEntry],
    suites: list[Suite],
    plan: list[Cell],
    store: Store,
    context: RunContext,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], dict[str, float], dict[str, dict[str, dict[str, np.ndarray]]]]:
    """results and summary tables, devices used, seconds per model/suite and the per-image
    arrays (suite -> model -> name -> array), from the store."""
    records = store.load(cell.key for cell in plan)
    missing = [cell for cell in plan if cell.key not in records]
    if missing:
        raise RuntimeError(
            f"{len(missing)} cells missing from the store after evaluation, e.g. {'/'.join(missing[0].key)}"
        )
    rows: list[dict[str, Any]] = []
    per_image: dict[str, dict[str, dict[str, np.ndarray]]] = {suite.name: {} for suite in suites}
    seconds: dict[str, float] = {}
    for entry in models:
        for suite in suites:
            suite_rows: list[dict[str, Any]] = []
            arrays: dict[str, np.ndarray] = {}
            for cell in plan:
                if cell.model == entry.name and cell.suite == suite.name:
                    record = records[cell.key]
                    suite_rows += record.rows
                    arrays.update(record.per_image)
                    seconds[f"{entry.name}/{suite.name}"] = (
                        seconds.get(f"{entry.name}/{suite.name}", 0.0) + record.seconds
                    )
            per_image[suite.name][entry.name] = arrays
            for row in suite.finalize(entry.name, suite_rows, arrays, context):
                rows.append(
                    {
                        "run": config.run_name,
                        "model": entry.name,
                        "architecture": entry.architecture,
                        "pooling": entry.pooling,
                        "dataset": config.dataset,
                        "precision": config.precision,
                    }
                    | row
                )
    devices = sorted({record.device for record in records.values()})

    results = pd.DataFrame(rows)
    columns = RESULT_COLUMNS + [column for column in results.columns if column not in RESULT_COLUMNS]
    results = results.reindex(columns=columns)
    summary = pd.DataFrame(index=pd.Index([entry.name for entry in models], name="model"))
    summary["architecture"] = [entry.architecture for entry in models]
    summary["pooling"] = [entry.pooling for entry in models]
    summary["recorded_clean_accuracy"] = [entry.metadata.get("clean_test_accuracy", np.nan) for entry in models]
    for suite in suites:
        part = suite.summarize(results, per_image[suite.name], models, context)
        summary = summary.join(part, how="left")
    return results, summary, devices, {key: round(value, 2) for key, value in seconds.items()}, per_image
