"""The report's segmentation section: the prediction grid the run saved as PNGs and the
segmentation plots (a per-corruption mIoU heatmap and mIoU versus severity); the
across-seed table is the report's shared one (pooling_summary.csv). Reads the run's files
only (never torch).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from robustbench_lift.reporting.plots import FigureSpec, PlotOutcome, _figure, model_colors, plain_label, plot_builder
from robustbench_lift.reporting.tables import RunTables

__all__ = ["SEGMENTATION_SUITE", "segmentation_context"]

SEGMENTATION_SUITE = "segmentation"


def _corruption_rows(tables: RunTables) -> pd.DataFrame:
    rows = tables.rows(SEGMENTATION_SUITE)
    if rows.empty or "group" not in rows.columns:
        return rows.iloc[0:0]
    return rows[rows["group"] == "corruption"]


def _grid(tables: RunTables) -> dict[str, Any] | None:
    manifest_name = tables.record.get("segmentation_grid")
    if not manifest_name or not (tables.directory / str(manifest_name)).is_file():
        return None
    manifest = json.loads((tables.directory / str(manifest_name)).read_text())
    return {"condition": manifest.get("condition"), "images": manifest.get("images", []), "models": tables.models}


def segmentation_context(tables: RunTables) -> dict[str, Any] | None:
    """What the template's segmentation section shows, or None for a run without segmentation rows."""
    if tables.rows(SEGMENTATION_SUITE).empty:
        return None
    return {"grid": _grid(tables)}


@plot_builder
def segmentation_heatmap(tables: RunTables) -> PlotOutcome:
    """mIoU per model x corruption (mean over severities), one cell each."""
    rows = _corruption_rows(tables)
    if rows.empty:
        return PlotOutcome()
    table = rows.pivot_table(index="model", columns="family", values="miou", aggfunc="mean", sort=False)
    table = table.reindex([model for model in tables.models if model in table.index])
    figure, axes_grid = _figure(1, 1, (0.55 * table.shape[1] + 3.5, 0.4 * table.shape[0] + 1.8))
    axes = axes_grid[0][0]
    image = axes.imshow(100 * table.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(
        range(table.shape[1]), [plain_label(name) for name in table.columns], rotation=60, ha="right", fontsize=7
    )
    axes.set_yticks(range(table.shape[0]), [plain_label(name) for name in table.index], fontsize=7)
    for (row, column), value in np.ndenumerate(table.to_numpy(dtype=float)):
        if math.isfinite(value):
            axes.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=6, color="white")
    figure.colorbar(image, ax=axes, label="mIoU (%)")
    figure.tight_layout()
    caption = "mIoU (%) per model and corruption, averaged over the run's severities; the label maps are not corrupted."
    return PlotOutcome([FigureSpec("segmentation_heatmap", "Segmentation: mIoU per corruption", caption, figure)])


@plot_builder
def segmentation_severity_curves(tables: RunTables) -> PlotOutcome:
    """mIoU versus severity (mean over corruptions), one line per model; clean at severity 0."""
    rows = _corruption_rows(tables)
    if rows.empty:
        return PlotOutcome()
    clean = tables.rows(SEGMENTATION_SUITE)
    clean = clean[clean["condition"] == "clean"].set_index("model")["miou"]
    colours = model_colors(tables.models)
    figure, axes_grid = _figure(1, 1, (5.5, 3.6))
    axes = axes_grid[0][0]
    for model in tables.models:
        part = rows[rows["model"] == model].groupby("level")["miou"].mean()
        if part.empty:
            continue
        levels = [0.0, *part.index.astype(float)]
        values = [float(clean.get(model, math.nan)), *part.to_numpy(dtype=float)]
        axes.plot(levels, 100 * np.asarray(values), marker="o", color=colours[model], label=plain_label(model))
    axes.set_xlabel("severity (0 = clean)", fontsize=8)
    axes.set_ylabel("mIoU (%)", fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=6)
    figure.tight_layout()
    caption = "Mean mIoU over the run's corruptions at each severity, clean mIoU at 0."
    return PlotOutcome([FigureSpec("segmentation_severity", "Segmentation: mIoU versus severity", caption, figure)])
