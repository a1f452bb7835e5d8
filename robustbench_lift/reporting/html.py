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
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_lift.reporting.plots import (
    CE_COLOR_RANGE,
    ERROR_COLOR_RANGE,
    NOISE_COLOR,
    PLOT_DIRECTORY,
    Plot,
    heatmap_color,
    heatmap_legend_stops,
    render_plots,
)
from robustbench_lift.reporting.segmentation import segmentation_context  # also registers its plots
from robustbench_lift.reporting.tables import (
    EXTRA_CORRUPTIONS,
    RELATIVE_MCE_MAX_INTERVAL_WIDTH,
    RunTables,
    adversarial_warnings,
    attack_protocols,
    corruption_errors,
    failed_rows,
    leaderboard_columns,
    leaderboard_rows,
    load_run,
    seed_section,
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


def heatmap_context(tables: RunTables) -> dict[str, Any] | None:
    """Rows, columns and legend of the CE heatmap table, or None without corruption results.

    Colours sit on the fixed scale of :func:`robustbench_lift.reporting.plots.heatmap_color`
    (the same in every report); a cell whose 95 % interval contains 100 is greyed out
    (``noise``) and its reference's own cells are marked ``reference``.
    """
    errors = corruption_errors(tables)
    table = errors.values
    if table.empty or not len(table.columns):
        return None
    rows = []
    for model in table.index:
        cells = []
        for corruption in table.columns:
            value = float(table.loc[model, corruption])
            low, high = float(errors.low.loc[model, corruption]), float(errors.high.loc[model, corruption])
            interval = (
                f"95 % interval [{100 * low:.1f}, {100 * high:.1f}]"
                if np.isfinite(low) and np.isfinite(high)
                else "no interval"
            )
            cell = {
                "text": "—",
                "sort": "",
                "style": "",
                "failed": False,
                "noise": False,
                "reference": False,
                "title": "",
            }
            if (model, corruption) in errors.failed:
                cell |= {"text": "failed", "failed": True, "title": "a severity failed (model returned NaN or inf)"}
            elif np.isfinite(value):
                cell |= {"text": f"{100 * value:.1f}", "sort": f"{value:.10g}"}
                if bool(errors.reference.loc[model, corruption]):
                    cell |= {"reference": True, "title": "the reference model (100 by definition)"}
                elif bool(errors.within_noise.loc[model, corruption]):
                    cell |= {"noise": True, "title": f"{interval} contains 100: within noise"}
                else:
                    background, foreground = heatmap_color(100 * value, errors.measure)
                    cell |= {"style": f"background:{background};color:{foreground}", "title": interval}
            cells.append(cell)
        rows.append({"model": model, "cells": cells})
    columns = [{"name": name, "extra": name in EXTRA_CORRUPTIONS} for name in table.columns]
    low, high = CE_COLOR_RANGE if errors.measure == "CE" else ERROR_COLOR_RANGE
    stops = heatmap_legend_stops(errors.measure)
    gradient = ", ".join(
        f"{color} {100 * position / (len(stops) - 1):.0f}%" for position, (_, color) in enumerate(stops)
    )
    legend = {
        "low": f"{low:.0f}",
        "high": f"{high:.0f}",
        "labels": [f"{value:.0f}" for value, _ in stops],
        "style": f"background:linear-gradient(to right, {gradient})",
        "noise_color": NOISE_COLOR,
    }
    return {"measure": errors.measure, "columns": columns, "rows": rows, "legend": legend}


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
    return [
        {"model": str(name), **{key: _display((metadata or {}).get(key)) for key in keys}}
        for name, metadata in models.items()
    ]


@lru_cache(maxsize=1)
def template_environment() -> Any:
    """The Jinja2 environment of the report templates (autoescaping always on)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIRECTORY)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


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
        "leaderboard_notes": [
            {"model": row["model"], "note": cell["note"]}
            for row in leaderboard
            for cell in row["cells"]
            if cell.get("note")
        ],
        "relative_mce_max_points": f"{50 * RELATIVE_MCE_MAX_INTERVAL_WIDTH:.0f}",
        "seeds": seed_section(tables),
        "heatmap": heatmap_context(tables),
        "segmentation": segmentation_context(tables),
        "heatmap_plot": heatmap_plot,
        "plots": [plot for plot in plots if plot.name != "corruption_heatmap"],
        "notes": notes,
        "failed": failed_rows(tables),
        "warnings": adversarial_warnings(tables),
        "protocols": attack_protocols(record),
        "files": [
            name
            for name in ("results.csv", "summary.csv", "pooling_summary.csv", "run.json")
            if (tables.directory / name).is_file()
        ],
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
