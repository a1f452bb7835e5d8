"""The HTML report of a finished run: one self-contained ``<run>/index.html``.

The report reads the stored tables (:mod:`robustbench_lift.reporting.tables`) and never
evaluates a model. Plots (:mod:`robustbench_lift.reporting.plots`) are saved under
``<run>/plots/`` and embedded in the page as base64 PNG, so the page works offline with
no external resource. Rendering uses Jinja2 with autoescaping on: every name from the
tables appears as text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_lift.reporting.plots import PLOT_DIRECTORY, Plot, render_plots
from robustbench_lift.reporting.tables import (
    EXTRA_CORRUPTIONS,
    RunTables,
    adversarial_warnings,
    corruption_error_table,
    failed_corruption_cells,
    failed_rows,
    leaderboard_columns,
    leaderboard_rows,
    load_run,
)

__all__ = [
    "REPORT_FILE",
    "TEMPLATE_DIRECTORY",
    "heatmap_context",
    "report_context",
    "static_text",
    "template_environment",
    "write_report",
]

log = logging.getLogger(__name__)

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"
REPORT_FILE = "index.html"


def _colour_scale(values: np.ndarray, measure: str) -> Callable[[float], tuple[str, str]]:
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

    def colour(value: float) -> tuple[str, str]:
        red, green, blue, _ = palette(float(norm(value)))
        luminance = 0.299 * red + 0.587 * green + 0.114 * blue
        return to_hex((red, green, blue)), "#000000" if luminance > 0.5 else "#ffffff"

    return colour


def heatmap_context(tables: RunTables) -> dict[str, Any] | None:
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


def _display(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else str(value)


def key_value_rows(mapping: Any) -> list[tuple[str, str]]:
    """(key, text) pairs of a mapping, sorted by key; empty for anything else."""
    if not isinstance(mapping, dict):
        return []
    return [(str(key), _display(value)) for key, value in sorted(mapping.items(), key=lambda item: str(item[0]))]


def timing_rows(timings: Any) -> list[tuple[str, str]]:
    """(step, seconds) for preparation, evaluation and the total."""
    if not isinstance(timings, dict):
        return []
    rows = [(f"prepare {suite}", _display(seconds)) for suite, seconds in (timings.get("prepare") or {}).items()]
    rows += [(f"evaluate {step}", _display(seconds)) for step, seconds in (timings.get("evaluate") or {}).items()]
    if "total_seconds" in timings:
        rows.append(("total", _display(timings["total_seconds"])))
    return rows


def model_rows(record: dict[str, Any]) -> list[dict[str, str]]:
    """The run's model metadata, one row per model."""
    models = record.get("models") or {}
    if not isinstance(models, dict):
        return []
    keys = ["architecture", "pooling", "pooling_options", "dataset", "clean_test_accuracy", "epochs", "seed"]
    return [{"model": str(name), **{key: _display((metadata or {}).get(key)) for key in keys}} for name, metadata in models.items()]


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


def report_context(tables: RunTables, plots: list[Plot], notes: list[str]) -> dict[str, Any]:
    """Everything the report template shows."""
    record = tables.record
    columns = leaderboard_columns(tables.summary, tables.record)
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
