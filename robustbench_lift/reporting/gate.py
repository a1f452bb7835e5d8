"""Regression gate: checks a finished run against a stored baseline under a policy.

A metric FAILS only when it is worse than the baseline by more than its tolerance AND by
more than ``z`` standard errors of the difference (``docs/gate.md``), so sampling noise alone never
fails a build. A metric the policy names but the run (or the baseline) lacks fails with a
message saying which. Bad input (missing or malformed baseline or policy, a folder without
a finished run) raises :class:`~robustbench_lift.errors.UserError`.

Exit codes for the command line: :data:`EXIT_PASSED` (0), :data:`EXIT_REGRESSION` (1),
:data:`EXIT_USAGE` (2, a UserError).

Policy (YAML; ``reports/policy.yaml`` is the documented default)::

    z: 1.96                 # noise threshold in standard errors of the difference
    models: all             # "all" (every model of the baseline) or a list of names
    metrics:                # summary.csv columns
      clean_error:
        direction: lower    # lower or higher is better (optional: each metric has its default)
        tolerance: 0.02     # absolute allowance, in the metric's unit (0.02 = 2 pp)
      mce:
        relative_tolerance: 0.05   # allowance as a share of the baseline value
      robust_accuracy_pgd_linf:
        tolerance: 0.02
        models: [small_cnn-lift]   # optional per-metric override of `models`

Baseline (CSV, one row per model x metric, human-diffable; see :func:`write_baseline`)::

    # robustbench-lift baseline: one row per model x metric; refresh with --update-baseline
    # run_name: quick
    # sample_size: 200
    # ...
    model,metric,value,low,high,n
    small_cnn-max,clean_error,0.105,0.0697075,0.15518,200
"""
from __future__ import annotations

import io
import math
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_lift._version import __version__
from robustbench_lift.errors import UserError
from robustbench_lift.reporting.comparison import (
    DEFAULT_Z,
    FIXED_METRICS,
    RECORD_COLUMNS,
    MetricSpec,
    difference_standard_error,
    format_change,
    format_value,
    markdown_cell,
    metric_spec,
    run_metric_records,
)
from robustbench_lift.utils.io import check_output_location

EXIT_PASSED = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2

DEFAULT_POLICY_FILE = Path("reports") / "policy.yaml"

# The built-in policy, used when no policy file is given and ./reports/policy.yaml does
# not exist; tests keep it identical to reports/policy.yaml.
DEFAULT_POLICY: dict[str, Any] = {
    "z": 1.96,
    "models": "all",
    "metrics": {
        "clean_error": {"direction": "lower", "tolerance": 0.02},
        "mce": {"direction": "lower", "tolerance": 0.05},
        "mfr": {"direction": "lower", "tolerance": 0.05},
        "shift_consistency": {"direction": "higher", "tolerance": 0.02},
        "robust_accuracy_pgd_linf": {"direction": "higher", "tolerance": 0.02},
    },
}

BASELINE_TITLE = "robustbench-lift baseline: one row per model x metric; refresh with --update-baseline"
_POLICY_KEYS = {"z", "models", "metrics"}
_METRIC_KEYS = {"direction", "tolerance", "relative_tolerance", "models"}


# ------------------------------------------------------------------ policy


@dataclass(frozen=True)
class MetricRule:
    """One metric of the policy: direction, allowance and the models it applies to."""

    metric: str
    direction: str
    tolerance: float = 0.0
    relative_tolerance: float = 0.0
    models: tuple[str, ...] | None = None  # None: every model of the baseline

    def allowance(self, baseline: float) -> float:
        """How much worse than ``baseline`` the metric may get before the tolerance is exceeded."""
        return max(self.tolerance, self.relative_tolerance * abs(baseline))


@dataclass(frozen=True)
class Policy:
    """What the gate checks (see the module docstring for the YAML form)."""

    rules: tuple[MetricRule, ...]
    z: float = DEFAULT_Z
    source: str = "built-in default"


def _model_list(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None or value == "all":
        return None
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise UserError(f"{where}: models must be 'all' or a non-empty list of model names, got {value!r}")


def _non_negative(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"{where} must be a non-negative number, got {value!r}")
    return float(value)


def _metric_rule(metric: Any, options: Any, where: str) -> MetricRule:
    if not isinstance(metric, str):
        raise UserError(f"{where}: metric names must be strings, got {metric!r}")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise UserError(f"{where}: metric {metric} must map to options (direction, tolerance, relative_tolerance, models), got {options!r}")
    unknown = set(options) - _METRIC_KEYS
    if unknown:
        raise UserError(f"{where}: metric {metric} has unknown option(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(_METRIC_KEYS))}")
    spec = metric_spec(metric)
    if spec is None:
        raise UserError(f"{where}: {metric!r} is not a metric the gate knows; use a summary.csv metric column: {', '.join(FIXED_METRICS)}, robust_accuracy_<attack> or median_perturbation_<attack>")
    direction = options.get("direction", spec.better)
    if direction not in ("lower", "higher"):
        raise UserError(f"{where}: metric {metric} needs direction 'lower' or 'higher' (lower/higher is better), got {direction!r}")
    return MetricRule(
        metric=metric,
        direction=direction,
        tolerance=_non_negative(options.get("tolerance", 0.0), f"{where}: {metric}.tolerance"),
        relative_tolerance=_non_negative(options.get("relative_tolerance", 0.0), f"{where}: {metric}.relative_tolerance"),
        models=_model_list(options.get("models"), f"{where}: {metric}"),
    )


def policy_from_mapping(values: Any, source: str = "policy") -> Policy:
    """Validates a parsed policy mapping; UserError (one line) when malformed."""
    if not isinstance(values, dict):
        raise UserError(f"{source}: a policy must be a mapping with keys {', '.join(sorted(_POLICY_KEYS))}")
    unknown = set(values) - _POLICY_KEYS
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(_POLICY_KEYS))}")
    metrics = values.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise UserError(f"{source}: 'metrics' must be a non-empty mapping of metric name to options")
    z = values.get("z", DEFAULT_Z)
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
        raise UserError(f"{source}: z must be a positive number, got {z!r}")
    default_models = _model_list(values.get("models", "all"), source)
    rules = []
    for metric, options in metrics.items():
        rule = _metric_rule(metric, options, source)
        if rule.models is None and default_models is not None:
            rule = MetricRule(rule.metric, rule.direction, rule.tolerance, rule.relative_tolerance, default_models)
        rules.append(rule)
    return Policy(tuple(rules), float(z), source)


def load_policy(policy_file: str | Path | None = None) -> Policy:
    """The policy from ``policy_file``; without one, ./reports/policy.yaml or the built-in default."""
    import yaml

    if policy_file is None:
        if not DEFAULT_POLICY_FILE.is_file():
            return policy_from_mapping(DEFAULT_POLICY, "built-in default policy")
        policy_file = DEFAULT_POLICY_FILE
    path = Path(policy_file)
    if not path.is_file():
        raise UserError(f"policy file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"policy file {path} is not valid YAML: {' '.join(str(error).split())}") from None
    return policy_from_mapping(values, str(path))


# ------------------------------------------------------------------ baseline


def _baseline_header(record: Mapping[str, Any], run_directory: Path) -> dict[str, Any]:
    config = record.get("config", {})
    return {
        "run_name": record.get("run_name", run_directory.name),
        "dataset": config.get("dataset"),
        "split": config.get("split"),
        "sample_size": record.get("sample_size"),
        "seed": record.get("seed"),
        "profile": config.get("profile"),
        "severities": " ".join(str(severity) for severity in config.get("severities", []) or []),
        "suites": " ".join(config.get("suites", []) or []),
        "models": len(record.get("models", {}) or {}),
        "robustbench_lift": record.get("versions", {}).get("robustbench_lift", __version__),
    }


def write_baseline(run_directory: str | Path, baseline_file: str | Path) -> Path:
    """Stores every metric of a finished run as the baseline (for ``--update-baseline``).

    The file is a CSV with ``# key: value`` header lines (run metadata) and one row per
    model x metric: ``model,metric,value,low,high,n`` (n only for proportions). No
    timestamps, so the file only changes when the numbers or the run set-up do.
    """
    run_directory = Path(run_directory)
    check_output_location(baseline_file, "--baseline")
    records, record = run_metric_records(run_directory)
    if records.empty:
        raise UserError(f"{run_directory} has no metrics in summary.csv to store as a baseline")
    header = _baseline_header(record, run_directory)
    path = Path(baseline_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = records.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    lines = [f"# {BASELINE_TITLE}"] + [f"# {key}: {' '.join(str(value).split())}" for key, value in header.items()]
    path.write_text("\n".join(lines) + "\n" + body, encoding="utf-8")
    return path


def read_baseline(baseline_file: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """(records, header metadata) of a baseline file; UserError when missing or malformed."""
    path = Path(baseline_file)
    if not path.is_file():
        raise UserError(f"baseline file {path} does not exist; create it with --update-baseline")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"baseline file {path} is unreadable: {error}") from None
    lines = text.splitlines(keepends=True)
    header: dict[str, str] = {}
    # Only the leading comment lines are metadata; a '#' later on may be part of a name.
    while lines and lines[0].startswith("#"):
        key, _, value = lines.pop(0)[1:].partition(":")
        if value:
            header[key.strip()] = value.strip()
    try:
        records = pd.read_csv(io.StringIO("".join(lines)), dtype={"model": str, "metric": str})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"baseline file {path} is not a baseline CSV: {' '.join(str(error).split())}") from None
    missing = [column for column in ("model", "metric", "value") if column not in records.columns]
    if missing:
        raise UserError(f"baseline file {path} lacks column(s) {', '.join(missing)}; expected {','.join(RECORD_COLUMNS)}")
    for column in ("value", "low", "high", "n"):
        if column not in records.columns:
            records[column] = math.nan
        converted = pd.to_numeric(records[column], errors="coerce")
        if (converted.isna() & records[column].notna()).any():
            raise UserError(f"baseline file {path} has non-numeric values in column {column}")
        records[column] = converted.astype(float)
    if records.empty:
        raise UserError(f"baseline file {path} has no rows; recreate it with --update-baseline")
    if records["model"].isna().any() or records["metric"].isna().any():
        raise UserError(f"baseline file {path} has rows without model or metric")
    if records.duplicated(["model", "metric"]).any():
        raise UserError(f"baseline file {path} lists a model x metric twice")
    return records[RECORD_COLUMNS], header


# ------------------------------------------------------------------ checking


@dataclass
class GateCheck:
    """The verdict on one model x metric."""

    model: str
    metric: str
    passed: bool
    message: str
    baseline: float = math.nan
    value: float = math.nan
    worse_by: float = math.nan  # > 0: worse than the baseline
    allowance: float = math.nan
    noise: float = math.nan  # z x SE of the difference
    spec: MetricSpec | None = None


@dataclass
class GateResult:
    """Outcome of :func:`check_run`: ``passed``, ``markdown`` summary, ``failures`` (messages)."""

    checks: list[GateCheck]
    markdown: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[str]:
        return [check.message for check in self.checks if not check.passed]

    @property
    def exit_code(self) -> int:
        return EXIT_PASSED if self.passed else EXIT_REGRESSION


def _spec_for(rule: MetricRule) -> MetricSpec:
    known = metric_spec(rule.metric)
    assert known is not None, f"policy metric {rule.metric} was validated when the policy was read"
    return MetricSpec(known.name, known.label, known.kind, rule.direction, known.percent)


def _missing_reason(row: Mapping[Any, Any] | None) -> str:
    if row is None:
        return "no such column in summary.csv (suite not run?)"
    if np.isinf(row["value"]):
        return f"value is {row['value']} (a ratio over a zero reference value?)"
    return "no value (failed cells or no reference model?)"


def _judge(model: str, rule: MetricRule, baseline_row: Mapping[Any, Any] | None, run_row: Mapping[Any, Any] | None, run_has_model: bool, z: float) -> GateCheck:
    spec = _spec_for(rule)
    if not run_has_model:
        return GateCheck(model, rule.metric, False, f"{model}: model missing from the run", spec=spec)
    if run_row is None or not np.isfinite(run_row["value"]):
        return GateCheck(model, rule.metric, False, f"{model}: {rule.metric} missing from the run: {_missing_reason(run_row)}", spec=spec)
    if baseline_row is None or not np.isfinite(baseline_row["value"]):
        return GateCheck(model, rule.metric, False, f"{model}: the baseline has no usable {rule.metric} ({_missing_reason(baseline_row)}); refresh it with --update-baseline", value=float(run_row["value"]), spec=spec)
    baseline, value = float(baseline_row["value"]), float(run_row["value"])
    worse_by = value - baseline if rule.direction == "lower" else baseline - value
    allowance = rule.allowance(baseline)
    error = difference_standard_error(baseline_row, run_row, spec)
    # Without a stored interval (NaN SE) the tolerance alone decides.
    noise = z * error
    # Tiny epsilon so that float round-off of an identical number never fails a build.
    failed = worse_by > allowance + 1e-12 and worse_by > (noise if np.isfinite(noise) else 0.0) + 1e-12
    change = format_change(value - baseline, spec)
    if failed:
        message = f"{model}: {rule.metric} regressed {format_value(baseline, spec)} → {format_value(value, spec)} ({change}), beyond both the tolerance ({_magnitude(allowance, spec)}) and the noise ({z:g} × SE = {_magnitude(noise, spec) if np.isfinite(noise) else 'no interval stored'})"
    else:
        message = f"{model}: {rule.metric} {format_value(baseline, spec)} → {format_value(value, spec)} ({change})"
    return GateCheck(model, rule.metric, not failed, message, baseline, value, worse_by, allowance, noise, spec)


def _magnitude(value: float, spec: MetricSpec) -> str:
    """An unsigned amount in the metric's display unit (pp for percent metrics)."""
    return format_change(value, spec).lstrip("+")


def _rule_models(rule: MetricRule, baseline_models: list[str]) -> list[str]:
    return list(rule.models) if rule.models is not None else baseline_models


def evaluate_gate(run_records: pd.DataFrame, baseline_records: pd.DataFrame, policy: Policy) -> list[GateCheck]:
    """One check per policy metric and model (policy models, or every baseline model)."""
    run_index = {(row["model"], row["metric"]): row for row in run_records.to_dict("records")}
    baseline_index = {(row["model"], row["metric"]): row for row in baseline_records.to_dict("records")}
    run_models = set(run_records["model"])
    baseline_models = list(dict.fromkeys(baseline_records["model"]))
    checks = []
    for rule in policy.rules:
        for model in _rule_models(rule, baseline_models):
            checks.append(_judge(model, rule, baseline_index.get((model, rule.metric)), run_index.get((model, rule.metric)), model in run_models, policy.z))
    return checks


def _header_notes(header: Mapping[str, str], record: Mapping[str, Any], run_directory: Path, run_records: pd.DataFrame, baseline_records: pd.DataFrame) -> list[str]:
    notes = []
    current = {key: str(value) for key, value in _baseline_header(record, run_directory).items()}
    for key in ("dataset", "sample_size", "seed", "profile", "severities"):
        if key in header and header[key] != " ".join(current.get(key, "").split()):
            notes.append(f"baseline {key} is {header[key]}, this run's is {current.get(key)}")
    new_models = [model for model in dict.fromkeys(run_records["model"]) if model not in set(baseline_records["model"])]
    if new_models:
        notes.append(f"models without a baseline (not checked): {', '.join(new_models)}")
    return notes


def gate_markdown(result: GateResult, run_directory: Path, baseline_file: Path, policy: Policy) -> str:
    """The Markdown summary: verdict, one table row per check, failures and notes."""
    failed = len(result.failures)
    verdict = "✅ passed" if result.passed else f"❌ failed ({failed} of {len(result.checks)} checks)"
    lines = [
        f"## Robustness gate: {verdict}",
        "",
        f"Run `{markdown_cell(run_directory)}` against baseline `{markdown_cell(baseline_file)}`, policy: {markdown_cell(policy.source)}. "
        f"A metric fails when it is worse than the baseline by more than its tolerance and by more than {policy.z:g} × SE of the difference.",
        "",
        "| model | metric | baseline | run | change | tolerance | noise (z·SE) | result |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for check in result.checks:
        spec = check.spec
        assert spec is not None, "every check of evaluate_gate carries its spec"
        status = "pass" if check.passed else "**FAIL**"
        cells = [check.model, check.metric, format_value(check.baseline, spec), format_value(check.value, spec)]
        cells.append(format_change(check.value - check.baseline, spec) if np.isfinite(check.baseline) and np.isfinite(check.value) else "—")
        cells.append(_magnitude(check.allowance, spec) if np.isfinite(check.allowance) else "—")
        cells.append(_magnitude(check.noise, spec) if np.isfinite(check.noise) else "—")
        lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + f" | {status} |")
    if result.failures:
        lines += ["", "### Failures", ""] + [f"- {markdown_cell(message)}" for message in result.failures]
    if result.notes:
        lines += ["", "### Notes", ""] + [f"- {markdown_cell(note)}" for note in result.notes]
    return "\n".join(lines) + "\n"


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: Any) -> str:
    # ElementTree escapes markup but not control characters, which XML 1.0 forbids.
    return _XML_INVALID.sub("?", str(text))


def write_junit(result: GateResult, junit_path: str | Path) -> Path:
    """JUnit XML, one testcase per model x metric (classname = model, name = metric)."""
    failures = len(result.failures)
    suites = ElementTree.Element("testsuites", name="robustbench-lift gate", tests=str(len(result.checks)), failures=str(failures), errors="0")
    suite = ElementTree.SubElement(suites, "testsuite", name="robustness-gate", tests=str(len(result.checks)), failures=str(failures), errors="0", skipped="0", time="0")
    for check in result.checks:
        case = ElementTree.SubElement(suite, "testcase", classname=_xml_text(check.model), name=_xml_text(check.metric), time="0")
        if not check.passed:
            kind = "missing" if not (np.isfinite(check.value) and np.isfinite(check.baseline)) else "regression"
            failure = ElementTree.SubElement(case, "failure", message=_xml_text(check.message), type=kind)
            failure.text = _xml_text(check.message)
        else:
            output = ElementTree.SubElement(case, "system-out")
            output.text = _xml_text(check.message)
    path = Path(junit_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path


def _append_step_summary(markdown: str) -> None:
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")


def check_run(run_directory: str | Path, baseline_file: str | Path, policy_file: str | Path | None = None, junit_path: str | Path | None = None) -> GateResult:
    """Checks a finished run against a baseline under a policy (module docstring).

    Returns the result (``passed``, ``markdown``, ``failures``, ``exit_code``); appends the
    Markdown to ``$GITHUB_STEP_SUMMARY`` when set and writes JUnit XML to ``junit_path``.
    Raises UserError for a missing/malformed baseline or policy or an unfinished run.
    """
    run_directory, baseline_file = Path(run_directory), Path(baseline_file)
    if junit_path is not None:
        check_output_location(junit_path, "--junit")
    policy = load_policy(policy_file)
    baseline_records, header = read_baseline(baseline_file)
    run_records, record = run_metric_records(run_directory)
    result = GateResult(evaluate_gate(run_records, baseline_records, policy))
    result.notes = _header_notes(header, record, run_directory, run_records, baseline_records)
    result.markdown = gate_markdown(result, run_directory, baseline_file, policy)
    _append_step_summary(result.markdown)
    if junit_path is not None:
        write_junit(result, junit_path)
    return result
