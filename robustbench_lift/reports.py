"""The HTML report of a finished run: one self-contained ``<run>/index.html``.

The report reads the stored tables (results.csv, summary.csv, run.json) and never
evaluates a model; the one computation it does on images is corrupting a single test
image for display. Plots are drawn with matplotlib (Agg), saved as PNG and SVG under
``<run>/plots/`` and embedded in the page as base64 PNG, so the page works offline with
no external resource. Rendering uses Jinja2 with autoescaping on: every name from the
tables appears as text.

Plots come from :data:`PLOT_BUILDERS`, a list of small functions that each turn the run's
tables into zero or more figures; add a builder to add a plot.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from robustbench_lift.comparison import attack_label
from robustbench_lift.errors import UserError
from robustbench_lift.runner import read_run

if TYPE_CHECKING:
    from robustbench_lift.metrics import PublishedReference

log = logging.getLogger(__name__)

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"
REPORT_FILE = "index.html"
PLOT_DIRECTORY = "plots"

# Corruption families as grouped by ImageNet-C (extras placed with their kin).
CORRUPTION_FAMILIES: Dict[str, Tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}
CORRUPTION_ORDER: Tuple[str, ...] = tuple(name for names in CORRUPTION_FAMILIES.values() for name in names)
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
GRID_SEVERITIES = (1, 2, 3, 4, 5)


# ------------------------------------------------------------------ the run's tables


@dataclass
class RunTables:
    """A finished run as read from disk."""

    directory: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    record: Dict[str, Any]

    @property
    def models(self) -> List[str]:
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
        return _number(match.iloc[0]) if len(match) else math.nan


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def load_run(run_directory: str | Path) -> RunTables:
    """Reads a finished run; UserError when the folder holds none."""
    results, summary, record = read_run(run_directory)
    # Names are text even when they look like numbers.
    for table in (results, summary):
        if "model" in table.columns:
            table["model"] = table["model"].astype(str)
    return RunTables(Path(run_directory), results, summary, record)


def model_colours(models: Sequence[str]) -> Dict[str, Any]:
    """One stable colour per model, shared by every plot."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {model: palette(position % palette.N) for position, model in enumerate(models)}


def plain_label(text: Any) -> str:
    """Text for matplotlib that is never parsed as mathtext."""
    return str(text).replace("$", r"\$")


# ------------------------------------------------------------------ numbers read from the tables


def corruption_names_in_run(tables: RunTables) -> List[str]:
    """Corruptions evaluated in the run, in family order (unknown names last)."""
    families = list(dict.fromkeys(tables.rows("corruption", ok_only=False).get("family", pd.Series(dtype=str)).astype(str)))
    return [name for name in CORRUPTION_ORDER if name in families] + [name for name in families if name not in CORRUPTION_ORDER]


def failed_corruption_cells(tables: RunTables) -> set[Tuple[str, str]]:
    """(model, corruption) pairs with at least one failed severity."""
    rows = tables.rows("corruption", ok_only=False)
    if "status" not in rows.columns:
        return set()
    failed = rows[rows["status"] != "ok"]
    return {(str(model), str(family)) for model, family in zip(failed["model"], failed["family"])}


def _reference_of(tables: RunTables, model: str) -> Optional[str]:
    if "reference_model" not in tables.summary.columns:
        return None
    match = tables.summary.loc[tables.summary["model"] == model, "reference_model"]
    if not len(match) or pd.isna(match.iloc[0]) or str(match.iloc[0]).strip() == "":
        return None
    return str(match.iloc[0])


def _alexnet_reference() -> PublishedReference:
    from robustbench_lift.metrics import ALEXNET_IMAGENET_C

    return ALEXNET_IMAGENET_C


def corruption_error_table(tables: RunTables) -> Tuple[pd.DataFrame, str]:
    """Per model and corruption: CE (SPEC §3) and the measure's name.

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


def _corruption_error(own: pd.Series, reference: Optional[str], corruption: str, errors: Dict[Tuple[str, str], pd.Series], failed: set) -> float:
    if reference is None:
        return math.nan
    if reference == "alexnet":
        alexnet = _alexnet_reference()
        if corruption not in alexnet.severity_errors:
            return math.nan
        # AlexNet's errors at the severities this model has, not its five-severity mean.
        denominator = float(alexnet.errors_at(corruption, own.index).sum())
        return own.sum() / denominator if denominator > 0 else math.nan
    theirs = errors.get((reference, corruption))
    if theirs is None or (reference, corruption) in failed:
        return math.nan
    levels = own.index.intersection(theirs.index)
    denominator = theirs.loc[levels].sum()
    return own.loc[levels].sum() / denominator if denominator > 0 else math.nan


def failed_rows(tables: RunTables) -> List[Dict[str, str]]:
    """Every failed cell: model, suite, condition, message."""
    if "status" not in tables.results.columns:
        return []
    failed = tables.results[tables.results["status"] != "ok"]
    message = failed["message"] if "message" in failed.columns else pd.Series("", index=failed.index)
    return [
        {"model": str(row.model), "suite": str(row.suite), "condition": str(row.condition), "message": "" if pd.isna(text) else str(text)}
        for row, text in zip(failed.itertuples(index=False), message)
    ]


def adversarial_warnings(tables: RunTables) -> List[Dict[str, str]]:
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


def _headline_epsilon_text(attack: str) -> str:
    try:
        from robustbench_lift.attacks import ATTACKS

        epsilon = ATTACKS.get(attack).headline_epsilon
    except Exception:  # the label is cosmetic; an attack unknown to this version keeps a plain header
        return ""
    fraction = epsilon * 255
    return f" @ ε={round(fraction)}/255" if abs(fraction - round(fraction)) < 1e-6 and ATTACKS.get(attack).norm == "linf" else f" @ ε={epsilon:g}"


def leaderboard_columns(summary: pd.DataFrame) -> List[LeaderboardColumn]:
    """The numeric columns present in summary.csv, in reading order."""
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
            columns.append(LeaderboardColumn(column, f"robust acc. {attack_label(attack)}{_headline_epsilon_text(attack)} (%)", f"robust accuracy under {attack} at the headline epsilon, 95 % Wilson interval"))
    return columns


def _cell_text(value: float, low: float, high: float, percent: bool) -> Tuple[str, str]:
    if np.isinf(value):
        # A ratio over a zero reference value: shown, not hidden.
        return ("∞" if value > 0 else "−∞"), ""
    if not np.isfinite(value):
        return "—", ""
    scale = 100 if percent else 1
    interval = f"[{scale * low:.1f}, {scale * high:.1f}]" if np.isfinite(low) and np.isfinite(high) else ""
    return f"{scale * value:.2f}", interval


def leaderboard_rows(tables: RunTables, columns: List[LeaderboardColumn]) -> List[Dict[str, Any]]:
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


# ------------------------------------------------------------------ heatmap (HTML table)


def _colour_scale(values: np.ndarray, measure: str) -> Callable[[float], Tuple[str, str]]:
    """value -> (background, text colour); CE diverges around 100 % (the reference)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, TwoSlopeNorm, to_hex

    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if measure == "CE":
        norm: Normalize = TwoSlopeNorm(vmin=min(low, 0.999), vcenter=1.0, vmax=max(high, 1.001))
    else:
        norm = Normalize(vmin=low, vmax=high if high > low else low + 1e-9)
    palette = colormaps["RdYlGn_r"]

    def colour(value: float) -> Tuple[str, str]:
        red, green, blue, _ = palette(float(norm(value)))
        luminance = 0.299 * red + 0.587 * green + 0.114 * blue
        return to_hex((red, green, blue)), "#000000" if luminance > 0.5 else "#ffffff"

    return colour


def heatmap_context(tables: RunTables) -> Optional[Dict[str, Any]]:
    """Rows and columns of the CE heatmap table, or None without corruption results."""
    table, measure = corruption_error_table(tables)
    if table.empty or not len(table.columns):
        return None
    failed = failed_corruption_cells(tables)
    colour = _colour_scale(table.to_numpy(dtype=float), measure)
    rows = []
    for model in table.index:
        cells = []
        for corruption in table.columns:
            value = float(table.loc[model, corruption])
            if (model, corruption) in failed:
                cells.append({"text": "failed", "sort": "", "style": "", "failed": True})
            elif np.isfinite(value):
                background, foreground = colour(value)
                cells.append({"text": f"{100 * value:.1f}", "sort": f"{value:.10g}", "style": f"background:{background};color:{foreground}", "failed": False})
            else:
                cells.append({"text": "—", "sort": "", "style": "", "failed": False})
        rows.append({"model": model, "cells": cells})
    columns = [{"name": name, "extra": name in EXTRA_CORRUPTIONS} for name in table.columns]
    return {"measure": measure, "columns": columns, "rows": rows}


# ------------------------------------------------------------------ plots


@dataclass
class FigureSpec:
    """A drawn figure waiting to be saved: file stem, title, caption."""

    name: str
    title: str
    caption: str
    figure: Any  # matplotlib Figure


@dataclass
class PlotOutcome:
    """What a builder produced: figures, and a note when it had to leave something out."""

    figures: List[FigureSpec] = field(default_factory=list)
    note: Optional[str] = None


@dataclass
class Plot:
    """A saved plot as the template sees it."""

    name: str
    title: str
    caption: str
    png_base64: str
    png_file: str
    svg_file: str


PlotBuilder = Callable[[RunTables], PlotOutcome]
PLOT_BUILDERS: List[PlotBuilder] = []


def plot_builder(function: PlotBuilder) -> PlotBuilder:
    """Registers a plot builder; the report draws builders in registration order."""
    PLOT_BUILDERS.append(function)
    return function


def _figure(rows: int, columns: int, size: Tuple[float, float], **options: Any) -> Tuple[Any, Any]:
    """A new (figure, axes grid). matplotlib's object API renders with Agg and leaves the
    global backend and figure list alone, so a user's interactive session is unaffected."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    return figure, figure.subplots(rows, columns, squeeze=False, **options)


def _legend_below(figure: Any, axes: Any) -> None:
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, fontsize=8)


@plot_builder
def corruption_heatmap(tables: RunTables) -> PlotOutcome:
    """CE (or mean error) per corruption and model, as an image for the plots folder."""
    table, measure = corruption_error_table(tables)
    if table.empty or not len(table.columns):
        return PlotOutcome()
    values = 100 * table.to_numpy(dtype=float)
    figure, axes_grid = _figure(1, 1, (max(6.0, 0.45 * len(table.columns) + 3), 0.45 * len(table.index) + 2.2))
    axes = axes_grid[0][0]
    finite = values[np.isfinite(values)]
    from matplotlib.colors import TwoSlopeNorm

    norm = TwoSlopeNorm(vmin=min(finite.min(), 99.9), vcenter=100, vmax=max(finite.max(), 100.1)) if measure == "CE" and finite.size else None
    image = axes.imshow(np.ma.masked_invalid(values), cmap="RdYlGn_r", norm=norm, aspect="auto")
    axes.set_xticks(range(len(table.columns)), [plain_label(name) for name in table.columns], rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(table.index)), [plain_label(name) for name in table.index], fontsize=8)
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            text = f"{values[row, column]:.0f}" if np.isfinite(values[row, column]) else "×"
            axes.text(column, row, text, ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axes, label=f"{measure} (%)")
    axes.set_title(f"{measure} per corruption (%)", fontsize=10)
    figure.tight_layout()
    caption = "CE = Σ_s E(model) / Σ_s E(reference) per corruption, 100 = reference; × = failed or not available." if measure == "CE" else "Mean error over severities (no reference model in this run)."
    return PlotOutcome([FigureSpec("corruption_heatmap", f"{measure} per corruption and model", caption, figure)])


@plot_builder
def error_versus_severity(tables: RunTables) -> PlotOutcome:
    """Error versus severity, one figure per corruption family, one line per model."""
    rows = tables.rows("corruption")
    if rows.empty:
        return PlotOutcome()
    colours = model_colours(tables.models)
    clean = tables.rows("clean").set_index("model")["error"] if not tables.rows("clean").empty else pd.Series(dtype=float)
    present = set(rows["family"].astype(str))
    groups = {family: [name for name in names if name in present] for family, names in CORRUPTION_FAMILIES.items()}
    groups["other"] = [name for name in corruption_names_in_run(tables) if name not in CORRUPTION_ORDER]
    figures = []
    for family, names in groups.items():
        if not names:
            continue
        figure, axes_row = _figure(1, len(names), (2.7 * len(names) + 0.5, 3.2), sharey=True)
        for axes, corruption in zip(axes_row[0], names):
            for model in tables.models:
                part = rows[(rows["model"] == model) & (rows["family"] == corruption)].sort_values("level")
                if part.empty:
                    continue
                levels, errors = part["level"].to_numpy(float), part["error"].to_numpy(float)
                lows, highs = part["error_low"].to_numpy(float), part["error_high"].to_numpy(float)
                if model in clean.index:
                    levels, errors = np.r_[0.0, levels], np.r_[float(clean.loc[model]), errors]
                    lows, highs = np.r_[math.nan, lows], np.r_[math.nan, highs]
                axes.plot(levels, 100 * errors, marker="o", markersize=3, color=colours[model], label=plain_label(model))
                axes.fill_between(levels, 100 * lows, 100 * highs, color=colours[model], alpha=0.12, linewidth=0)
            axes.set_title(plain_label(corruption + (" *" if corruption in EXTRA_CORRUPTIONS else "")), fontsize=9)
            axes.set_xlabel("severity (0 = clean)", fontsize=8)
            axes.set_xticks(range(0, 6))
            axes.grid(alpha=0.3)
        axes_row[0][0].set_ylabel("top-1 error (%)", fontsize=8)
        _legend_below(figure, axes_row[0][0])
        figure.tight_layout(rect=(0, 0.12, 1, 1))
        caption = f"Top-1 error per severity ({family} corruptions; * = held-out extra), shaded: 95 % Wilson interval; severity 0 is the clean error."
        figures.append(FigureSpec(f"severity_{family}", f"Error versus severity: {family}", caption, figure))
    return PlotOutcome(figures)


@plot_builder
def flip_probability_bars(tables: RunTables) -> PlotOutcome:
    """Flip probability (and top-5 distance) per perturbation, grouped bars per model."""
    rows = tables.rows("perturbation")
    if rows.empty or "flip_probability" not in rows.columns:
        return PlotOutcome()
    colours = model_colours(tables.models)
    perturbations = list(dict.fromkeys(rows["family"].astype(str)))
    metrics = [("flip_probability", "flip probability (%)", 100)] + ([("top5_distance", "top-5 distance", 1)] if "top5_distance" in rows.columns and rows["top5_distance"].notna().any() else [])
    figure, axes_column = _figure(len(metrics), 1, (max(7.0, 0.6 * len(perturbations) * max(1, len(tables.models)) / 2 + 3), 3.0 * len(metrics) + 0.6))
    width = 0.8 / max(1, len(tables.models))
    positions = np.arange(len(perturbations))
    for axes, (metric, label, scale) in zip(axes_column[:, 0], metrics):
        for offset, model in enumerate(tables.models):
            part = rows[rows["model"] == model].set_index("family")
            heights = [scale * _number(part.loc[name, metric]) if name in part.index else math.nan for name in perturbations]
            axes.bar(positions + (offset - (len(tables.models) - 1) / 2) * width, heights, width, color=colours[model], label=plain_label(model))
        axes.set_xticks(positions, [plain_label(name) for name in perturbations], rotation=30, ha="right", fontsize=8)
        axes.set_ylabel(label, fontsize=8)
        axes.grid(axis="y", alpha=0.3)
    _legend_below(figure, axes_column[0, 0])
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    return PlotOutcome([FigureSpec("flip_probability", "Flip probability per perturbation", "ImageNet-P-style flip probability per perturbation sequence (lower is more stable).", figure)])


@plot_builder
def shift_consistency_bars(tables: RunTables) -> PlotOutcome:
    """Shift consistency per model with its 95 % interval."""
    if "shift_consistency" not in tables.summary.columns or not tables.summary["shift_consistency"].notna().any():
        return PlotOutcome()
    colours = model_colours(tables.models)
    models = tables.models
    values = np.array([tables.summary_value(model, "shift_consistency") for model in models])
    lows = np.array([tables.summary_value(model, "shift_consistency_low") for model in models])
    highs = np.array([tables.summary_value(model, "shift_consistency_high") for model in models])
    errors = np.nan_to_num(np.vstack([values - lows, highs - values]), nan=0.0)
    figure, axes_grid = _figure(1, 1, (max(5.0, 0.8 * len(models) + 2), 3.4))
    axes = axes_grid[0][0]
    axes.bar(range(len(models)), 100 * values, yerr=100 * errors, color=[colours[model] for model in models], capsize=3)
    axes.set_xticks(range(len(models)), [plain_label(model) for model in models], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("shift consistency (%)", fontsize=8)
    finite = values[np.isfinite(values)]
    axes.set_ylim(max(0.0, 100 * finite.min() - 10) if finite.size else 0, 100)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return PlotOutcome([FigureSpec("shift_consistency", "Shift consistency", "Share of images classified the same under two random shifts; bars: 95 % Wilson interval.", figure)])


@plot_builder
def robust_accuracy_versus_epsilon(tables: RunTables) -> PlotOutcome:
    """Robust accuracy versus epsilon, one panel per attack, one line per model."""
    rows = tables.rows("adversarial")
    if rows.empty or "robust_accuracy" not in rows.columns:
        return PlotOutcome()
    colours = model_colours(tables.models)
    attacks = list(dict.fromkeys(rows["family"].astype(str)))
    figure, axes_row = _figure(1, len(attacks), (3.0 * len(attacks) + 0.5, 3.3), sharey=True)
    for axes, attack in zip(axes_row[0], attacks):
        norms = rows.loc[rows["family"] == attack, "norm"].dropna().astype(str) if "norm" in rows.columns else pd.Series(dtype=str)
        norm = norms.iloc[0] if len(norms) else ""
        for model in tables.models:
            part = rows[(rows["model"] == model) & (rows["family"] == attack)].sort_values("level")
            if part.empty:
                continue
            # L-inf budgets read best in pixel steps (8/255 -> 8).
            levels = part["level"].to_numpy(float) * (255 if norm == "linf" else 1)
            axes.plot(levels, 100 * part["robust_accuracy"].to_numpy(float), marker="o", markersize=3, color=colours[model], label=plain_label(model))
            if {"robust_accuracy_low", "robust_accuracy_high"} <= set(part.columns):
                axes.fill_between(levels, 100 * part["robust_accuracy_low"].to_numpy(float), 100 * part["robust_accuracy_high"].to_numpy(float), color=colours[model], alpha=0.12, linewidth=0)
        axes.set_title(plain_label(attack_label(attack)), fontsize=9)
        axes.set_xlabel({"linf": "epsilon (L∞, × 1/255)", "l2": "epsilon (L2)"}.get(norm, "epsilon"), fontsize=8)
        axes.grid(alpha=0.3)
    axes_row[0][0].set_ylabel("robust accuracy (%)", fontsize=8)
    _legend_below(figure, axes_row[0][0])
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    return PlotOutcome([FigureSpec("robust_accuracy", "Robust accuracy versus epsilon", "Accuracy under attack per perturbation budget; shaded: 95 % Wilson interval.", figure)])


def example_image(config: Dict[str, Any]) -> Tuple[np.ndarray, int]:
    """The run's first sampled test image and its index in the split (which seeds corruptions)."""
    from robustbench_lift.datasets import load_dataset

    full = load_dataset(config["dataset"], config.get("split", "test"), config.get("data_dir"))
    sample, indices = full.sample(config.get("sample_size"), int(config.get("seed", 0)))
    return sample.images[0], int(indices[0])


@plot_builder
def corruption_grid(tables: RunTables) -> PlotOutcome:
    """One test image under every corruption at severities 1..5 (display only)."""
    import corruptions

    config = tables.record.get("config") or {}
    if not config.get("dataset"):
        return PlotOutcome(note="Corruption examples omitted: run.json records no data set.")
    names = corruption_names_in_run(tables) or corruptions.corruption_names("all")
    try:
        image, index = example_image(config)
        profile, seed = config.get("profile", "cifar"), int(config.get("seed", 0))
        grid = [[corruptions.corrupt_image(image, name, severity, profile=profile, seed=seed, index=index) for severity in GRID_SEVERITIES] for name in names]
    except (UserError, OSError, ValueError, KeyError) as error:
        return PlotOutcome(note=f"Corruption examples omitted: the run's data is not available here ({' '.join(str(error).split())}).")
    # Corruptions across, severities down: a wide, short grid fits the page width.
    row_labels = ["clean"] + [f"severity {severity}" for severity in GRID_SEVERITIES]
    figure, axes_grid = _figure(len(row_labels), len(names), (0.85 * len(names) + 0.9, 0.85 * len(row_labels) + 0.9))
    for column, name in enumerate(names):
        for row, label in enumerate(row_labels):
            axes = axes_grid[row][column]
            axes.imshow(image if row == 0 else grid[column][row - 1], interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if column == 0:
                axes.set_ylabel(label, fontsize=7)
        axes_grid[0][column].set_title(plain_label(name.replace("_", " ")), fontsize=7, rotation=40, ha="left", loc="left")
    figure.subplots_adjust(left=0.04, right=0.99, bottom=0.02, top=0.84, wspace=0.05, hspace=0.05)
    caption = f"Test image {index} of {config.get('dataset', '?')} ({config.get('split', '?')}) under each corruption, profile {config.get('profile', 'cifar')}."
    return PlotOutcome([FigureSpec("corruption_grid", "Corruption examples", caption, figure)])


def save_figure(spec: FigureSpec, directory: Path) -> Plot:
    """Writes ``<name>.png`` and ``<name>.svg`` and returns the embeddable plot."""
    directory.mkdir(parents=True, exist_ok=True)
    png_path, svg_path = directory / f"{spec.name}.png", directory / f"{spec.name}.svg"
    buffer = io.BytesIO()
    # Fixed metadata keeps the files identical from one rendering to the next.
    spec.figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    png_path.write_bytes(buffer.getvalue())
    spec.figure.savefig(svg_path, format="svg", metadata={"Date": None})
    return Plot(spec.name, spec.title, spec.caption, base64.b64encode(buffer.getvalue()).decode("ascii"), f"{PLOT_DIRECTORY}/{png_path.name}", f"{PLOT_DIRECTORY}/{svg_path.name}")


def render_plots(tables: RunTables, directory: Path) -> Tuple[List[Plot], List[str]]:
    """Runs every builder; returns the saved plots and the builders' notes."""
    import matplotlib

    plots, notes = [], []
    with matplotlib.rc_context({"svg.hashsalt": "robustbench-lift"}):
        for builder in PLOT_BUILDERS:
            outcome = builder(tables)
            plots += [save_figure(spec, directory) for spec in outcome.figures]
            if outcome.note:
                notes.append(outcome.note)
    return plots, notes


# ------------------------------------------------------------------ metadata sections


def _display(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else str(value)


def key_value_rows(mapping: Any) -> List[Tuple[str, str]]:
    """(key, text) pairs of a mapping, sorted by key; empty for anything else."""
    if not isinstance(mapping, dict):
        return []
    return [(str(key), _display(value)) for key, value in sorted(mapping.items(), key=lambda item: str(item[0]))]


def timing_rows(timings: Any) -> List[Tuple[str, str]]:
    """(step, seconds) for preparation, evaluation and the total."""
    if not isinstance(timings, dict):
        return []
    rows = [(f"prepare {suite}", _display(seconds)) for suite, seconds in (timings.get("prepare") or {}).items()]
    rows += [(f"evaluate {step}", _display(seconds)) for step, seconds in (timings.get("evaluate") or {}).items()]
    if "total_seconds" in timings:
        rows.append(("total", _display(timings["total_seconds"])))
    return rows


def model_rows(record: Dict[str, Any]) -> List[Dict[str, str]]:
    """The run's model metadata, one row per model."""
    models = record.get("models") or {}
    if not isinstance(models, dict):
        return []
    keys = ["architecture", "pooling", "pooling_options", "dataset", "clean_test_accuracy", "epochs", "seed"]
    return [{"model": str(name), **{key: _display((metadata or {}).get(key)) for key in keys}} for name, metadata in models.items()]


# ------------------------------------------------------------------ rendering


@lru_cache(maxsize=1)
def template_environment() -> Any:
    """The Jinja2 environment of the report templates (autoescaping always on)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(loader=FileSystemLoader(str(TEMPLATE_DIRECTORY)), autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def static_text(name: str) -> str:
    """A static part of the templates (CSS or JS, kept as .html so packaging ships it)."""
    return (TEMPLATE_DIRECTORY / name).read_text(encoding="utf-8")


def _script_hash(script: str) -> str:
    # The page's Content-Security-Policy allows only this exact inline script, so markup
    # that slipped through escaping still could not run code.
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def report_context(tables: RunTables, plots: List[Plot], notes: List[str]) -> Dict[str, Any]:
    """Everything the report template shows."""
    record = tables.record
    columns = leaderboard_columns(tables.summary)
    script = static_text("_sortable_script.html")
    heatmap_plot = next((plot for plot in plots if plot.name == "corruption_heatmap"), None)
    leaderboard = leaderboard_rows(tables, columns)
    return {
        "run_name": str(record.get("run_name", tables.directory.name)),
        "sample_size": _display(record.get("sample_size")),
        "seed": _display(record.get("seed")),
        "dataset": _display((record.get("config") or {}).get("dataset")),
        "config_rows": key_value_rows(record.get("config")),
        "version_rows": key_value_rows(record.get("versions")),
        "machine_rows": key_value_rows(record.get("machine")),
        "timing_rows": timing_rows(record.get("timings")),
        "model_rows": model_rows(record),
        "columns": columns,
        "leaderboard": leaderboard,
        "references": sorted({row["reference"] for row in leaderboard if row["reference"]}),
        "heatmap": heatmap_context(tables),
        "heatmap_plot": heatmap_plot,
        "plots": [plot for plot in plots if plot.name != "corruption_heatmap"],
        "notes": notes,
        "failed": failed_rows(tables),
        "warnings": adversarial_warnings(tables),
        "files": [name for name in ("results.csv", "summary.csv", "run.json") if (tables.directory / name).is_file()],
        "style": static_text("_style.html"),
        "script": script,
        "script_hash": _script_hash(script),
    }


def write_report(run_directory: str | Path) -> Path:
    """Writes ``<run_directory>/index.html`` (plots under ``plots/``); returns its path.

    Raises UserError when the folder holds no finished run.
    """
    tables = load_run(run_directory)
    plots, notes = render_plots(tables, tables.directory / PLOT_DIRECTORY)
    html = template_environment().get_template("report.html").render(**report_context(tables, plots, notes))
    path = tables.directory / REPORT_FILE
    path.write_text(html, encoding="utf-8")
    log.info("wrote %s", path)
    return path
