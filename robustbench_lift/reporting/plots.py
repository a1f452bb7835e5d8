"""The report's plots: small builder functions, each turning a run's tables into figures.

Builders are listed in :data:`PLOT_BUILDERS` (register one with :func:`plot_builder` to
add a plot). Figures are drawn with matplotlib's object API (Agg), saved as PNG and SVG
and embedded by :mod:`robustbench_lift.reporting.html`. The one computation on images is
corrupting a single test image for display.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import corruptions
from corruptions.registry import CORRUPTION_FAMILIES
from robustbench_lift.errors import CorruptionError, UserError
from robustbench_lift.reporting.tables import (
    CORRUPTION_ORDER,
    EXTRA_CORRUPTIONS,
    RunTables,
    as_float,
    corruption_errors,
    corruption_names_in_run,
)

__all__ = [
    "CE_COLOR_RANGE",
    "ERROR_COLOR_RANGE",
    "GRID_SEVERITIES",
    "HEATMAP_COLORMAP",
    "NOISE_COLOR",
    "PLOT_BUILDERS",
    "PLOT_DIRECTORY",
    "FigureSpec",
    "Plot",
    "PlotOutcome",
    "heatmap_color",
    "heatmap_legend_stops",
    "heatmap_norm",
    "model_colors",
    "plain_label",
    "plot_builder",
    "render_plots",
    "save_figure",
]

PLOT_DIRECTORY = "plots"
GRID_SEVERITIES = corruptions.SEVERITIES


def model_colors(models: Sequence[str]) -> dict[str, Any]:
    """One stable color per model, shared by every plot."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {model: palette(position % palette.N) for position, model in enumerate(models)}


def plain_label(text: Any) -> str:
    """Text for matplotlib that is never parsed as mathtext."""
    return str(text).replace("$", r"\$")


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

    figures: list[FigureSpec] = field(default_factory=list)
    note: str | None = None


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
PLOT_BUILDERS: list[PlotBuilder] = []


def plot_builder(function: PlotBuilder) -> PlotBuilder:
    """Registers a plot builder; the report draws builders in registration order."""
    PLOT_BUILDERS.append(function)
    return function


def _figure(rows: int, columns: int, size: tuple[float, float], **options: Any) -> tuple[Any, Any]:
    """A new (figure, axes grid). matplotlib's object API renders with Agg and leaves the
    global backend and figure list alone, so a user's interactive session is unaffected."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    return figure, figure.subplots(rows, columns, squeeze=False, **options)


def _legend_below(figure: Any, axes: Any) -> None:
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, fontsize=8)


#: The CE heatmap's colour scale, the same in every report: CE in percent of the
#: reference, diverging around 100 and clipped to this range (the ends mean "this much or
#: more"). Without a reference the heatmap shows mean error on a fixed 0..100 % scale.
CE_COLOR_RANGE = (50.0, 150.0)
ERROR_COLOR_RANGE = (0.0, 100.0)
HEATMAP_COLORMAP = "RdYlGn_r"
#: Cells whose interval contains 100 (not distinguishable from the reference).
NOISE_COLOR = "#d9d9d9"


def heatmap_norm(measure: str) -> Any:
    """The fixed colour normalisation of the heatmap for ``measure`` (values in percent)."""
    from matplotlib.colors import Normalize, TwoSlopeNorm

    if measure == "CE":
        return TwoSlopeNorm(vmin=CE_COLOR_RANGE[0], vcenter=100.0, vmax=CE_COLOR_RANGE[1])
    return Normalize(*ERROR_COLOR_RANGE)


def heatmap_color(percent: float, measure: str) -> tuple[str, str]:
    """(background, text) colours of a heatmap cell holding ``percent``, on the fixed scale."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    norm = heatmap_norm(measure)
    position = float(np.clip(norm(percent), 0.0, 1.0))
    red, green, blue, _ = colormaps[HEATMAP_COLORMAP](position)
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    return to_hex((red, green, blue)), "#000000" if luminance > 0.5 else "#ffffff"


def heatmap_legend_stops(measure: str, count: int = 5) -> list[tuple[float, str]]:
    """(percent, colour) pairs along the fixed scale, for a legend."""
    low, high = CE_COLOR_RANGE if measure == "CE" else ERROR_COLOR_RANGE
    return [(float(value), heatmap_color(float(value), measure)[0]) for value in np.linspace(low, high, count)]


@plot_builder
def corruption_heatmap(tables: RunTables) -> PlotOutcome:
    """CE (or mean error) per corruption and model, as an image for the plots folder."""
    from matplotlib.patches import Patch, Rectangle

    errors = corruption_errors(tables)
    table = errors.values
    if table.empty or not len(table.columns):
        return PlotOutcome()
    values = 100 * table.to_numpy(dtype=float)
    low, high = CE_COLOR_RANGE if errors.measure == "CE" else ERROR_COLOR_RANGE
    figure, axes_grid = _figure(1, 1, (max(6.0, 0.45 * len(table.columns) + 3.5), 0.45 * len(table.index) + 2.4))
    axes = axes_grid[0][0]
    image = axes.imshow(
        np.ma.masked_invalid(np.clip(values, low, high)),
        cmap=HEATMAP_COLORMAP,
        norm=heatmap_norm(errors.measure),
        aspect="auto",
    )
    axes.set_xticks(
        range(len(table.columns)), [plain_label(name) for name in table.columns], rotation=60, ha="right", fontsize=8
    )
    axes.set_yticks(range(len(table.index)), [plain_label(name) for name in table.index], fontsize=8)
    noise = errors.within_noise.to_numpy(dtype=bool) | errors.reference.to_numpy(dtype=bool)
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            finite = np.isfinite(values[row, column])
            if finite and noise[row, column]:
                axes.add_patch(
                    Rectangle(
                        (column - 0.5, row - 0.5),
                        1,
                        1,
                        facecolor=NOISE_COLOR,
                        edgecolor="#9a9a9a",
                        hatch="///",
                        linewidth=0,
                    )
                )
            color = (
                "#000000" if not finite or noise[row, column] else heatmap_color(values[row, column], errors.measure)[1]
            )
            axes.text(
                column,
                row,
                f"{values[row, column]:.0f}" if finite else "×",
                ha="center",
                va="center",
                fontsize=7,
                color=color,
            )
    bar = figure.colorbar(image, ax=axes, extend="both" if errors.measure == "CE" else "neither")
    bar.set_ticks(np.linspace(low, high, 5))
    bar.set_label(f"{errors.measure} (%), fixed scale {low:.0f}..{high:.0f}", fontsize=8)
    axes.set_title(f"{errors.measure} per corruption (%)", fontsize=10)
    legend_height = 0.0
    if errors.measure == "CE":
        label = "hatched grey: 95 % interval contains 100 (within noise), or the reference itself"
        figure.legend(
            handles=[Patch(facecolor=NOISE_COLOR, edgecolor="#9a9a9a", hatch="///", label=label)],
            loc="lower left",
            fontsize=8,
            frameon=False,
        )
        legend_height = 0.35 / figure.get_figheight()
    figure.tight_layout(rect=(0, legend_height, 1, 1))
    if errors.measure == "CE":
        caption = (
            f"CE = Σ_s E(model) / Σ_s E(reference) per corruption; 100 = reference, lower is better. Colours on a fixed scale, "
            f"green {low:.0f} to red {high:.0f} (clipped), the same in every report. Hatched grey: the 95 % interval (from the per-severity "
            "Wilson intervals) contains 100, so the difference is within noise; the reference's own row is hatched too. × = failed or not available."
        )
    else:
        caption = f"Mean error over severities (no reference model in this run), fixed scale {low:.0f}..{high:.0f} %."
    return PlotOutcome(
        [FigureSpec("corruption_heatmap", f"{errors.measure} per corruption and model", caption, figure)]
    )


@plot_builder
def error_versus_severity(tables: RunTables) -> PlotOutcome:
    """Error versus severity, one figure per corruption family, one line per model."""
    rows = tables.rows("corruption")
    if rows.empty:
        return PlotOutcome()
    colours = model_colors(tables.models)
    clean = (
        tables.rows("clean").set_index("model")["error"] if not tables.rows("clean").empty else pd.Series(dtype=float)
    )
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
                axes.plot(
                    levels, 100 * errors, marker="o", markersize=3, color=colours[model], label=plain_label(model)
                )
                axes.fill_between(levels, 100 * lows, 100 * highs, color=colours[model], alpha=0.12, linewidth=0)
            axes.set_title(plain_label(corruption + (" *" if corruption in EXTRA_CORRUPTIONS else "")), fontsize=9)
            axes.set_xlabel("severity (0 = clean)", fontsize=8)
            axes.set_xticks(range(0, 6))
            axes.grid(alpha=0.3)
        # After all panels are drawn: the shared axis then keeps the autoscaled top.
        axes_row[0][0].set_ylim(bottom=0)
        axes_row[0][0].set_ylabel("top-1 error (%)", fontsize=8)
        _legend_below(figure, axes_row[0][0])
        figure.tight_layout(rect=(0, 0.12, 1, 1))
        caption = f"Top-1 error per severity ({family} corruptions; * = held-out extra), shaded: 95 % Wilson interval; severity 0 is the clean error."
        figures.append(FigureSpec(f"severity_{family}", f"Error versus severity: {family}", caption, figure))
    return PlotOutcome(figures)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


@plot_builder
def flip_probability_bars(tables: RunTables) -> PlotOutcome:
    """Flip probability (and top-5 distance) per perturbation: one row per perturbation,
    one marker per model (dodged so that equal values stay visible), axes from 0."""
    from corruptions.perturbations import MAIN_PERTURBATIONS

    rows = tables.rows("perturbation")
    if rows.empty or "flip_probability" not in rows.columns:
        return PlotOutcome()
    colours = model_colors(tables.models)
    perturbations = list(dict.fromkeys(rows["family"].astype(str)))
    perturbations = [name for name in perturbations if name in MAIN_PERTURBATIONS] + [
        name for name in perturbations if name not in MAIN_PERTURBATIONS
    ]
    metrics = [("flip_probability", "flip probability (%)", 100)] + (
        [("top5_distance", "top-5 distance", 1)]
        if "top5_distance" in rows.columns and rows["top5_distance"].notna().any()
        else []
    )
    models = [model for model in tables.models if (rows["model"] == model).any()]
    height = 0.32 * len(perturbations) + 0.12 * len(perturbations) * max(0, len(models) - 4) / 4 + 1.8
    figure, axes_row = _figure(1, len(metrics), (4.6 * len(metrics) + 1.6, height), sharey=True)
    positions = np.arange(len(perturbations))[::-1]  # first perturbation at the top
    spread = min(0.7, 0.12 * max(1, len(models) - 1))
    for axes, (metric, label, scale) in zip(axes_row[0], metrics):
        for offset, model in enumerate(models):
            part = rows[rows["model"] == model].set_index("family")
            values = np.array(
                [scale * as_float(part.loc[name, metric]) if name in part.index else math.nan for name in perturbations]
            )
            dodge = (offset / max(1, len(models) - 1) - 0.5) * spread if len(models) > 1 else 0.0
            axes.scatter(
                values,
                positions + dodge,
                s=22,
                marker=MARKERS[offset % len(MARKERS)],
                color=colours[model],
                label=plain_label(model),
                zorder=3,
            )
        for position in positions[::2]:
            axes.axhspan(position - 0.5, position + 0.5, color="#f2f2f2", zorder=0, linewidth=0)
        axes.set_xlim(left=0)
        axes.set_xlabel(label, fontsize=9)
        axes.tick_params(labelsize=9)
        axes.grid(axis="x", alpha=0.3)
    labels = [
        plain_label(name.replace("_", " ") + (" *" if name not in MAIN_PERTURBATIONS else "")) for name in perturbations
    ]
    axes_row[0][0].set_yticks(positions, labels, fontsize=9)
    axes_row[0][0].set_ylim(-0.6, len(perturbations) - 0.4)
    handles, names = axes_row[0][0].get_legend_handles_labels()
    columns = min(len(names), 4)
    figure.legend(handles, names, loc="lower center", ncol=columns, frameon=False, fontsize=9)
    legend_rows = math.ceil(len(names) / max(1, columns))
    figure.tight_layout(rect=(0, min(0.35, (0.3 * legend_rows + 0.1) / height), 1, 1))
    caption = "ImageNet-P-style flip probability (and top-5 distance) per perturbation sequence, lower is more stable; one marker per model, * = extra perturbation (not in mFR)."
    return PlotOutcome([FigureSpec("flip_probability", "Flip probability per perturbation", caption, figure)])


@plot_builder
def shift_consistency_bars(tables: RunTables) -> PlotOutcome:
    """Shift consistency per model with its 95 % interval."""
    if "shift_consistency" not in tables.summary.columns or not tables.summary["shift_consistency"].notna().any():
        return PlotOutcome()
    colours = model_colors(tables.models)
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
    axes.set_ylim(0, 100)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return PlotOutcome(
        [
            FigureSpec(
                "shift_consistency",
                "Shift consistency",
                "Share of images classified the same under two random shifts; bars: 95 % Wilson interval.",
                figure,
            )
        ]
    )


@plot_builder
def robust_accuracy_versus_epsilon(tables: RunTables) -> PlotOutcome:
    """Robust accuracy versus epsilon, one panel per attack, one line per model."""
    rows = tables.rows("adversarial")
    if rows.empty or "robust_accuracy" not in rows.columns:
        return PlotOutcome()
    colours = model_colors(tables.models)
    attacks = list(dict.fromkeys(rows["family"].astype(str)))
    figure, axes_row = _figure(1, len(attacks), (3.0 * len(attacks) + 0.5, 3.3), sharey=True)
    for axes, attack in zip(axes_row[0], attacks):
        norms = (
            rows.loc[rows["family"] == attack, "norm"].dropna().astype(str)
            if "norm" in rows.columns
            else pd.Series(dtype=str)
        )
        norm = norms.iloc[0] if len(norms) else ""
        for model in tables.models:
            part = rows[(rows["model"] == model) & (rows["family"] == attack)].sort_values("level")
            if part.empty:
                continue
            # L-inf budgets read best in pixel steps (8/255 -> 8).
            levels = part["level"].to_numpy(float) * (255 if norm == "linf" else 1)
            axes.plot(
                levels,
                100 * part["robust_accuracy"].to_numpy(float),
                marker="o",
                markersize=3,
                color=colours[model],
                label=plain_label(model),
            )
            if {"robust_accuracy_low", "robust_accuracy_high"} <= set(part.columns):
                axes.fill_between(
                    levels,
                    100 * part["robust_accuracy_low"].to_numpy(float),
                    100 * part["robust_accuracy_high"].to_numpy(float),
                    color=colours[model],
                    alpha=0.12,
                    linewidth=0,
                )
        axes.set_title(plain_label(tables.attack_label(attack)), fontsize=9)
        axes.set_xlabel({"linf": "epsilon (L∞, × 1/255)", "l2": "epsilon (L2)"}.get(norm, "epsilon"), fontsize=8)
        axes.grid(alpha=0.3)
    axes_row[0][0].set_ylim(0, 100)
    axes_row[0][0].set_ylabel("robust accuracy (%)", fontsize=8)
    _legend_below(figure, axes_row[0][0])
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    return PlotOutcome(
        [
            FigureSpec(
                "robust_accuracy",
                "Robust accuracy versus epsilon",
                "Accuracy under attack per perturbation budget; shaded: 95 % Wilson interval.",
                figure,
            )
        ]
    )


def example_image(config: dict[str, Any]) -> tuple[np.ndarray, int]:
    """The run's first sampled test image and its index in the split (which seeds corruptions)."""
    from robustbench_lift.data.base import sample_indices
    from robustbench_lift.data.datasets import load_dataset

    full = load_dataset(config["dataset"], config.get("split", "test"), config.get("data_dir"))
    indices = sample_indices(len(full), config.get("sample_size"), int(config.get("seed", 0)))
    # One image: an image folder decodes only that file, not the run's whole sample.
    return full.subset(indices[:1]).images[0], int(indices[0])


@plot_builder
def corruption_grid(tables: RunTables) -> PlotOutcome:
    """One test image under every corruption at severities 1..5 (display only)."""
    config = tables.record.get("config") or {}
    if not config.get("dataset"):
        return PlotOutcome(note="Corruption examples omitted: run.json records no data set.")
    names = corruption_names_in_run(tables) or corruptions.corruption_names("all")
    try:
        image, index = example_image(config)
        profile, seed = config.get("profile", "cifar"), int(config.get("seed", 0))
        grid = [
            [
                corruptions.corrupt_image(image, name, severity, profile=profile, seed=seed, index=index)
                for severity in GRID_SEVERITIES
            ]
            for name in names
        ]
    except (UserError, CorruptionError, OSError, ValueError, KeyError) as error:
        return PlotOutcome(
            note=f"Corruption examples omitted: the run's data is not available here ({' '.join(str(error).split())})."
        )
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
        axes_grid[0][column].set_title(
            plain_label(name.replace("_", " ")), fontsize=7, rotation=40, ha="left", loc="left"
        )
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
    return Plot(
        spec.name,
        spec.title,
        spec.caption,
        base64.b64encode(buffer.getvalue()).decode("ascii"),
        f"{PLOT_DIRECTORY}/{png_path.name}",
        f"{PLOT_DIRECTORY}/{svg_path.name}",
    )


def render_plots(tables: RunTables, directory: Path) -> tuple[list[Plot], list[str]]:
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
