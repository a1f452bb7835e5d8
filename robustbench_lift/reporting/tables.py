"""A finished run's tables as the report reads them, and the numbers the report shows.

Reads ``results.csv``, ``summary.csv`` and ``run.json`` through :mod:`robustbench_lift.results`
and never evaluates a model. Corruption names and families come from :mod:`corruptions`;
attack labels come from the run's record (each attack's own label, written by the run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from corruptions.registry import CORRUPTION_FAMILIES, EXTRA_CORRUPTIONS
from robustbench_lift.metrics import ALEXNET_IMAGENET_C
from robustbench_lift.results import read_run

__all__ = [
    "CORRUPTION_ORDER",
    "EXTRA_CORRUPTIONS",
    "LeaderboardColumn",
    "RunTables",
    "adversarial_warnings",
    "as_float",
    "attack_label",
    "corruption_error_table",
    "corruption_names_in_run",
    "failed_corruption_cells",
    "failed_rows",
    "leaderboard_columns",
    "leaderboard_rows",
    "load_run",
    "recorded_attacks",
]

CORRUPTION_ORDER: tuple[str, ...] = tuple(name for names in CORRUPTION_FAMILIES.values() for name in names)


@dataclass
class RunTables:
    """A finished run as read from disk."""

    directory: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    record: dict[str, Any]

    @property
    def models(self) -> list[str]:
        """Model names in summary order, then any that only results.csv knows."""
        names = [str(name) for name in self.summary.get("model", pd.Series(dtype=str))]
        extra = [str(name) for name in self.results.get("model", pd.Series(dtype=str)) if str(name) not in names]
        return list(dict.fromkeys(names + extra))

    def rows(self, suite: str, ok_only: bool = True) -> pd.DataFrame:
        """results.csv rows of one suite (only status ok by default)."""
        if "suite" not in self.results.columns:
            return self.results.iloc[0:0]
        rows = self.results[self.results["suite"] == suite]
        if ok_only and "status" in rows.columns:
            rows = rows[rows["status"] == "ok"]
        return rows

    def summary_value(self, model: str, column: str) -> float:
        if column not in self.summary.columns:
            return math.nan
        match = self.summary.loc[self.summary["model"].astype(str) == model, column]
        return as_float(match.iloc[0]) if len(match) else math.nan

    def attack_label(self, attack: str) -> str:
        """An attack's display name as the run recorded it (``PGD L∞``), else its name."""
        return attack_label(attack, self.record)


def as_float(value: Any) -> float:
    """``value`` as a float; NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def recorded_attacks(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The attacks a run's ``run.json`` describes: name -> label, norm, headline epsilon."""
    suites = record.get("suites") or {}
    adversarial = suites.get("adversarial") or {} if isinstance(suites, Mapping) else {}
    attacks = adversarial.get("attacks") or {} if isinstance(adversarial, Mapping) else {}
    return dict(attacks) if isinstance(attacks, Mapping) else {}


def attack_label(attack: str, record: Mapping[str, Any] | None = None) -> str:
    """An attack's display name from the run record (``pgd_linf`` -> ``PGD L∞``), else its name."""
    label = recorded_attacks(record or {}).get(attack, {}).get("label")
    return str(label) if label else attack


def load_run(run_directory: str | Path) -> RunTables:
    """Reads a finished run; UserError when the folder holds none."""
    results, summary, record = read_run(run_directory)
    # Names are text even when they look like numbers.
    for table in (results, summary):
        if "model" in table.columns:
            table["model"] = table["model"].astype(str)
    return RunTables(Path(run_directory), results, summary, record)


# ------------------------------------------------------------------ numbers read from the tables


def corruption_names_in_run(tables: RunTables) -> list[str]:
    """Corruptions evaluated in the run, in family order (unknown names last)."""
    families = list(dict.fromkeys(tables.rows("corruption", ok_only=False).get("family", pd.Series(dtype=str)).astype(str)))
    return [name for name in CORRUPTION_ORDER if name in families] + [name for name in families if name not in CORRUPTION_ORDER]


def failed_corruption_cells(tables: RunTables) -> set[tuple[str, str]]:
    """(model, corruption) pairs with at least one failed severity."""
    rows = tables.rows("corruption", ok_only=False)
    if "status" not in rows.columns:
        return set()
    failed = rows[rows["status"] != "ok"]
    return {(str(model), str(family)) for model, family in zip(failed["model"], failed["family"])}


def _reference_of(tables: RunTables, model: str) -> str | None:
    if "reference_model" not in tables.summary.columns:
        return None
    match = tables.summary.loc[tables.summary["model"] == model, "reference_model"]
    if not len(match) or pd.isna(match.iloc[0]) or str(match.iloc[0]).strip() == "":
        return None
    return str(match.iloc[0])


def corruption_error_table(tables: RunTables) -> tuple[pd.DataFrame, str]:
    """Per model and corruption: CE (``docs/metrics.md``) and the measure's name.

    ``CE(f, c) = sum_s E(f, c, s) / sum_s E(ref, c, s)`` over the severities both models
    have, with each model's reference from summary.csv (``alexnet``: AlexNet's published
    errors at the same severities). When no model has a reference the table holds the
    mean error per corruption instead and the measure is ``"mean error"``. Failed cells
    are NaN.
    """
    corruptions_in_run = corruption_names_in_run(tables)
    rows = tables.rows("corruption")
    models = tables.models
    errors = {(model, family): part.set_index("level")["error"].astype(float) for (model, family), part in rows.groupby(["model", "family"])} if len(rows) else {}
    failed = failed_corruption_cells(tables)
    references = {model: _reference_of(tables, model) for model in models}
    measure = "CE" if any(references.values()) else "mean error"
    table = pd.DataFrame(math.nan, index=pd.Index(models, name="model"), columns=corruptions_in_run)
    for model in models:
        for corruption in corruptions_in_run:
            own = errors.get((model, corruption))
            if own is None or (model, corruption) in failed:
                continue
            if measure == "mean error":
                table.loc[model, corruption] = own.mean()
                continue
            table.loc[model, corruption] = _corruption_error(own, references[model], corruption, errors, failed)
    return table, measure


def _corruption_error(own: pd.Series, reference: str | None, corruption: str, errors: Mapping[Any, pd.Series], failed: set[tuple[str, str]]) -> float:
    if reference is None:
        return math.nan
    if reference == "alexnet":
        if corruption not in ALEXNET_IMAGENET_C.severity_errors:
            return math.nan
        # AlexNet's errors at the severities this model has, not its five-severity mean.
        denominator = float(ALEXNET_IMAGENET_C.errors_at(corruption, own.index).sum())
        return float(own.sum()) / denominator if denominator > 0 else math.nan
    theirs = errors.get((reference, corruption))
    if theirs is None or (reference, corruption) in failed:
        return math.nan
    levels = own.index.intersection(theirs.index)
    denominator = theirs.loc[levels].sum()
    return own.loc[levels].sum() / denominator if denominator > 0 else math.nan


def failed_rows(tables: RunTables) -> list[dict[str, str]]:
    """Every failed cell: model, suite, condition, message."""
    if "status" not in tables.results.columns:
        return []
    failed = tables.results[tables.results["status"] != "ok"]
    message = failed["message"] if "message" in failed.columns else pd.Series("", index=failed.index)
    return [
        {"model": str(row.model), "suite": str(row.suite), "condition": str(row.condition), "message": "" if pd.isna(text) else str(text)}
        for row, text in zip(failed.itertuples(index=False), message)
    ]


def adversarial_warnings(tables: RunTables) -> list[dict[str, str]]:
    """Gradient-masking warnings stored with the adversarial rows."""
    rows = tables.rows("adversarial", ok_only=False)
    if "warning" not in rows.columns:
        return []
    flagged = rows[rows["warning"].notna() & (rows["warning"].astype(str).str.strip() != "")]
    return [{"model": str(model), "condition": str(condition), "warning": str(warning)} for model, condition, warning in zip(flagged["model"], flagged["condition"], flagged["warning"])]


# ------------------------------------------------------------------ leaderboard


@dataclass(frozen=True)
class LeaderboardColumn:
    """A numeric leaderboard column read from summary.csv."""

    key: str
    label: str
    title: str
    percent: bool = True


def _headline_epsilon_text(attack: str, record: Mapping[str, Any]) -> str:
    info = recorded_attacks(record).get(attack, {})
    epsilon = as_float(info.get("headline_epsilon"))
    if not np.isfinite(epsilon):  # the label is cosmetic: an attack the run did not describe keeps a plain header
        return ""
    fraction = epsilon * 255
    return f" @ ε={round(fraction)}/255" if abs(fraction - round(fraction)) < 1e-6 and info.get("norm") == "linf" else f" @ ε={epsilon:g}"


def leaderboard_columns(summary: pd.DataFrame, record: Mapping[str, Any] | None = None) -> list[LeaderboardColumn]:
    """The numeric columns present in summary.csv, in reading order (``record``: run.json, for attack labels)."""
    record = record or {}
    fixed = [
        ("clean_error", "clean error", "top-1 error on clean images, 95 % Wilson interval"),
        ("mce", "mCE", "mean corruption error normalised by the reference model (100 = reference)"),
        ("relative_mce", "relative mCE", "mCE of the error increase over clean, normalised by the reference"),
        ("mean_corruption_error", "mean corruption error", "unnormalised mean error over the common corruptions"),
        ("mfr", "mFR", "mean flip rate normalised by the reference model"),
        ("mt5d", "mT5D", "mean top-5 distance normalised by the reference model"),
        ("shift_consistency", "shift consistency", "share of images with the same class under two random shifts"),
    ]
    columns = [LeaderboardColumn(key, f"{label} (%)", title) for key, label, title in fixed if key in summary.columns]
    for column in summary.columns:
        if column.startswith("robust_accuracy_") and not column.endswith(("_low", "_high")):
            attack = column[len("robust_accuracy_") :]
            columns.append(LeaderboardColumn(column, f"robust acc. {attack_label(attack, record)}{_headline_epsilon_text(attack, record)} (%)", f"robust accuracy under {attack} at the headline epsilon, 95 % Wilson interval"))
    return columns


def _cell_text(value: float, low: float, high: float, percent: bool) -> tuple[str, str]:
    if np.isinf(value):
        # A ratio over a zero reference value: shown, not hidden.
        return ("∞" if value > 0 else "−∞"), ""
    if not np.isfinite(value):
        return "—", ""
    scale = 100 if percent else 1
    interval = f"[{scale * low:.1f}, {scale * high:.1f}]" if np.isfinite(low) and np.isfinite(high) else ""
    return f"{scale * value:.2f}", interval


def leaderboard_rows(tables: RunTables, columns: list[LeaderboardColumn]) -> list[dict[str, Any]]:
    """One row per model: name, architecture, pooling and formatted cells with sort keys."""
    failed_models = {row["model"] for row in failed_rows(tables)}
    rows = []
    for model in tables.models:
        cells = []
        for column in columns:
            value = tables.summary_value(model, column.key)
            text, interval = _cell_text(value, tables.summary_value(model, f"{column.key}_low"), tables.summary_value(model, f"{column.key}_high"), column.percent)
            cells.append({"text": text, "interval": interval, "sort": "" if np.isnan(value) else f"{value:.10g}".replace("inf", "Infinity")})
        rows.append(
            {
                "model": model,
                "architecture": _text(tables, model, "architecture"),
                "pooling": _text(tables, model, "pooling"),
                "reference": _reference_of(tables, model) or "",
                "has_failures": model in failed_models,
                "cells": cells,
            }
        )
    return rows


def _text(tables: RunTables, model: str, column: str) -> str:
    if column not in tables.summary.columns:
        return ""
    match = tables.summary.loc[tables.summary["model"] == model, column]
    return "" if not len(match) or pd.isna(match.iloc[0]) else str(match.iloc[0])


