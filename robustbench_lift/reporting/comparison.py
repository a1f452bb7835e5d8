"""Comparison of two finished runs: per model and metric, the change B - A with its
uncertainty (``docs/gate.md``), written as a Markdown and an HTML table.

Everything here reads stored result tables; no model is evaluated again.

Uncertainty of a difference:

- proportions with a sample size (clean error, robust accuracies, shift consistency):
  the unpooled two-proportion normal approximation,
  ``SE = sqrt(p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b)``; when n is unknown the
  per-run SE falls back to the stored 95 % interval, ``(high - low) / 3.92``;
- metrics with bootstrap intervals (mCE, relative mCE, mFR, mT5D, mean corruption
  error): ``SE ≈ (high - low) / 3.92`` per run, the two combined in quadrature;
- metrics stored without an interval (mean flip probability, median perturbation):
  no SE (NaN); only a tolerance can judge them.

Two runs drawn with the same seed share their test images, so the independent-samples
SE above overstates the noise of a paired difference: the comparison errs towards
"within noise", which is what a regression gate wants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_lift.reporting.html import static_text, template_environment
from robustbench_lift.reporting.tables import as_float, attack_label, recorded_attacks
from robustbench_lift.results import read_run
from robustbench_lift.utils.io import check_output_location

# Width of a 95 % normal interval in standard errors (2 x 1.959964).
INTERVAL_WIDTH_IN_STANDARD_ERRORS = 3.92
DEFAULT_Z = 1.96

PROPORTION = "proportion"
BOOTSTRAP = "bootstrap"
PLAIN = "plain"

RECORD_COLUMNS = ["model", "metric", "value", "low", "high", "n"]


@dataclass(frozen=True)
class MetricSpec:
    """How a summary metric is read: its uncertainty model, direction and display."""

    name: str
    label: str
    kind: str  # PROPORTION, BOOTSTRAP or PLAIN
    better: str  # "lower" or "higher"
    percent: bool = True  # shown as 100 x value (ratios like mCE too, as in the literature)


_FIXED_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("clean_error", "clean error", PROPORTION, "lower"),
    MetricSpec("mce", "mCE", BOOTSTRAP, "lower"),
    MetricSpec("relative_mce", "relative mCE", BOOTSTRAP, "lower"),
    MetricSpec("mean_corruption_error", "mean corruption error", BOOTSTRAP, "lower"),
    MetricSpec("extra_mean_error", "mean error (extra corruptions)", PLAIN, "lower"),
    MetricSpec("mfr", "mFR", BOOTSTRAP, "lower"),
    MetricSpec("mt5d", "mT5D", BOOTSTRAP, "lower"),
    MetricSpec("mean_flip_probability", "mean flip probability", PLAIN, "lower"),
    MetricSpec("mean_top5_distance", "mean top-5 distance", PLAIN, "lower", percent=False),
    MetricSpec("shift_consistency", "shift consistency", PROPORTION, "higher"),
    MetricSpec("clean_miou", "clean mIoU", BOOTSTRAP, "higher"),
    MetricSpec("clean_pixel_accuracy", "clean pixel accuracy", PLAIN, "higher"),
    MetricSpec("mean_corrupted_miou", "mean corrupted mIoU", BOOTSTRAP, "higher"),
    MetricSpec("relative_robustness", "relative robustness (mIoU)", BOOTSTRAP, "higher"),
    MetricSpec("mean_pixel_flip_share", "mean pixel flip share", BOOTSTRAP, "lower"),
)
FIXED_METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _FIXED_METRICS}


def metric_spec(name: str, labels: Mapping[str, str] | None = None) -> MetricSpec | None:
    """The spec of a summary column, or None when the column is not a comparable metric.

    ``labels``: display names of attacks (:func:`attack_labels` of the runs' records).
    """
    labels = labels or {}
    if name in FIXED_METRICS:
        return FIXED_METRICS[name]
    if name.endswith(("_low", "_high")):
        return None
    if name.startswith("robust_accuracy_"):
        attack = name[len("robust_accuracy_") :]
        return MetricSpec(name, f"robust accuracy {labels.get(attack, attack)}", PROPORTION, "higher")
    if name.startswith("median_perturbation_"):
        attack = name[len("median_perturbation_") :]
        # A larger smallest adversarial perturbation means a more robust model.
        return MetricSpec(name, f"median perturbation {labels.get(attack, attack)}", PLAIN, "higher", percent=False)
    return None


# ------------------------------------------------------------------ reading metrics


def _ok_rows(results: pd.DataFrame, suite: str, model: str) -> pd.DataFrame:
    if results.empty or not {"suite", "model", "status"} <= set(results.columns):
        return results.iloc[0:0]
    return results[(results["suite"] == suite) & (results["model"] == model) & (results["status"] == "ok")]


def _first_sample_size(rows: pd.DataFrame, family: str | None = None) -> float:
    if family is not None:
        rows = rows[rows["family"] == family]
    sizes = pd.to_numeric(rows["n"], errors="coerce").dropna() if "n" in rows else pd.Series(dtype=float)
    return float(sizes.max()) if len(sizes) else math.nan


def sample_size(results: pd.DataFrame, summary_row: Mapping[str, Any] | pd.Series, model: str, metric: str) -> float:
    """The n behind a proportion metric, read from the run's tables (NaN when unknown)."""
    if metric == "clean_error":
        stored = pd.to_numeric(pd.Series([summary_row.get("n", math.nan)]), errors="coerce").iloc[0]
        if np.isfinite(stored) and stored > 0:
            return float(stored)
        return _first_sample_size(_ok_rows(results, "clean", model))
    if metric == "shift_consistency":
        return _first_sample_size(_ok_rows(results, "shift", model))
    if metric.startswith("robust_accuracy_"):
        # Every epsilon of an attack is evaluated on the same images, so any row's n will do.
        return _first_sample_size(_ok_rows(results, "adversarial", model), metric[len("robust_accuracy_") :])
    return math.nan


def attack_labels(*records: Mapping[str, Any]) -> dict[str, str]:
    """Attack display names from run records (later records win)."""
    labels: dict[str, str] = {}
    for record in records:
        labels.update({name: attack_label(name, record) for name in recorded_attacks(record)})
    return labels


def metric_records(summary: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Long table of every comparable metric: model, metric, value, low, high, n.

    One row per model and metric column of ``summary`` (missing columns are simply
    absent); ``n`` is filled for proportions from ``results``.
    """
    rows: list[dict[str, Any]] = []
    metric_columns = [column for column in summary.columns if metric_spec(column) is not None]
    for _, summary_row in summary.iterrows():
        model = str(summary_row["model"])
        for metric in metric_columns:
            spec = metric_spec(metric)
            assert spec is not None  # metric_columns holds metrics only
            rows.append(
                {
                    "model": model,
                    "metric": metric,
                    "value": as_float(summary_row.get(metric)),
                    "low": as_float(summary_row.get(f"{metric}_low")),
                    "high": as_float(summary_row.get(f"{metric}_high")),
                    "n": sample_size(results, summary_row, model, metric) if spec.kind == PROPORTION else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def run_metric_records(run_directory: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The metric records of a finished run and its run.json record."""
    results, summary, record = read_run(run_directory)
    return metric_records(summary, results), record


# ------------------------------------------------------------------ statistics


def standard_error(record: Mapping[Any, Any], spec: MetricSpec) -> float:
    """Standard error of one run's metric value (NaN when the run stores no uncertainty)."""
    value, n = as_float(record.get("value")), as_float(record.get("n"))
    if spec.kind == PROPORTION and np.isfinite(value) and np.isfinite(n) and n > 0:
        proportion = min(max(value, 0.0), 1.0)
        return math.sqrt(proportion * (1 - proportion) / n)
    if spec.kind in (PROPORTION, BOOTSTRAP):
        low, high = as_float(record.get("low")), as_float(record.get("high"))
        if np.isfinite(low) and np.isfinite(high):
            return (high - low) / INTERVAL_WIDTH_IN_STANDARD_ERRORS
    return math.nan


def difference_standard_error(record_a: Mapping[Any, Any], record_b: Mapping[Any, Any], spec: MetricSpec) -> float:
    """SE of B - A for independent runs: the two SEs in quadrature."""
    return math.hypot(standard_error(record_a, spec), standard_error(record_b, spec))


@dataclass
class Difference:
    """B - A for one model and metric, with a z-interval."""

    model: str
    spec: MetricSpec
    value_a: float
    value_b: float
    difference: float
    standard_error: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """'better', 'worse' (interval excludes 0), 'within noise', 'no interval' or 'missing'."""
        if not np.isfinite(self.difference):
            return "missing"
        if not np.isfinite(self.standard_error):
            return "no interval"
        if self.low <= 0 <= self.high:
            return "within noise"
        improved = self.difference < 0 if self.spec.better == "lower" else self.difference > 0
        return "better" if improved else "worse"


def compare_records(
    records_a: pd.DataFrame, records_b: pd.DataFrame, z: float = DEFAULT_Z, labels: Mapping[str, str] | None = None
) -> list[Difference]:
    """Differences for every (model, metric) present in both record tables, in B's order
    (``labels``: attack display names for the metric labels)."""
    indexed_a = {(row["model"], row["metric"]): row for row in records_a.to_dict("records")}
    differences = []
    for row_b in records_b.to_dict("records"):
        row_a = indexed_a.get((row_b["model"], row_b["metric"]))
        spec = metric_spec(row_b["metric"], labels)
        if row_a is None or spec is None:
            continue
        difference = as_float(row_b["value"]) - as_float(row_a["value"])
        error = difference_standard_error(row_a, row_b, spec)
        differences.append(
            Difference(
                row_b["model"],
                spec,
                as_float(row_a["value"]),
                as_float(row_b["value"]),
                difference,
                error,
                difference - z * error,
                difference + z * error,
            )
        )
    return differences


# ------------------------------------------------------------------ formatting


def format_value(value: float, spec: MetricSpec) -> str:
    """A metric value for tables: percent with two decimals, or a plain number."""
    if not np.isfinite(value):
        return "—"
    return f"{100 * value:.2f} %" if spec.percent else f"{value:.4g}"


def format_change(value: float, spec: MetricSpec) -> str:
    """A signed change: percentage points for percent metrics."""
    if not np.isfinite(value):
        return "—"
    return f"{100 * value:+.2f} pp" if spec.percent else f"{value:+.4g}"


def format_interval(low: float, high: float, spec: MetricSpec) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "—"
    return f"[{format_change(low, spec)}, {format_change(high, spec)}]"


def markdown_cell(text: Any) -> str:
    """Text safe inside a Markdown table cell: pipes, angle brackets and newlines escaped."""
    return (
        str(text)
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", " ")
        .replace("\n", " ")
    )


# ------------------------------------------------------------------ the report


@dataclass
class Comparison:
    """Everything a comparison report shows."""

    name_a: str
    name_b: str
    differences: list[Difference]
    only_in_a: list[str]
    only_in_b: list[str]
    z: float
    notes: list[str]

    def table_rows(self) -> list[dict[str, str]]:
        return [
            {
                "model": difference.model,
                "metric": difference.spec.label,
                "a": format_value(difference.value_a, difference.spec),
                "b": format_value(difference.value_b, difference.spec),
                "change": format_change(difference.difference, difference.spec),
                "interval": format_interval(difference.low, difference.high, difference.spec),
                "verdict": difference.verdict,
            }
            for difference in self.differences
        ]


def _run_label(directory: Path, record: Mapping[str, Any]) -> str:
    return f"{record.get('run_name', directory.name)} ({directory})"


def _metadata_notes(record_a: Mapping[str, Any], record_b: Mapping[str, Any]) -> list[str]:
    notes = []
    for key in ("sample_size", "seed"):
        if record_a.get(key) != record_b.get(key):
            notes.append(f"{key} differs: A {record_a.get(key)}, B {record_b.get(key)}")
    for key in ("dataset", "profile", "severities", "corruptions"):
        value_a, value_b = record_a.get("config", {}).get(key), record_b.get("config", {}).get(key)
        if value_a != value_b:
            notes.append(f"config {key} differs: A {value_a}, B {value_b}")
    return notes


def build_comparison(run_a: str | Path, run_b: str | Path, z: float = DEFAULT_Z) -> Comparison:
    """Reads two runs and computes B - A for every shared model and metric."""
    records_a, record_a = run_metric_records(run_a)
    records_b, record_b = run_metric_records(run_b)
    models_a, models_b = list(dict.fromkeys(records_a["model"])), list(dict.fromkeys(records_b["model"]))
    return Comparison(
        name_a=_run_label(Path(run_a), record_a),
        name_b=_run_label(Path(run_b), record_b),
        differences=compare_records(records_a, records_b, z, attack_labels(record_a, record_b)),
        only_in_a=[model for model in models_a if model not in models_b],
        only_in_b=[model for model in models_b if model not in models_a],
        z=z,
        notes=_metadata_notes(record_a, record_b),
    )


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison as a Markdown document."""
    lines = [
        "# Run comparison",
        "",
        f"- A: {markdown_cell(comparison.name_a)}",
        f"- B: {markdown_cell(comparison.name_b)}",
        f"- change = B − A; interval = change ± {comparison.z:g} × SE (two-proportion normal approximation for proportions, bootstrap-interval SE in quadrature for ratios)",
    ]
    lines += [f"- note: {markdown_cell(note)}" for note in comparison.notes]
    if comparison.only_in_a:
        lines.append(f"- only in A: {markdown_cell(', '.join(comparison.only_in_a))}")
    if comparison.only_in_b:
        lines.append(f"- only in B: {markdown_cell(', '.join(comparison.only_in_b))}")
    lines += ["", "| model | metric | A | B | B − A | interval | verdict |", "|---|---|---:|---:|---:|---|---|"]
    for row in comparison.table_rows():
        lines.append(
            "| "
            + " | ".join(
                markdown_cell(row[key]) for key in ("model", "metric", "a", "b", "change", "interval", "verdict")
            )
            + " |"
        )
    if not comparison.differences:
        lines.append("| — | no shared model and metric | | | | | |")
    return "\n".join(lines) + "\n"


def comparison_html(comparison: Comparison) -> str:
    """The comparison as a self-contained HTML page (Jinja2, autoescaped)."""
    template = template_environment().get_template("comparison.html")
    return template.render(comparison=comparison, rows=comparison.table_rows(), style=static_text("_style.html"))


def compare_runs(run_a: str | Path, run_b: str | Path, output_directory: str | Path | None = None) -> tuple[Path, Path]:
    """Writes ``comparison.md`` and ``comparison.html`` (B - A per model and metric).

    ``output_directory`` defaults to ``<run_b>/comparison``. Returns (markdown path, html path).
    """
    comparison = build_comparison(run_a, run_b)
    directory = Path(output_directory) if output_directory is not None else Path(run_b) / "comparison"
    check_output_location(directory, "--output", folder=True)
    directory.mkdir(parents=True, exist_ok=True)
    markdown_path, html_path = directory / "comparison.md", directory / "comparison.html"
    markdown_path.write_text(comparison_markdown(comparison), encoding="utf-8")
    html_path.write_text(comparison_html(comparison), encoding="utf-8")
    return markdown_path, html_path
