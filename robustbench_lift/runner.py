"""The evaluation runner: resolves models, prepares every suite's inputs once, evaluates
each model on them, and writes results.csv, summary.csv and run.json atomically.

Results are written into a hidden temporary folder beside the target and renamed into
place at the end, so an interrupted or failed run never leaves partial result files.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from robustbench_lift import __version__
from robustbench_lift.checkpoints import load_checkpoint
from robustbench_lift.config import RunConfig, validate
from robustbench_lift.datasets import load_dataset
from robustbench_lift.errors import UserError
from robustbench_lift.suites import SUITES, ModelEntry, RunContext
from robustbench_lift.zoo import ZOO_KINDS, load_zoo_model, zoo_model_name, zoo_names

log = logging.getLogger(__name__)

# Leading columns of results.csv; suites add their own metric columns after these.
RESULT_COLUMNS = ["run", "model", "architecture", "pooling", "dataset", "suite", "condition", "family", "level", "status", "n"]


def resolve_models(names: List[str]) -> List[ModelEntry]:
    """Zoo names (``small_cnn-lift``, ``lift``) or checkpoint paths -> loaded models."""
    if not names:
        names = zoo_names()
        if not names:
            raise UserError("the model zoo has no weights; run scripts/train_zoo.py or name checkpoint files with --models")
    entries = []
    for name in names:
        path = Path(name)
        if path.suffix in (".safetensors", ".pt", ".pth") or path.exists():
            model, metadata = load_checkpoint(path)
            entries.append(ModelEntry(path.stem, model, metadata))
        else:
            model, metadata = load_zoo_model(name)
            entries.append(ModelEntry(zoo_model_name(metadata["pooling"]) if metadata.get("pooling") in ZOO_KINDS else name, model, metadata))
    seen = set()
    for entry in entries:
        if entry.name in seen:
            raise UserError(f"model {entry.name!r} is named twice")
        seen.add(entry.name)
    return entries


def _versions() -> Dict[str, str]:
    import torchvision

    return {"robustbench_lift": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__, "pandas": pd.__version__, "python": platform.python_version()}


def run_benchmark(config: RunConfig) -> Path:
    """Runs every suite of ``config`` on every model; returns the run folder."""
    validate(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    timings: Dict[str, Any] = {"prepare": {}, "evaluate": {}}
    models = resolve_models(config.models)
    full = load_dataset(config.dataset, config.split, config.data_dir, config.download)
    dataset, indices = full.sample(config.sample_size, config.seed)
    for entry in models:
        classes = int(entry.metadata.get("num_classes", len(full.classes)))
        if classes != len(full.classes):
            raise UserError(f"model {entry.name} predicts {classes} classes but {config.dataset} has {len(full.classes)}")
    context = RunContext(config, dataset, indices)
    log.info("run %s: %d models, %d images of %s/%s, suites %s", config.run_name, len(models), len(dataset), config.dataset, config.split, ", ".join(config.suites))

    suites = [SUITES.get(name) for name in config.suites]
    prepared = {}
    for suite in suites:
        tick = time.perf_counter()
        prepared[suite.name] = suite.prepare(context)
        timings["prepare"][suite.name] = round(time.perf_counter() - tick, 2)
        log.info("prepared %s inputs in %.1f s", suite.name, timings["prepare"][suite.name])

    rows: List[Dict[str, Any]] = []
    per_image: Dict[str, Dict[str, Dict[str, np.ndarray]]] = {suite.name: {} for suite in suites}
    for entry in tqdm(models, desc="models", unit="model"):
        entry.model.to(config.device).eval()
        for suite in suites:
            tick = time.perf_counter()
            output = suite.evaluate(entry, prepared[suite.name], context)
            timings["evaluate"][f"{entry.name}/{suite.name}"] = round(time.perf_counter() - tick, 2)
            per_image[suite.name][entry.name] = output.per_image
            for row in output.rows:
                rows.append({"run": config.run_name, "model": entry.name, "architecture": entry.architecture, "pooling": entry.pooling, "dataset": config.dataset} | row)
        entry.model.cpu()

    results = pd.DataFrame(rows)
    columns = RESULT_COLUMNS + [column for column in results.columns if column not in RESULT_COLUMNS]
    results = results[columns]
    summary = pd.DataFrame(index=pd.Index([entry.name for entry in models], name="model"))
    summary["architecture"] = [entry.architecture for entry in models]
    summary["pooling"] = [entry.pooling for entry in models]
    summary["recorded_clean_accuracy"] = [entry.metadata.get("clean_test_accuracy", np.nan) for entry in models]
    for suite in suites:
        part = suite.summarize(results, per_image[suite.name], models, context)
        summary = summary.join(part, how="left")
    timings["total_seconds"] = round(time.perf_counter() - started, 2)
    record = {
        "run_name": config.run_name,
        "config": config.to_dict(),
        "seed": config.seed,
        "sample_size": len(dataset),
        "models": {entry.name: {key: entry.metadata.get(key) for key in ("architecture", "pooling", "pooling_options", "dataset", "clean_test_accuracy", "epochs", "seed")} for entry in models},
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "timings": timings,
    }
    directory = write_run(config.run_directory, results, summary.reset_index(), record)
    log.info("wrote %s in %.1f s", directory, timings["total_seconds"])
    return directory


def write_run(directory: Path, results: pd.DataFrame, summary: pd.DataFrame, record: Dict[str, Any]) -> Path:
    """Writes the three result files into a temporary folder, then swaps it into place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        results.to_csv(staging / "results.csv", index=False)
        summary.to_csv(staging / "summary.csv", index=False)
        (staging / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, retired / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_run(directory: str | Path) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[str, Any]]:
    """Reads (results, summary, run record) of a finished run; UserError when incomplete."""
    directory = Path(directory)
    files = [directory / name for name in ("results.csv", "summary.csv", "run.json")]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise UserError(f"{directory} holds no finished run (missing {', '.join(missing)})")
    try:
        return pd.read_csv(files[0]), pd.read_csv(files[1]), json.loads(files[2].read_text())
    except (ValueError, pd.errors.ParserError) as error:
        raise UserError(f"{directory} has malformed result files: {error}") from None
