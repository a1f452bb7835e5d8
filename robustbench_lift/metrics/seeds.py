"""Across-seed statistics: one row per pooling kind over the training seeds of its models,
and which differences between kinds exceed the spread between seeds.

Intervals in ``summary.csv`` describe the sampling of test images only; two training seeds
of the same model often differ by as much as two pooling kinds do. Models whose recorded
training differs only in ``seed`` (same architecture, pooling, pooling options, data set
and epochs) form one group; its row holds, per metric, the mean and the sample standard
deviation (ddof 1) over the group's models. A difference between two kinds *exceeds the
seed spread* when Welch's t-test on the per-seed values rejects equal means at 5 %, which
needs at least two seeds on each side. Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "SEED_METRICS",
    "SEED_SPREAD_ALPHA",
    "POOLING_SUMMARY_FILE",
    "seed_metrics",
    "pooling_summary",
    "seed_spread_comparison",
]

#: The summary.csv columns aggregated over seeds (those a run has), in this order; every
#: ``robust_accuracy_<attack>`` column follows them.
SEED_METRICS = (
    "clean_error",
    "mce",
    "relative_mce",
    "mean_corruption_error",
    "mfr",
    "mt5d",
    "shift_consistency",
    "clean_miou",
    "mean_corrupted_miou",
    "relative_robustness",
    "mean_pixel_flip_share",
)
#: Significance level of the Welch t-test behind ``exceeds_seed_spread``.
SEED_SPREAD_ALPHA = 0.05
POOLING_SUMMARY_FILE = "pooling_summary.csv"
# Metrics where lower is better; the rest (consistency, robust accuracy, mIoU) higher is better.
_LOWER_IS_BETTER = {
    "clean_error",
    "mce",
    "relative_mce",
    "mean_corruption_error",
    "mfr",
    "mt5d",
    "mean_pixel_flip_share",
}
# Training record keys that, with the seed, decide a model: equal values = same recipe.
_RECIPE_KEYS = ("architecture", "pooling", "pooling_options", "dataset", "epochs")


def seed_metrics(summary: pd.DataFrame) -> list[str]:
    """The metric columns of ``summary`` that :func:`pooling_summary` aggregates."""
    robust = [
        column
        for column in summary.columns
        if column.startswith("robust_accuracy_") and not column.endswith(("_low", "_high"))
    ]
    return [column for column in SEED_METRICS if column in summary.columns] + robust


def pooling_summary(summary: pd.DataFrame, models: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per pooling kind (per group of models that differ only in training seed).

    Args:
        summary: summary.csv of a run (a ``model`` column and the metric columns).
        models: run.json's ``models`` record: per model its architecture, pooling,
            pooling_options, dataset, epochs and seed (user models may lack some; a model
            without a recorded seed is a group of its own).

    Returns:
        Columns ``architecture``, ``pooling`` (the kind, with its options where two groups
        share a kind), ``pooling_options`` (JSON), ``seeds`` (models in the group),
        ``training_seeds`` (space-separated), ``models`` (space-separated), then
        ``<metric>_mean`` and ``<metric>_sd`` per metric of :func:`seed_metrics`; the sd
        is empty with one seed. Groups in the order their first model appears.
    """
    metrics = seed_metrics(summary)
    records = [{str(key): value for key, value in entry.items()} for entry in summary.to_dict("records")]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for entry in records:
        name = str(entry["model"])
        recorded = models.get(name, {})
        key = tuple(
            json.dumps(recorded.get(item, entry.get(item)), sort_keys=True, default=str) for item in _RECIPE_KEYS
        )
        if recorded.get("seed") is None:
            key = (*key, name)  # no recorded seed: nothing to pool it with
        groups.setdefault(key, []).append(entry)
    per_kind: dict[tuple[str, ...], int] = {}
    for key in groups:
        per_kind[key[:2]] = per_kind.get(key[:2], 0) + 1
    rows = []
    for key, members in groups.items():
        first = {**members[0], **models.get(str(members[0]["model"]), {})}
        options = first.get("pooling_options") or {}
        label = str(first.get("pooling", "unknown"))
        if per_kind[key[:2]] > 1 and options:
            label = f"{label} ({', '.join(f'{name}={value}' for name, value in sorted(options.items()))})"
        seeds = [models.get(str(member["model"]), {}).get("seed") for member in members]
        row: dict[str, Any] = {
            "architecture": first.get("architecture", "unknown"),
            "pooling": label,
            "pooling_options": json.dumps(options, sort_keys=True),
            "seeds": len(members),
            "training_seeds": " ".join("?" if seed is None else str(seed) for seed in seeds),
            "models": " ".join(str(member["model"]) for member in members),
        }
        for metric in metrics:
            values = pd.to_numeric(pd.Series([member.get(metric) for member in members]), errors="coerce")
            finite = values.to_numpy(dtype=float)
            finite = finite[np.isfinite(finite)]
            row[f"{metric}_mean"] = float(finite.mean()) if finite.size else math.nan
            row[f"{metric}_sd"] = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _welch(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int) -> tuple[float, float]:
    """(standard error of the difference, two-sided Welch p-value)."""
    from scipy import stats

    variance = sd_a**2 / n_a + sd_b**2 / n_b
    se = math.sqrt(variance)
    if se == 0:
        return 0.0, (1.0 if mean_a == mean_b else 0.0)
    df = variance**2 / ((sd_a**2 / n_a) ** 2 / (n_a - 1) + (sd_b**2 / n_b) ** 2 / (n_b - 1))
    t = (mean_a - mean_b) / se
    return se, float(2 * stats.t.sf(abs(t), df))


def seed_spread_comparison(
    kinds: pd.DataFrame, reference: str, metrics: Sequence[str] | None = None, alpha: float = SEED_SPREAD_ALPHA
) -> pd.DataFrame:
    """Each pooling kind against ``reference`` on each metric, judged against seed spread.

    Args:
        kinds: a :func:`pooling_summary` table (or pooling_summary.csv as read).
        reference: the ``pooling`` label to compare against (e.g. ``max``).
        metrics: metric names (default: every ``<metric>_mean`` column).
        alpha: the Welch t-test's level.

    Returns:
        One row per (kind, metric): ``pooling``, ``metric``, ``difference`` (kind mean minus
        reference mean), ``better`` (the difference's direction favours the kind),
        ``welch_se``, ``welch_p`` and ``exceeds_seed_spread`` (False, with empty se and p,
        where either side has fewer than two seeds or no spread to test against).
        Empty when ``reference`` is not a row of ``kinds``.
    """
    columns = ["pooling", "metric", "difference", "better", "welch_se", "welch_p", "exceeds_seed_spread"]
    if metrics is None:
        metrics = [column[: -len("_mean")] for column in kinds.columns if column.endswith("_mean")]
    base = kinds[kinds["pooling"] == reference]
    if base.empty:
        return pd.DataFrame(columns=columns)
    ref = base.iloc[0]
    rows = []
    for _, row in kinds.iterrows():
        if row["pooling"] == reference:
            continue
        for metric in metrics:
            mean_a, mean_b = float(row[f"{metric}_mean"]), float(ref[f"{metric}_mean"])
            if not (math.isfinite(mean_a) and math.isfinite(mean_b)):
                continue
            difference = mean_a - mean_b
            lower = metric in _LOWER_IS_BETTER
            entry: dict[str, Any] = {
                "pooling": row["pooling"],
                "metric": metric,
                "difference": difference,
                "better": bool(difference < 0 if lower else difference > 0),
                "welch_se": math.nan,
                "welch_p": math.nan,
                "exceeds_seed_spread": False,
            }
            n_a, n_b = int(row["seeds"]), int(ref["seeds"])
            sd_a, sd_b = float(row[f"{metric}_sd"]), float(ref[f"{metric}_sd"])
            if n_a >= 2 and n_b >= 2 and math.isfinite(sd_a) and math.isfinite(sd_b) and (sd_a > 0 or sd_b > 0):
                se, p = _welch(mean_a, sd_a, n_a, mean_b, sd_b, n_b)
                entry.update(welch_se=se, welch_p=p, exceeds_seed_spread=bool(p < alpha))
            rows.append(entry)
    return pd.DataFrame(rows, columns=columns)
