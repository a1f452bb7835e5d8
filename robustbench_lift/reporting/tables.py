"""A finished run's tables as the report reads them, and the numbers the report shows.

Reads ``results.csv``, ``summary.csv`` and ``run.json`` through :mod:`robustbench_lift.results`
and never evaluates a model. Corruption names and families come from :mod:`corruptions`;
attack labels come from the run's record (each attack's own label, written by the run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from corruptions.registry import CORRUPTION_FAMILIES, EXTRA_CORRUPTIONS
from robustbench_lift.metrics import ALEXNET_IMAGENET_C
from robustbench_lift.metrics.seeds import POOLING_SUMMARY_FILE, pooling_summary, seed_spread_comparison
from robustbench_lift.results import read_run

__all__ = [
    "CORRUPTION_ORDER",
    "EXTRA_CORRUPTIONS",
    "RELATIVE_MCE_MAX_INTERVAL_WIDTH",
    "CorruptionErrors",
    "LeaderboardColumn",
    "RunTables",
    "adversarial_warnings",
    "attack_protocols",
    "as_float",
    "attack_label",
    "corruption_error_bounds",
    "corruption_error_table",
    "corruption_errors",
    "corruption_names_in_run",
    "epsilon_text",
    "failed_corruption_cells",
    "failed_rows",
    "leaderboard_columns",
    "leaderboard_rows",
    "leaderboard_text",
    "load_run",
    "pooling_kinds",
    "reference_kind",
    "seed_section",
    "seed_text",
    "recorded_attacks",
    "relative_mce_problem",
]

CORRUPTION_ORDER: tuple[str, ...] = tuple(name for names in CORRUPTION_FAMILIES.values() for name in names)


@dataclass
class RunTables:
    """A finished run as read from disk."""

    directory: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    record: dict[str, Any]
    # Derived tables the report asks for more than once (the heatmap's context and plot).
    derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

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
    families = list(
        dict.fromkeys(tables.rows("corruption", ok_only=False).get("family", pd.Series(dtype=str)).astype(str))
    )
    return [name for name in CORRUPTION_ORDER if name in families] + [
        name for name in families if name not in CORRUPTION_ORDER
    ]


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
    errors = (
        {
            (model, family): part.set_index("level")["error"].astype(float)
            for (model, family), part in rows.groupby(["model", "family"])
        }
        if len(rows)
        else {}
    )
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


def _corruption_error(
    own: pd.Series,
    reference: str | None,
    corruption: str,
    errors: Mapping[Any, pd.Series],
    failed: set[tuple[str, str]],
) -> float:
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


def _log_spread(point: float, low: float, high: float) -> tuple[float, float]:
    """Distances from ``point`` down to ``low`` and up to ``high`` on the log scale."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log(point) - np.log(low)), float(np.log(high) - np.log(point))


def corruption_error_bounds(tables: RunTables) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lower and upper ends of an approximate 95 % interval for every cell of
    :func:`corruption_error_table`, from the per-condition intervals in results.csv.

    For each model, the mean error over the severities both models have gets the
    interval [mean of ``error_low``, mean of ``error_high``] (as if the severities moved
    together: conservative). CE is the ratio of the two means; on the log scale its
    interval spans the model's and the reference's distances to their interval ends
    added in quadrature (the two treated as independent, which is conservative too: a
    paired comparison over the same images would be narrower). The published AlexNet
    errors carry no interval. For the ``mean error`` measure: the mean interval itself.
    Cells without an interval are NaN.
    """
    table, measure = corruption_error_table(tables)
    low, high = (pd.DataFrame(math.nan, index=table.index, columns=table.columns) for _ in range(2))
    rows = tables.rows("corruption")
    if rows.empty or not {"error_low", "error_high"} <= set(rows.columns):
        return low, high
    columns = ["error", "error_low", "error_high"]
    frames = {
        (model, family): part.set_index("level")[columns].astype(float)
        for (model, family), part in rows.groupby(["model", "family"])
    }
    for model in table.index:
        reference = _reference_of(tables, model)
        for corruption in table.columns:
            own = frames.get((model, corruption))
            value = table.loc[model, corruption]
            if own is None or not np.isfinite(value):
                continue
            if measure == "mean error":
                low.loc[model, corruption], high.loc[model, corruption] = (
                    own["error_low"].mean(),
                    own["error_high"].mean(),
                )
                continue
            if reference == "alexnet":  # published errors: no interval on the reference's side
                published = float(ALEXNET_IMAGENET_C.errors_at(corruption, own.index).sum())
                low.loc[model, corruption], high.loc[model, corruption] = (
                    own["error_low"].sum() / published,
                    own["error_high"].sum() / published,
                )
                continue
            theirs = frames.get((reference, corruption)) if reference else None
            if theirs is None:
                continue
            levels = own.index.intersection(theirs.index)
            mine, ours = own.loc[levels].mean(), theirs.loc[levels].mean()
            down, up = _log_spread(mine["error"], mine["error_low"], mine["error_high"])
            reference_down, reference_up = _log_spread(ours["error"], ours["error_low"], ours["error_high"])
            with np.errstate(over="ignore", invalid="ignore"):
                low.loc[model, corruption] = (
                    value * math.exp(-math.hypot(down, reference_up))
                    if np.isfinite(down) and np.isfinite(reference_up)
                    else 0.0
                )
                high.loc[model, corruption] = (
                    value * math.exp(math.hypot(up, reference_down))
                    if np.isfinite(up) and np.isfinite(reference_down)
                    else math.inf
                )
    return low, high


@dataclass
class CorruptionErrors:
    """The CE heatmap's numbers: per model (rows) and corruption (columns).

    Attributes:
        measure: ``"CE"`` (ratio to the reference, 1 = reference) or ``"mean error"``.
        values: CE (or mean error); NaN where failed or not available.
        low, high: the 95 % interval of :func:`corruption_error_bounds`.
        within_noise: the interval contains 1 (CE only): the model cannot be told from
            its reference on that corruption.
        reference: the model is its own reference (CE is 1 by definition).
        failed: (model, corruption) pairs with a failed severity.
    """

    measure: str
    values: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    within_noise: pd.DataFrame
    reference: pd.DataFrame
    failed: set[tuple[str, str]]


def corruption_errors(tables: RunTables) -> CorruptionErrors:
    """CE per model and corruption with intervals and noise marks (see :class:`CorruptionErrors`)."""
    if "corruption_errors" not in tables.derived:
        tables.derived["corruption_errors"] = _corruption_errors(tables)
    found: CorruptionErrors = tables.derived["corruption_errors"]
    return found


def _corruption_errors(tables: RunTables) -> CorruptionErrors:
    values, measure = corruption_error_table(tables)
    low, high = corruption_error_bounds(tables)
    own_reference = pd.DataFrame(False, index=values.index, columns=values.columns)
    for model in values.index:
        own_reference.loc[model, :] = measure == "CE" and _reference_of(tables, model) == model
    contains = (low.to_numpy(dtype=float) <= 1.0) & (high.to_numpy(dtype=float) >= 1.0)
    noise = pd.DataFrame(contains & (measure == "CE"), index=values.index, columns=values.columns) & ~own_reference
    return CorruptionErrors(measure, values, low, high, noise, own_reference, failed_corruption_cells(tables))


def failed_rows(tables: RunTables) -> list[dict[str, str]]:
    """Every failed cell: model, suite, condition, message."""
    if "status" not in tables.results.columns:
        return []
    failed = tables.results[tables.results["status"] != "ok"]
    message = failed["message"] if "message" in failed.columns else pd.Series("", index=failed.index)
    return [
        {
            "model": str(row.model),
            "suite": str(row.suite),
            "condition": str(row.condition),
            "message": "" if pd.isna(text) else str(text),
        }
        for row, text in zip(failed.itertuples(index=False), message)
    ]


def epsilon_text(epsilon: float, norm: str) -> str:
    """An attack budget as people write it: ``8/255`` for L∞ budgets on that grid, else ``0.5``."""
    if norm == "linf" and np.isfinite(epsilon):
        steps = epsilon * 255
        if abs(steps - round(steps)) < 1e-6:
            return f"{round(steps)}/255" if round(steps) else "0"
    return f"{epsilon:g}"


#: Protocol entries shown in their own columns, not among the hyperparameters.
_PROTOCOL_COLUMNS = ("library", "library_version", "epsilons", "sample_size", "seed", "precision")


def attack_protocols(record: Mapping[str, Any]) -> list[dict[str, str]]:
    """Each recorded attack's protocol as text for the report: library and version,
    hyperparameters, epsilons, images attacked, seed and precision (empty for runs that
    recorded no protocol)."""
    rows = []
    for name, info in recorded_attacks(record).items():
        protocol = info.get("protocol") if isinstance(info, Mapping) else None
        if not isinstance(protocol, Mapping):
            continue
        norm = str(info.get("norm", ""))
        epsilons = protocol.get("epsilons") or []
        rows.append(
            {
                "attack": attack_label(name, record),
                "library": f"{protocol.get('library', '?')} {protocol.get('library_version', '')}".strip(),
                "settings": ", ".join(
                    f"{key} {value}" for key, value in protocol.items() if key not in _PROTOCOL_COLUMNS
                ),
                "epsilons": ", ".join(epsilon_text(as_float(epsilon), norm) for epsilon in epsilons),
                "images": str(protocol.get("sample_size", "")),
                "seed": str(protocol.get("seed", "")),
                "precision": str(protocol.get("precision", "")),
            }
        )
    return rows


def adversarial_warnings(tables: RunTables) -> list[dict[str, str]]:
    """Gradient-masking warnings stored with the adversarial rows, one per model x attack x
    message, with the epsilons it was raised at (in order)."""
    rows = tables.rows("adversarial", ok_only=False)
    if "warning" not in rows.columns:
        return []
    flagged = rows[rows["warning"].notna() & (rows["warning"].astype(str).str.strip() != "")]
    grouped: dict[tuple[str, str, str], list[tuple[float, str]]] = {}
    for row in flagged.itertuples(index=False):
        attack = str(getattr(row, "family", "") or "")
        norm = str(getattr(row, "norm", "") or "")
        epsilon = as_float(getattr(row, "level", math.nan))
        key = (str(row.model), attack, str(row.warning).strip())
        text = epsilon_text(epsilon, norm) if np.isfinite(epsilon) else str(row.condition)
        grouped.setdefault(key, []).append((epsilon if np.isfinite(epsilon) else math.inf, text))
    return [
        {
            "model": model,
            "attack": tables.attack_label(attack),
            "warning": warning,
            "epsilons": ", ".join(dict.fromkeys(text for _, text in sorted(found))),
        }
        for (model, attack, warning), found in grouped.items()
    ]


# ------------------------------------------------------------------ relative mCE: when it is shown

#: A relative mCE whose 95 % interval is wider than this (ratio units: 2.0 = ±100 points)
#: is not shown: it carries no information about the model.
RELATIVE_MCE_MAX_INTERVAL_WIDTH = 2.0


def relative_mce_problem(tables: RunTables, model: str) -> str:
    """Why a model's relative mCE is not shown, or ``""`` when it is. The rule (docs/metrics.md):

    1. undefined: the point estimate is missing or not finite (no reference model, the
       reference lacks results, or its errors never rise above its clean error); no
       interval is shown either.
    2. unstable, reference does not degrade: relative CE divides by the reference's
       error increase over clean, ``mean_s E(ref, c, s) - E(ref, clean)``; when that
       increase is, for some common corruption c, smaller than the half-width of the
       reference's 95 % clean-error interval, the divisor is within sampling noise of 0
       and the ratio can take any value.
    3. unstable, wide interval: the 95 % interval is wider than
       :data:`RELATIVE_MCE_MAX_INTERVAL_WIDTH` (±100 points).
    """
    value = tables.summary_value(model, "relative_mce")
    if not np.isfinite(value):
        return "undefined: " + _relative_mce_undefined_reason(tables, model)
    degradation = _reference_degradation_problem(tables, model)
    if degradation:
        return "unstable: " + degradation
    low, high = tables.summary_value(model, "relative_mce_low"), tables.summary_value(model, "relative_mce_high")
    if np.isfinite(low) and np.isfinite(high) and high - low > RELATIVE_MCE_MAX_INTERVAL_WIDTH:
        return f"unstable: its 95 % interval [{100 * low:.0f}, {100 * high:.0f}] is wider than ±{50 * RELATIVE_MCE_MAX_INTERVAL_WIDTH:.0f} points"
    if not (np.isfinite(low) and np.isfinite(high)) and (np.isfinite(low) or np.isfinite(high)):
        return "unstable: its 95 % interval is unbounded"
    return ""


def _relative_mce_undefined_reason(tables: RunTables, model: str) -> str:
    reference = _reference_of(tables, model)
    if reference is None:
        return "no reference model"
    if reference == "alexnet":
        return "the published AlexNet errors do not cover this run's corruptions and severities"
    if reference not in tables.models or not np.isfinite(tables.summary_value(reference, "clean_error")):
        return f"the reference {reference} has no clean error"
    return (
        f"the reference {reference} has no complete corruption results, or its errors do not rise above its clean error"
    )


def _reference_degradation_problem(tables: RunTables, model: str) -> str:
    reference = _reference_of(tables, model)
    clean = tables.rows("clean")
    rows = tables.rows("corruption")
    if reference in (None, "alexnet") or clean.empty or rows.empty:
        return ""
    reference_clean = clean[clean["model"] == reference]
    if reference_clean.empty:
        return ""
    clean_error = as_float(reference_clean["error"].iloc[0])
    noise = (
        as_float(reference_clean.get("error_high", pd.Series([math.nan])).iloc[0])
        - as_float(reference_clean.get("error_low", pd.Series([math.nan])).iloc[0])
    ) / 2
    if not np.isfinite(noise):
        return ""
    mine = rows[(rows["model"] == reference) & ~rows["family"].isin(EXTRA_CORRUPTIONS)]
    increases = (mine.groupby("family")["error"].mean() - clean_error).sort_values()
    if len(increases) and increases.iloc[0] < noise:
        corruption, increase = increases.index[0], increases.iloc[0]
        return f"the reference {reference} degrades by {100 * increase:.1f} points on {corruption}, within its noise (±{100 * noise:.1f})"
    return ""


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
    return (
        f" @ ε={round(fraction)}/255"
        if abs(fraction - round(fraction)) < 1e-6 and info.get("norm") == "linf"
        else f" @ ε={epsilon:g}"
    )


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
        ("clean_miou", "clean mIoU", "segmentation: mIoU on clean images, 95 % bootstrap interval over images"),
        ("mean_corrupted_miou", "mean corrupted mIoU", "segmentation: mean mIoU over corruption x severity cells"),
        ("relative_robustness", "relative robustness", "segmentation: mean corrupted mIoU / clean mIoU"),
        ("mean_pixel_flip_share", "pixel flip share", "segmentation: share of pixels whose label flips between frames"),
    ]
    columns = [LeaderboardColumn(key, f"{label} (%)", title) for key, label, title in fixed if key in summary.columns]
    for column in summary.columns:
        if column.startswith("robust_accuracy_") and not column.endswith(("_low", "_high")):
            attack = column[len("robust_accuracy_") :]
            columns.append(
                LeaderboardColumn(
                    column,
                    f"robust acc. {attack_label(attack, record)}{_headline_epsilon_text(attack, record)} (%)",
                    f"robust accuracy under {attack} at the headline epsilon, 95 % Wilson interval",
                )
            )
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
    """One row per model: name, architecture, pooling and formatted cells with sort keys.

    A relative mCE that :func:`relative_mce_problem` rejects is shown as ``n/a`` with
    the reason (``note``) instead of its number and interval.
    """
    failed_models = {row["model"] for row in failed_rows(tables)}
    rows = []
    for model in tables.models:
        cells = []
        for column in columns:
            problem = relative_mce_problem(tables, model) if column.key == "relative_mce" else ""
            if problem:
                cells.append({"text": "n/a", "interval": f"({problem.split(':')[0]})", "sort": "", "note": problem})
                continue
            value = tables.summary_value(model, column.key)
            text, interval = _cell_text(
                value,
                tables.summary_value(model, f"{column.key}_low"),
                tables.summary_value(model, f"{column.key}_high"),
                column.percent,
            )
            cells.append(
                {
                    "text": text,
                    "interval": interval,
                    "sort": "" if np.isnan(value) else f"{value:.10g}".replace("inf", "Infinity"),
                    "note": "",
                }
            )
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


# ------------------------------------------------------------------ the terminal's short answer

# summary.csv columns the terminal leaderboard shows, in order (robust accuracy follows).
TERMINAL_COLUMNS = (
    "clean_error", "mce", "mfr", "clean_miou", "mean_corrupted_miou", "relative_robustness", "mean_pixel_flip_share",
)  # fmt: skip
# The attack whose headline robust accuracy the terminal shows when the run has several.
TERMINAL_ATTACK = "pgd_linf"


def leaderboard_text(run_directory: str | Path) -> str:
    """A finished run's short answer for the terminal: per model clean error, mCE, mFR and
    robust accuracy at the headline epsilon (one attack), with 95 % intervals.

    Args:
        run_directory: the run folder.

    Returns:
        Aligned plain text: a table, then a line saying where the full tables are. Columns
        the run has no numbers for are left out; every column is in the report and in
        ``summary.csv``.
    """
    tables = load_run(run_directory)
    columns = leaderboard_columns(tables.summary, tables.record)
    robust = [column for column in columns if column.key.startswith("robust_accuracy_")]
    preferred = [column for column in robust if column.key == f"robust_accuracy_{TERMINAL_ATTACK}"]
    shown = [column for key in TERMINAL_COLUMNS for column in columns if column.key == key] + (preferred or robust)[:1]
    rows = leaderboard_rows(tables, shown)
    header = ["model", *(column.label for column in shown)]
    body = [
        [
            row["model"] + (" *" if row["has_failures"] else ""),
            *(f"{cell['text']} {cell['interval']}".strip() for cell in row["cells"]),
        ]
        for row in rows
    ]
    widths = [max(len(line[position]) for line in [header, *body]) for position in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in [header, *body]]
    notes = ["95 % intervals in brackets"]
    references = sorted({row["reference"] for row in rows if row["reference"]})
    if references and any(column.key in ("mce", "mfr") for column in shown):
        notes.append(f"mCE and mFR: 100 = reference model {', '.join(references)}")
    if any(row["has_failures"] for row in rows):
        notes.append("* some cells failed (see results.csv)")
    if len(robust) > 1:
        notes.append(f"{len(robust) - 1} more attack{'s' if len(robust) > 2 else ''} in the report")
    notes.append(f"all metrics: {Path(run_directory) / 'summary.csv'}")
    return "\n".join([*lines, "(" + "; ".join(notes) + ")"])


# ------------------------------------------------------------------ pooling kinds across seeds


def pooling_kinds(tables: RunTables) -> pd.DataFrame:
    """The run's pooling_summary.csv, or the same table computed from summary.csv and
    run.json for runs written before that file existed."""
    path = tables.directory / POOLING_SUMMARY_FILE
    if path.is_file():
        return pd.read_csv(path)
    return pooling_summary(tables.summary, tables.record.get("models") or {})


# The kind compared against when a run has no reference model (segmentation: SegNet's MaxUnpool).
FALLBACK_REFERENCE_KIND = "max"


def reference_kind(tables: RunTables, kinds: pd.DataFrame) -> str | None:
    """The pooling label of the group holding the run's reference model; without one, the
    kind ``max`` when the run has it; else None."""
    labels = [str(label) for label in kinds["pooling"]]
    references = (
        tables.summary["reference_model"].dropna().astype(str)
        if "reference_model" in tables.summary.columns
        else pd.Series(dtype=str)
    )
    if references.empty:
        return FALLBACK_REFERENCE_KIND if FALLBACK_REFERENCE_KIND in labels else None
    reference = references.iloc[0]
    for _, row in kinds.iterrows():
        if reference in str(row["models"]).split():
            return str(row["pooling"])
    return None


def seed_section(tables: RunTables) -> dict[str, Any] | None:
    """The report's "pooling kinds across training seeds" table: per kind, mean ± sd over
    its seeds for every leaderboard metric, each cell marked where the kind differs from
    the reference kind by more than the seed spread (Welch t-test, 5 %). None when no
    kind has two seeds (then nothing can be said about seed spread)."""
    kinds = pooling_kinds(tables)
    if kinds.empty or int(kinds["seeds"].max()) < 2:
        return None
    reference = reference_kind(tables, kinds)
    columns = [column for column in leaderboard_columns(tables.summary, tables.record) if f"{column.key}_mean" in kinds]
    comparison = seed_spread_comparison(kinds, reference) if reference else pd.DataFrame()
    verdicts = {
        (str(row["pooling"]), str(row["metric"])): row
        for _, row in comparison.iterrows()
        if bool(row["exceeds_seed_spread"])
    }
    rows = []
    for _, kind in kinds.iterrows():
        cells = []
        for column in columns:
            mean, sd = as_float(kind[f"{column.key}_mean"]), as_float(kind[f"{column.key}_sd"])
            scale = 100 if column.percent else 1
            text = f"{scale * mean:.2f}" if math.isfinite(mean) else "—"
            spread = f"± {scale * sd:.2f}" if math.isfinite(sd) else ""
            verdict = verdicts.get((str(kind["pooling"]), column.key))
            mark = ""
            if verdict is not None:
                mark = "better" if bool(verdict["better"]) else "worse"
            cells.append({"text": text, "spread": spread, "mark": mark, "sort": mean if math.isfinite(mean) else ""})
        rows.append(
            {
                "pooling": str(kind["pooling"]),
                "seeds": int(kind["seeds"]),
                "training_seeds": str(kind["training_seeds"]),
                "cells": cells,
            }
        )
    exceeding = [
        f"{pooling} {metric} ({'better' if bool(row['better']) else 'worse'}, p = {float(row['welch_p']):.3f})"
        for (pooling, metric), row in verdicts.items()
    ]
    return {"columns": columns, "rows": rows, "reference": reference, "exceeding": exceeding}


def seed_text(run_directory: str | Path) -> str | None:
    """The terminal's across-seed table (pooling kind, seeds, mean ± sd of the short
    answer's metrics, ▲/▼ where a kind differs from the reference kind beyond the seed
    spread); None when no kind has two seeds."""
    tables = load_run(run_directory)
    section = seed_section(tables)
    if section is None:
        return None
    keys = [column.key for column in section["columns"]]
    robust = [key for key in keys if key.startswith("robust_accuracy_")]
    preferred = [key for key in robust if key == f"robust_accuracy_{TERMINAL_ATTACK}"]
    shown = [key for key in [*TERMINAL_COLUMNS, *(preferred or robust)[:1]] if key in keys]
    labels = {column.key: column.label for column in section["columns"]}
    header = ["pooling", "seeds", *(labels[key] for key in shown)]
    marks = {"better": " ▲", "worse": " ▼", "": ""}
    body = []
    for row in section["rows"]:
        cells = [row["cells"][keys.index(key)] for key in shown]
        body.append(
            [
                row["pooling"],
                str(row["seeds"]),
                *(f"{c['text']} {c['spread']}".strip() + marks[c["mark"]] for c in cells),
            ]
        )
    widths = [max(len(line[position]) for line in [header, *body]) for position in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in [header, *body]]
    note = "mean ± sd over training seeds"
    if section["reference"]:
        note += f"; ▲/▼ better/worse than {section['reference']} beyond the seed spread (Welch, 5 %)"
    note += f"; {Path(run_directory) / POOLING_SUMMARY_FILE}"
    return "\n".join([*lines, f"({note})"])
