"""Executors (local, Ray), device choice and the out-of-memory back-off of inference."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.inference import predict_logits, resolve_device
from robustbench_lift.run.config import RunConfig, config_from_mapping
from robustbench_lift.run.executors import EXECUTORS
from robustbench_lift.run.runner import run_benchmark
from robustbench_lift.run.store import STORE_NAME, in_progress_folder

REPOSITORY = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.needs_data
# The zoo weights ship with the package; tests that load them need the data set too.
needs_zoo = pytest.mark.needs_data


# ---------------------------------------------------------------- out-of-memory back-off


class RunsOutOfMemory(nn.Module):
    """Mean pixel per channel as logits; raises OOM for batches above ``limit``."""

    def __init__(
        self, limit: int, error: type | None = None, message: str = "CUDA out of memory. Tried to allocate 2.00 GiB"
    ) -> None:
        super().__init__()
        self.limit, self.error, self.message = limit, error, message
        self.batch_sizes: list[int] = []

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(batch.shape[0])
        if batch.shape[0] > self.limit:
            raise (self.error or torch.cuda.OutOfMemoryError)(self.message)
        return batch.mean(dim=(2, 3))


IMAGES = np.random.default_rng(0).integers(0, 256, (37, 8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, RuntimeError])
def test_inference_halves_the_batch_on_out_of_memory(error, caplog) -> None:
    expected = predict_logits(RunsOutOfMemory(limit=1000), IMAGES, batch_size=50)
    model = RunsOutOfMemory(limit=5, error=error)
    with caplog.at_level(logging.WARNING):
        logits = predict_logits(model, IMAGES, batch_size=20)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    assert model.batch_sizes[:3] == [20, 10, 5] and max(model.batch_sizes[3:]) == 5  # keeps the size that fits
    assert sum(size for size in model.batch_sizes if size <= 5) == len(IMAGES)
    assert "retrying with batch size 5" in caplog.text


def test_out_of_memory_at_batch_one_is_one_line() -> None:
    with pytest.raises(UserError, match="even with a batch of one image"):
        predict_logits(RunsOutOfMemory(limit=0), IMAGES, batch_size=4)


def test_other_runtime_errors_are_not_swallowed() -> None:
    model = RunsOutOfMemory(limit=0, error=RuntimeError, message="shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        predict_logits(model, IMAGES, batch_size=8)
    assert model.batch_sizes == [8]


# ---------------------------------------------------------------- devices and names


def test_device_auto_and_checks() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert RunConfig().device == "auto"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match="unknown device"):
        config_from_mapping({"device": "toaster"})
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            resolve_device("cuda")


def test_executor_names_are_checked() -> None:
    assert sorted(EXECUTORS.names()) == ["local", "ray"]
    with pytest.raises(UserError, match="unknown executor 'spark'"):
        config_from_mapping({"executor": "spark"})
    with pytest.raises(UserError, match="ray_address needs executor ray"):
        config_from_mapping({"ray_address": "10.0.0.1:6379"})


# ---------------------------------------------------------------- local vs Ray


def small_config(output: Path, name: str, **overrides) -> RunConfig:
    values = dict(
        models=["max", "avg"],
        suites=["corruption", "shift"],
        corruptions=["gaussian_noise", "contrast"],
        severities=[1, 3],
        sample_size=60,
        workers=2,
        output_dir=str(output),
        run_name=name,
    )
    return config_from_mapping(values | overrides)


def read_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(folder / "results.csv").drop(columns="run"), pd.read_csv(folder / "summary.csv")


@needs_data
@needs_zoo
def test_forked_model_processes_give_the_in_process_tables(tmp_path) -> None:
    config = small_config(tmp_path, "one", device="cpu", model_processes=1)
    in_process = run_benchmark(config)
    forked = run_benchmark(config.replace(run_name="two", model_processes=2))
    for got, expected in zip(read_tables(forked), read_tables(in_process)):
        pd.testing.assert_frame_equal(got, expected)
    assert json.loads((forked / "run.json").read_text())["cells"]["computed"] == 12
    kinds = pd.read_csv(forked / "pooling_summary.csv")
    assert list(kinds["pooling"]) == ["max", "avg"] and list(kinds["seeds"]) == [1, 1]


def test_local_executor_process_count() -> None:
    executor = EXECUTORS.get("local")(config_from_mapping({"model_processes": 3}))
    assert executor.processes(models=2, device="cpu") == (2 if sys.platform == "linux" else 1)
    assert executor.processes(models=5, device="cuda:0") == 1  # one GPU: one process
    assert executor.processes(models=1, device="cpu") == 1
    with pytest.raises(UserError, match="model_processes must be at least 1"):
        config_from_mapping({"model_processes": 0})


@pytest.mark.ray
@pytest.mark.slow
@needs_data
@needs_zoo
def test_ray_executor_gives_the_local_tables(tmp_path) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'robustbench-lift[distributed]')")
    local = run_benchmark(small_config(tmp_path, "local"))
    distributed = run_benchmark(small_config(tmp_path, "ray", executor="ray"))
    for got, expected in zip(read_tables(distributed), read_tables(local)):
        pd.testing.assert_frame_equal(got, expected)
    record = json.loads((distributed / "run.json").read_text())
    assert record["executor"] == "ray" and record["cells"]["computed"] == 12
    assert record["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.ray
@pytest.mark.slow
@needs_data
@needs_zoo
def test_unreachable_ray_cluster_is_one_line_and_loses_nothing(tmp_path) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'robustbench-lift[distributed]')")
    finished = run_benchmark(small_config(tmp_path, "kept"))
    # A second, unfinished copy of the run's cells, as a killed rerun would leave it.
    partial = in_progress_folder(finished) / STORE_NAME
    partial.parent.mkdir()
    partial.write_bytes((finished / STORE_NAME).read_bytes())
    before = {path: path.read_bytes() for path in [*finished.iterdir(), partial]}

    arguments = [
        "run",
        "--models",
        "max",
        "avg",
        "--suites",
        "corruption",
        "shift",
        "--corruptions",
        "gaussian_noise",
        "contrast",
        "--severities",
        "1",
        "3",
        "--sample-size",
        "60",
        "--output-dir",
        str(tmp_path),
        "--run-name",
        "kept",
        "--executor",
        "ray",
        "--ray-address",
        "127.0.0.1:9",
    ]
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY), OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [sys.executable, "-m", "cli", *arguments],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "robustbench-lift: error: cannot reach the Ray cluster at 127.0.0.1:9"
    ), completed.stderr
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == [".kept.inprogress", "kept"]
