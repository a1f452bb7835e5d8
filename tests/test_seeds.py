"""Across-seed statistics (pooling_summary.csv) and the report's seed-spread section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustbench_lift.metrics.seeds import POOLING_SUMMARY_FILE, pooling_summary, seed_spread_comparison
from robustbench_lift.reporting.html import write_report
from robustbench_lift.reporting.tables import load_run, seed_section, seed_text
from robustbench_lift.results import RESULT_COLUMNS, write_run

# clean error and mCE per (kind, seed): lift clearly below max, avg inside max's spread
VALUES = {
    ("max", 0): (0.100, 1.00),
    ("max", 1): (0.104, 1.02),
    ("max", 2): (0.096, 0.99),
    ("lift", 0): (0.080, 0.90),
    ("lift", 1): (0.082, 0.91),
    ("lift", 2): (0.079, 0.905),
    ("avg", 0): (0.101, 1.01),
    ("avg", 1): (0.099, 0.98),
    ("avg", 2): (0.105, 1.03),
}


def models_record(kinds=VALUES) -> dict[str, dict]:
    return {
        f"small_cnn-{kind}-s{seed}": {
            "architecture": "small_cnn",
            "pooling": kind,
            "pooling_options": {},
            "dataset": "fashion_mnist",
            "epochs": 10,
            "seed": seed,
        }
        for kind, seed in kinds
    }


def summary_table(kinds=VALUES) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": f"small_cnn-{kind}-s{seed}",
                "architecture": "small_cnn",
                "pooling": kind,
                "clean_error": error,
                "clean_error_low": error - 0.01,
                "clean_error_high": error + 0.01,
                "reference_model": "small_cnn-max-s0",
                "mce": mce,
                "robust_accuracy_pgd_linf": 0.1,
            }
            for (kind, seed), (error, mce) in kinds.items()
        ]
    )


def test_one_row_per_kind_with_mean_and_sample_sd() -> None:
    kinds = pooling_summary(summary_table(), models_record())
    assert list(kinds["pooling"]) == ["max", "lift", "avg"]
    assert list(kinds["seeds"]) == [3, 3, 3]
    lift = kinds.set_index("pooling").loc["lift"]
    assert lift["training_seeds"] == "0 1 2"
    assert lift["models"] == "small_cnn-lift-s0 small_cnn-lift-s1 small_cnn-lift-s2"
    assert math.isclose(lift["clean_error_mean"], np.mean([0.080, 0.082, 0.079]))
    assert math.isclose(lift["clean_error_sd"], np.std([0.080, 0.082, 0.079], ddof=1))
    assert math.isclose(lift["mce_sd"], np.std([0.90, 0.91, 0.905], ddof=1))
    assert "robust_accuracy_pgd_linf_mean" in kinds and "clean_error_low_mean" not in kinds


def test_models_with_other_options_or_no_seed_are_not_pooled() -> None:
    values = {("blur", 0): (0.09, 0.95), ("blur", 1): (0.091, 0.96), ("blur", 2): (0.092, 0.97)}
    record = models_record(values)
    record["small_cnn-blur-s2"]["pooling_options"] = {"filter_size": 3}
    record["small_cnn-blur-s1"]["seed"] = None  # a user model without a recorded seed
    kinds = pooling_summary(summary_table(values), record)
    assert list(kinds["seeds"]) == [1, 1, 1]
    assert "blur (filter_size=3)" in set(kinds["pooling"])
    assert kinds["clean_error_sd"].isna().all()  # one seed: no spread


def test_comparison_uses_welch_and_needs_two_seeds_each() -> None:
    kinds = pooling_summary(summary_table(), models_record())
    comparison = seed_spread_comparison(kinds, "max").set_index(["pooling", "metric"])
    lift = comparison.loc[("lift", "clean_error")]
    expected = stats.ttest_ind([0.080, 0.082, 0.079], [0.100, 0.104, 0.096], equal_var=False)
    assert math.isclose(lift["welch_p"], expected.pvalue, rel_tol=1e-9)
    assert lift["exceeds_seed_spread"] and lift["better"]
    avg = comparison.loc[("avg", "clean_error")]
    assert not avg["exceeds_seed_spread"] and avg["welch_p"] > 0.5
    # one seed of the reference: nothing exceeds the spread, however large the difference
    single = {key: value for key, value in VALUES.items() if key != ("max", 1) and key != ("max", 2)}
    kinds = pooling_summary(summary_table(single), models_record(single))
    comparison = seed_spread_comparison(kinds, "max")
    assert not comparison["exceeds_seed_spread"].any() and comparison["welch_p"].isna().all()
    assert seed_spread_comparison(kinds, "nonexistent").empty


def write_synthetic_run(directory: Path, with_file: bool) -> Path:
    summary = summary_table()
    record = {"run_name": directory.name, "models": models_record(), "config": {"dataset": "fashion_mnist"}}
    results = pd.DataFrame([{column: "" for column in RESULT_COLUMNS} | {"model": name} for name in summary["model"]])
    results = results.assign(run=directory.name, suite="shift", condition="shift", status="ok", n=10, consistency=0.9)
    results = results.assign(family="shift", level=0)

    def extra(staging: Path) -> None:
        if with_file:
            pooling_summary(summary, record["models"]).to_csv(staging / POOLING_SUMMARY_FILE, index=False)

    return write_run(directory, results, summary, record, extra=extra)


@pytest.mark.parametrize("with_file", [True, False])
def test_report_marks_differences_beyond_seed_spread(tmp_path: Path, with_file: bool) -> None:
    run = write_synthetic_run(tmp_path / "run", with_file)
    section = seed_section(load_run(run))
    assert section is not None and section["reference"] == "max"
    rows = {row["pooling"]: row for row in section["rows"]}
    keys = [column.key for column in section["columns"]]
    assert rows["lift"]["cells"][keys.index("clean_error")]["mark"] == "better"
    assert rows["lift"]["cells"][keys.index("mce")]["mark"] == "better"
    assert rows["avg"]["cells"][keys.index("clean_error")]["mark"] == ""
    assert rows["lift"]["cells"][keys.index("clean_error")]["text"] == f"{100 * np.mean([0.080, 0.082, 0.079]):.2f}"
    html = write_report(run).read_text()
    assert 'id="seeds-table"' in html and "beyond the seed spread: lift clean_error (better" in html


def test_no_seed_section_with_one_seed_per_kind(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "run", True)
    summary = pd.read_csv(run / "summary.csv")
    keep = summary["model"].str.endswith("-s0")
    record = json.loads((run / "run.json").read_text())
    record.pop("tables")
    results = pd.read_csv(run / "results.csv")
    record["models"] = {name: value for name, value in record["models"].items() if name.endswith("-s0")}
    single = write_run(tmp_path / "single", results[results["model"].str.endswith("-s0")], summary[keep], record)
    assert seed_section(load_run(single)) is None


def test_terminal_table_across_seeds(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "run", True)
    text = seed_text(run)
    assert text is not None
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["pooling", "seeds"]
    lift = next(line for line in lines if line.startswith("lift"))
    assert f"{100 * np.mean([0.080, 0.082, 0.079]):.2f} ± " in lift and "▲" in lift
    assert "▲" not in next(line for line in lines if line.startswith("avg"))
