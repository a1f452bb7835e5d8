"""The results store: cells committed as they finish, SIGKILL-safe resume, skip on rerun,
the corrupted-input cache and pre-made corruption / perturbation sets.

The resume test runs the real CLI in subprocesses and kills them with SIGKILL at several
moments (before the first cell, after a few cells, late in the run), chaining the kills
on one run, then completes the run and compares its tables with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cli
from robustbench_lift.data.datasets import ImageDataset, load_dataset
from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.suites import SUITES, RunContext
from robustbench_lift.evaluation.suites.cache import cache_path
from robustbench_lift.run.config import RunConfig
from robustbench_lift.run.runner import run_benchmark
from robustbench_lift.run.store import STORE_NAME, RunStore, Store, in_progress_folder

REPOSITORY = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.needs_data
# The zoo weights ship with the package; tests that load them need the data set too.
needs_zoo = pytest.mark.needs_data

# 2 models x (clean + 2 corruptions x 2 severities + 1 shift) = 12 cells.
SMALL = [
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
    "--workers",
    "1",
]
CELLS = 12


def run_arguments(output: Path, name: str, *extra: str) -> list[str]:
    # No report: these tests are about the store and the result files.
    return ["run", *SMALL, "--output-dir", str(output), "--run-name", name, "--no-report", *extra]


def run_in_process(output: Path, name: str, *extra: str) -> dict:
    assert cli.main(run_arguments(output, name, *extra)) == 0
    return json.loads((output / name / "run.json").read_text())


def tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(folder / "results.csv").drop(columns="run"), pd.read_csv(folder / "summary.csv")


def stored_cells(path: Path) -> int:
    """Cells committed in a store another process is writing (-1: no store yet)."""
    if not path.exists():
        return -1
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(connection.execute("SELECT COUNT(*) FROM cells").fetchone()[0])
        finally:
            connection.close()
    except sqlite3.Error:
        return -1


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the small configuration."""
    output = tmp_path_factory.mktemp("reference")
    record = run_in_process(output, "small")
    assert record["cells"] == {"total": CELLS, "computed": CELLS, "resumed": 0}
    return output / "small"


@pytest.mark.slow
@needs_data
@needs_zoo
def test_sigkilled_runs_resume_to_the_tables_of_an_uninterrupted_run(reference, tmp_path) -> None:
    store_path = in_progress_folder(tmp_path / "small") / STORE_NAME
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY), OMP_NUM_THREADS="1")
    kept = 0
    # Kill before any cell (store open, inputs being prepared), after a few cells, and late.
    for at_least in (0, 3, 9):
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", *run_arguments(tmp_path, "small")],
            cwd=REPOSITORY,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 90
        while stored_cells(store_path) < at_least and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
        assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
        if not store_path.exists():  # killed before the store was created: nothing to resume
            continue
        now = stored_cells(store_path)
        assert now >= kept, "a kill lost committed cells"
        kept = now
        assert not (tmp_path / "small").exists(), "a killed run left a result folder"
    assert 0 < kept < CELLS, f"kills did not land inside the run ({kept} cells)"

    record = run_in_process(tmp_path, "small")
    assert record["cells"] == {"total": CELLS, "computed": CELLS - kept, "resumed": kept}
    results, summary = tables(tmp_path / "small")
    expected_results, expected_summary = tables(reference)
    pd.testing.assert_frame_equal(results, expected_results)
    pd.testing.assert_frame_equal(summary, expected_summary)
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")], (
        "in-progress or staging folders left behind"
    )
    assert sorted(path.name for path in (tmp_path / "small").iterdir()) == [
        "per_image.npz",
        "pooling_summary.csv",
        "results.csv",
        "run.json",
        STORE_NAME,
        "summary.csv",
    ]


@pytest.mark.slow
@needs_data
@needs_zoo
def test_rerun_of_a_finished_run_skips_every_cell(reference) -> None:
    before = {name: (reference / name).read_bytes() for name in ("results.csv", "summary.csv")}
    tick = time.perf_counter()
    record = run_in_process(reference.parent, "small")
    assert time.perf_counter() - tick < 30
    assert record["cells"] == {"total": CELLS, "computed": 0, "resumed": CELLS}
    assert record["timings"]["prepare"] == {}, "a finished run prepared inputs again"
    assert record["device"] == "cpu"
    for name, data in before.items():
        assert (reference / name).read_bytes() == data, name

    # A cell computed by other weights under the same model name is recomputed, alone.
    with sqlite3.connect(reference / STORE_NAME) as connection:
        connection.execute(
            "UPDATE cells SET fingerprint = 'retrained' WHERE model = 'small_cnn-avg-s0' AND condition = 'contrast/3'"
        )
    record = run_in_process(reference.parent, "small")
    assert record["cells"] == {"total": CELLS, "computed": 1, "resumed": CELLS - 1}
    assert list(record["timings"]["prepare"]) == ["corruption"]
    for name, data in before.items():
        assert (reference / name).read_bytes() == data, name


@pytest.mark.slow
@needs_data
@needs_zoo
def test_other_config_in_the_same_run_name_is_refused_unless_overwritten(reference, tmp_path, capsys) -> None:
    target = tmp_path / "small"
    copied = target / STORE_NAME
    target.mkdir()
    Store(reference / STORE_NAME).copy_to(copied)
    before = copied.read_bytes()
    assert cli.main(run_arguments(tmp_path, "small", "--shift-max", "3")) == 2
    assert "shift_max: 4 -> 3" in capsys.readouterr().err
    assert copied.read_bytes() == before and sorted(path.name for path in tmp_path.iterdir()) == ["small"]
    record = run_in_process(tmp_path, "small", "--shift-max", "3", "--overwrite")
    assert record["cells"] == {"total": CELLS, "computed": CELLS, "resumed": 0}
    results = pd.read_csv(target / "results.csv")
    assert "shift/3px" in set(results["condition"])


def test_store_round_trips_rows_and_arrays(tmp_path) -> None:
    store = Store(tmp_path / STORE_NAME)
    rows = [
        {
            "suite": "corruption",
            "n": np.int64(60),
            "error": np.float64(0.25),
            "low": float("nan"),
            "ok": np.bool_(True),
            "message": None,
        }
    ]
    arrays = {
        "fog/1": np.array([True, False]),
        "fog/1/predictions": np.arange(5, dtype=np.int64),
        "x/top5": np.linspace(0, 1, 3),
    }
    store.commit_cell(("m", "corruption", "fog/1"), "fp", rows, arrays, "cpu", 1.5)
    store.commit_cell(("m", "corruption", "fog/1"), "fp2", rows, {"only": np.zeros(2)}, "cpu", 2.0)  # replaces
    assert store.finished() == {("m", "corruption", "fog/1"): "fp2"}
    record = store.load([("m", "corruption", "fog/1"), ("m", "corruption", "absent")])[("m", "corruption", "fog/1")]
    assert list(record.per_image) == ["only"] and record.seconds == 2.0
    assert record.rows[0]["n"] == 60 and record.rows[0]["ok"] is True and np.isnan(record.rows[0]["low"])
    store.commit_cell(("m", "shift", "shift/4px"), "fp", [], arrays, "cpu", 0.1)
    loaded = store.load([("m", "shift", "shift/4px")])[("m", "shift", "shift/4px")].per_image
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype
    store.discard([("m", "shift", "shift/4px")])
    assert store.count() == 1
    store.close()


def test_second_process_on_the_same_run_is_refused(tmp_path) -> None:
    with RunStore.open(tmp_path / "run", "hash", {}) as first:
        with pytest.raises(UserError, match="another process"):
            RunStore.open(tmp_path / "run", "hash", {})
        first.store.commit_cell(("m", "s", "c"), "fp", [], {}, "cpu", 0.0)
    # Left by an exception or not, a store with cells stays for the rerun; it resumes.
    with RunStore.open(tmp_path / "run", "hash", {}) as again:
        assert again.resumed_from == "in-progress store" and again.store.count() == 1
    with RunStore.open(tmp_path / "run", "other", {}) as fresh:
        assert fresh.resumed_from == "" and fresh.store.count() == 0
    assert not in_progress_folder(tmp_path / "run").exists(), "an empty store should not be left behind"


def test_garbage_store_file_is_set_aside(tmp_path) -> None:
    folder = in_progress_folder(tmp_path / "run")
    folder.mkdir()
    (folder / STORE_NAME).write_bytes(b"not a database" * 100)
    with RunStore.open(tmp_path / "run", "hash", {}) as run_store:
        assert run_store.store.count() == 0 and run_store.resumed_from == ""


# ---------------------------------------------------------------- inputs: cache and pre-made sets


def small_context(tmp_path: Path, **overrides) -> RunContext:
    config = RunConfig(
        sample_size=12,
        corruptions=["gaussian_noise", "contrast"],
        severities=[1, 3],
        workers=1,
        suites=["corruption"],
        **overrides,
    )
    full = load_dataset("fashion_mnist", "test")
    dataset, indices = full.sample(config.sample_size, config.seed)
    return RunContext(config, dataset, indices)


@needs_data
def test_corruption_cache_is_reused_and_matches_generation(tmp_path, monkeypatch) -> None:
    import corruptions

    suite = SUITES.get("corruption")
    generated = suite.prepare(small_context(tmp_path))
    context = small_context(tmp_path, cache_dir=str(tmp_path / "cache"))
    first = suite.prepare(context, ["clean", "contrast/3"])
    assert list(first) == [("contrast", 3)]
    files = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1
    second = suite.prepare(context)  # generates the three missing conditions only
    assert len(sorted((tmp_path / "cache").rglob("*.npy"))) == 4

    def refuse(*arguments, **keywords):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(corruptions, "corrupt_many", refuse)
    third = suite.prepare(context)
    for pair, array in generated.items():
        np.testing.assert_array_equal(second[pair], array)
        np.testing.assert_array_equal(third[pair], array)
    # Another seed is another key.
    other = small_context(tmp_path, cache_dir=str(tmp_path / "cache"), seed=1)
    assert cache_path(other, "contrast", 3) != cache_path(context, "contrast", 3)


@needs_data
def test_premade_corruption_set_gives_the_generated_inputs(tmp_path) -> None:
    from robustbench_lift.data.writer import write_corruption_set

    suite = SUITES.get("corruption")
    context = small_context(tmp_path)
    root = tmp_path / "set"
    write_corruption_set(
        context.dataset,
        root,
        "cifar-c",
        ["gaussian_noise", "contrast"],
        [1, 2, 3, 4, 5],
        seed=0,
        workers=1,
        progress=False,
        indices=context.indices,
    )
    premade = small_context(tmp_path, corruption_data=str(root), corruption_layout="cifar-c")
    read = suite.prepare(premade)
    generated = suite.prepare(context)
    assert list(read) == list(generated)
    for pair, array in generated.items():
        np.testing.assert_array_equal(read[pair], array)
    # Another sample than the set was written for: one clear line, and no files.
    other = small_context(tmp_path, corruption_data=str(root), seed=3)
    with pytest.raises(UserError, match="holds no images"):
        suite.prepare(other)
    config = RunConfig(
        models=["max"],
        sample_size=12,
        seed=3,
        corruptions=["contrast"],
        severities=[1],
        suites=["corruption"],
        corruption_data=str(root),
        output_dir=str(tmp_path / "out"),
    )
    with pytest.raises(UserError, match="holds no images"):
        run_benchmark(config)
    assert not (tmp_path / "out").exists()


def test_premade_perturbation_set_is_read(tmp_path) -> None:
    pytest.importorskip("robustbench_lift.data.published")
    from corruptions.perturbations import perturb_many

    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    dataset = ImageDataset("synthetic", images, np.zeros(6, dtype=np.int64), ["a", "b"])
    names = ["translate", "gaussian_noise"]
    generated = perturb_many(images, names, seed=0, indices=np.arange(6))
    root = tmp_path / "cifar-p"
    root.mkdir()
    for name, sequences in generated.items():
        np.save(root / f"{name}.npy", sequences)
    config = RunConfig(
        suites=["perturbation"],
        perturbations=names,
        perturbation_data=str(root),
        perturbation_layout="cifar-p",
        perturbation_sample_size=4,
        device="cpu",
    )
    context = RunContext(config, dataset, np.arange(6))
    read = SUITES.get("perturbation").prepare(context)
    assert list(read) == names
    for name in names:
        np.testing.assert_array_equal(read[name], generated[name][:4])


def test_adversarial_masking_checks_run_over_all_cells_of_a_model(tmp_path) -> None:
    suite = SUITES.get("adversarial")
    base = {
        "suite": "adversarial",
        "norm": "linf",
        "status": "ok",
        "n": 10,
        "clean_correct": 8,
        "robust_correct": 5,
        "flipped_correct_share": 0.3,
    }
    rows = [
        base | {"condition": "fgsm/eps=0", "family": "fgsm", "level": 0.0, "robust_accuracy": 0.5},
        base | {"condition": "fgsm/eps=0.03", "family": "fgsm", "level": 0.03, "robust_accuracy": 0.4},
    ]
    context = RunContext(
        RunConfig(device="cpu"),
        ImageDataset("x", np.zeros((10, 4, 4, 3), np.uint8), np.zeros(10, np.int64), ["a"]),
        np.arange(10),
    )
    finished = suite.finalize("m", rows, {"clean_correct": np.array([True] * 8 + [False] * 2)}, context)
    assert "differs from clean accuracy (0.8000)" in finished[0]["warning"]
    assert "warning" not in finished[1] and "attack" not in finished[0] and "epsilon" not in finished[0]
