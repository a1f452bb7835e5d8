"""The one-call Python API: ``evaluate(models, **options)`` runs a benchmark and returns :class:`Results`.

``evaluate`` takes models as objects or spec strings, runs the suites through
:func:`~robustbench_lift.run.runner.run_benchmark` (resumable, one folder per run name),
writes the HTML report and prints a short leaderboard; :class:`Results` reads a finished
run folder back (the same tables as ``summary.csv`` and ``results.csv``).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_lift.errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from robustbench_lift.evaluation.suites import ModelEntry

__all__ = ["API_OPTIONS", "Results", "evaluate"]

log = logging.getLogger(__name__)

#: Options of :func:`evaluate` that are not run-config keys, with what they do.
API_OPTIONS: dict[str, str] = {
    "quick": "start from the quick preset (200 images, severities 1, 3, 5; run name 'quick')",
    "report": "write index.html and plots into the run folder (default true)",
    "overwrite": "replace a finished run of another config under the same run name (default false)",
    "show": "print the leaderboard when the run ends (default true)",
}
#: The run name of ``evaluate`` without ``run_name`` (and without ``quick``).
DEFAULT_RUN_NAME = "evaluate"
IN_MEMORY = "in-memory"


class Results:
    """A finished run: its tables, its folder and its report.

    Args:
        path: the run folder (``<output_dir>/<run_name>``).

    Attributes:
        path: the run folder.
        summary: one row per model (``summary.csv``): clean error, mCE, mFR, robust
            accuracy... with ``_low`` / ``_high`` interval columns.
        results: one row per model x suite x condition (``results.csv``).
        record: ``run.json``: config, models and their fingerprints, versions, timings.
    """

    def __init__(self, path: str | Path) -> None:
        from robustbench_lift.results import read_run

        self.path = Path(path)
        self.results, self.summary, self.record = read_run(self.path)
        for table in (self.results, self.summary):
            if "model" in table.columns:  # names are text even when they look like numbers
                table["model"] = table["model"].astype(str)

    @property
    def report_path(self) -> Path | None:
        """The run's ``index.html``; None when the run was made without a report."""
        path = self.path / "index.html"
        return path if path.is_file() else None

    @property
    def models(self) -> list[str]:
        """Model names, in the order of the summary."""
        return list(self.summary["model"]) if "model" in self.summary.columns else []

    def leaderboard(self) -> str:
        """The short answer as text: per model clean error, mCE, mFR and robust accuracy, with intervals."""
        from robustbench_lift.reporting.tables import leaderboard_text

        return leaderboard_text(self.path)

    def __repr__(self) -> str:
        report = self.report_path or "none (report=False)"
        return f"Results({str(self.path)!r}: {len(self.models)} models, {len(self.results)} result rows, report {report})\n{self.leaderboard()}"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"model names must be non-empty strings, got {name!r}")
    if any(unicodedata.category(character).startswith("C") for character in name):
        raise UserError(f"model name {name!r} contains a control character")
    return name


def _as_named(models: Any) -> list[tuple[str, Any]]:
    """``models`` as (name, module or spec) pairs; names are None where a spec names itself."""
    from torch import nn

    if isinstance(models, nn.Module):
        return [("model", models)]
    if isinstance(models, str):
        return [(None, models)]  # type: ignore[list-item]
    if isinstance(models, Mapping):
        pairs = [(_check_name(name), value) for name, value in models.items()]
    elif isinstance(models, Sequence) and all(isinstance(value, str) for value in models):
        pairs = [(None, value) for value in models]  # type: ignore[misc]
    else:
        raise UserError(
            f"models must be a dict {{name: nn.Module or spec}}, an nn.Module or spec strings, got {type(models).__name__}"
        )
    if not pairs:
        raise UserError("models is empty; pass at least one model")
    for name, value in pairs:
        if not isinstance(value, (nn.Module, str)):
            raise UserError(f"model {name!r} must be an nn.Module or a spec string, got {type(value).__name__}")
    return pairs


def _entries(models: Any) -> tuple[list[ModelEntry], list[str]]:
    """Loaded model entries and how the run config records each (``name=spec``)."""
    from torch import nn

    from robustbench_lift.evaluation.suites import ModelEntry
    from robustbench_lift.models._factory import resolve_model

    entries: list[ModelEntry] = []
    described: list[str] = []
    for name, value in _as_named(models):
        if isinstance(value, nn.Module):
            kind = type(value)
            architecture = f"{kind.__module__}.{kind.__qualname__}"
            # Stable metadata: the store fingerprints weights and metadata together.
            entries.append(
                ModelEntry(
                    name,
                    value,
                    {"architecture": architecture, "pooling": "unknown", "library": IN_MEMORY, "source": None},
                )
            )
            described.append(f"{name}=<{IN_MEMORY} {architecture}>")
            continue
        display, model, metadata = resolve_model(value)
        entries.append(ModelEntry(name or display, model, metadata))
        described.append(value if name in (None, display) else f"{name}={value}")
    return entries, described


def evaluate(models: Any, /, **options: Any) -> Results:
    """Evaluates models on the benchmark's suites in one call.

    Args:
        models: ``{name: model}`` where a model is an ``nn.Module`` or a spec string (zoo
            name, checkpoint path, pretrained or ``python:`` spec); or one ``nn.Module``
            (named ``model``); or spec strings (named as the command line names them).
            A module takes float images N x C x H x W in [0, 1] at the data set's size.
        **options: run-config keys (``dataset``, ``suites``, ``sample_size``, ``seed``,
            ``output_dir``, ``run_name``, ``corruptions``, ``severities``, ``attacks``...;
            README "Configuration"), plus :data:`API_OPTIONS` (``quick``, ``report``,
            ``overwrite``, ``show``).

    Returns:
        The finished run's :class:`Results` (folder ``<output_dir>/<run_name>``, default
        ``reports/evaluate``). Rerunning with the same options resumes and reuses every
        finished cell whose model weights are unchanged.

    Raises:
        UserError: an unknown option (the message lists the known ones), a bad value or
            model, or a finished run of another config under the same name (pass
            ``overwrite=True`` or another ``run_name``).
    """
    from robustbench_lift.run.config import RunConfig, config_from_mapping, general_keys, plugin_options

    known = general_keys() | set(plugin_options()) | set(API_OPTIONS)
    for key in options:
        if key == "models":
            raise UserError("pass the models as the first argument of evaluate(), not as models=")
        if key not in known:
            raise UserError(f"unknown option {key!r} of evaluate(); known: {', '.join(sorted(known - {'models'}))}")
    flags = {key: options.pop(key) for key in list(options) if key in API_OPTIONS}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise UserError(f"evaluate() option {key} must be True or False, got {value!r}")
    base = RunConfig.quick() if flags.get("quick") else RunConfig(run_name=DEFAULT_RUN_NAME)
    config = config_from_mapping(options, base)  # bad options fail before any model loads
    entries, described = _entries(models)
    config = config.replace(models=described)
    return _run(
        config,
        entries,
        report=flags.get("report", True),
        overwrite=flags.get("overwrite", False),
        show=flags.get("show", True),
    )


def _run(config: Any, entries: list[ModelEntry], *, report: bool, overwrite: bool, show: bool) -> Results:
    from robustbench_lift.run.runner import run_benchmark

    # The executor moves models to the device and to eval mode and back to the CPU; give
    # the caller's modules back as they were.
    states = [
        (entry.model, entry.model.training, _device_of(entry.model))
        for entry in entries
        if entry.metadata.get("library") == IN_MEMORY
    ]
    try:
        directory = run_benchmark(config, models=entries, overwrite=overwrite)
    finally:
        for module, training, device in states:
            module.train(training)
            if device is not None:
                module.to(device)
    if report:
        from robustbench_lift.reporting.html import write_report

        write_report(directory)
    results = Results(directory)
    if not report and results.report_path is not None and results.record.get("cells", {}).get("computed"):
        log.warning(
            "%s is from before this run's new cells; rebuild it with robustbench_lift.write_report(%r)",
            results.report_path,
            str(directory),
        )
    if show:
        print(results.leaderboard())
        if results.report_path is not None:
            print(f"report: {results.report_path}")
    return results


def _device_of(module: nn.Module) -> Any:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return None
