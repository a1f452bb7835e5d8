"""Regression gate: checks a finished run against a stored baseline under a policy.

A metric FAILS only when it is worse than the baseline by more than its tolerance AND the
worsening is significant: a one-sided test gives p < alpha (``alpha``, or the ``z`` of a
normal threshold: z = 1.96 is alpha = 0.025), so sampling noise alone never fails a build.

Baseline and candidate evaluated with the same data set, split, sample size and seed see
the same images (equal sample digests), so the test is PAIRED on their per-image outcomes
(the run's ``per_image.npz`` and the baseline's sidecar ``<baseline>.npz``, see
:mod:`robustbench_lift.per_image`): McNemar's exact test on the discordant images for error
rates, robust accuracies and shift consistency, a paired bootstrap over images (or
perturbation sequences) for CE, mCE, relative mCE, mean corruption error, mFR and mT5D
(:mod:`robustbench_lift.reporting.paired`). Without per-image data on both sides, or with
different images, the gate falls back to the unpaired normal test (SE of the difference
from the stored intervals, ``docs/gate.md``) and says so in its notes.

A metric the policy names but the run does not have (suite not run) is reported as "not
run" and does not fail; a model of the baseline missing from the run, or a metric the run
has but could not compute (failed cells), fails. Bad input (missing or malformed baseline
or policy, a folder without a finished run) raises :class:`~robustbench_lift.errors.UserError`.

Exit codes for the command line: :data:`EXIT_PASSED` (0), :data:`EXIT_REGRESSION` (1),
:data:`EXIT_USAGE` (2, a UserError).

Policy (YAML; ``reports/policy.yaml`` is the documented default)::

    z: 1.96                 # significance as a normal threshold (one-sided alpha 0.025) ...
    # alpha: 0.025          # ... or directly as a one-sided false-alarm rate per check
    models: all             # "all" (every model of the baseline) or a list of names
    metrics:                # summary.csv columns (and condition_errors, below)
      clean_error:
        direction: lower    # lower or higher is better (optional: each metric has its default)
        tolerance: 0.02     # absolute allowance, in the metric's unit (0.02 = 2 pp)
      mce:
        relative_tolerance: 0.05   # allowance as a share of the baseline value
      robust_accuracy_pgd_linf:
        tolerance: 0.02
        models: [small_cnn-lift]   # optional per-metric override of `models`
      condition_errors:     # every corruption x severity error, McNemar with Bonferroni
        tolerance: 0.05

Baseline (CSV, one row per model x metric, human-diffable; see :func:`write_baseline`)::

    # robustbench-lift baseline: one row per model x metric; refresh with --update-baseline
    # run_name: quick
    # sample_size: 200
    # ...
    model,metric,value,low,high,n
    small_cnn-max,clean_error,0.105,0.0697075,0.15518,200

plus its per-image sidecar ``quick.npz`` (written by ``--update-baseline`` as well).
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
from robustbench_lift.metrics.statistics import McNemar, mcnemar_test, one_sided_alpha
from robustbench_lift.per_image import FILE_NAME as PER_IMAGE_FILE
from robustbench_lift.per_image import PerImage, read_per_image, sidecar_path, write_per_image
from robustbench_lift.reporting.comparison import (
    DEFAULT_Z,
    FIXED_METRICS,
    PROPORTION,
    RECORD_COLUMNS,
    MetricSpec,
    difference_standard_error,
    format_change,
    format_value,
    markdown_cell,
    metric_spec,
    run_metric_records,
)
from robustbench_lift.reporting.paired import Unpairable, paired_test
from robustbench_lift.utils.io import check_output_location

__all__ = [
    "CONDITION_ERRORS",
    "DEFAULT_POLICY",
    "EXIT_PASSED",
    "EXIT_REGRESSION",
    "EXIT_USAGE",
    "GateCheck",
    "GateResult",
    "MetricRule",
    "Pairing",
    "Policy",
    "check_run",
    "evaluate_gate",
    "gate_markdown",
    "load_policy",
    "policy_from_mapping",
    "read_baseline",
    "write_baseline",
    "write_junit",
]

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
_POLICY_KEYS = {"z", "alpha", "models", "metrics"}
#: The policy metric that stands for every corruption x severity error of the run (one
#: check per model: McNemar per condition, Bonferroni-corrected over the conditions).
CONDITION_ERRORS = "condition_errors"
_CONDITION_ERRORS_SPEC = MetricSpec(CONDITION_ERRORS, "error per corruption x severity", PROPORTION, "lower")
# Relative difference tolerated between a metric recomputed from per-image data and the
# value in summary.csv / the baseline CSV (written with 6 significant digits).
_RECOMPUTE_TOLERANCE = 2e-5

#: Status of a check: only FAILED fails the gate.
PASSED, FAILED, NOT_RUN, NO_BASELINE = "pass", "FAIL", "not run", "no baseline"
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
    alpha_given: float | None = None  # the policy's alpha, when it gave one instead of z

    @property
    def alpha(self) -> float:
        """One-sided false-alarm rate of each check (from ``z`` unless given)."""
        return self.alpha_given if self.alpha_given is not None else one_sided_alpha(self.z)

    @property
    def threshold(self) -> str:
        """The significance rule in words, for reports."""
        given = (
            f"alpha = {self.alpha_given:g}"
            if self.alpha_given is not None
            else f"z = {self.z:g}, one-sided alpha = {self.alpha:.3g}"
        )
        return f"p < alpha ({given})"


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
        raise UserError(
            f"{where}: metric {metric} must map to options (direction, tolerance, relative_tolerance, models), got {options!r}"
        )
    unknown = set(options) - _METRIC_KEYS
    if unknown:
        raise UserError(
            f"{where}: metric {metric} has unknown option(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(_METRIC_KEYS))}"
        )
    spec = _CONDITION_ERRORS_SPEC if metric == CONDITION_ERRORS else metric_spec(metric)
    if spec is None:
        raise UserError(
            f"{where}: {metric!r} is not a metric the gate knows; use a summary.csv metric column: {', '.join(FIXED_METRICS)}, robust_accuracy_<attack>, median_perturbation_<attack> or {CONDITION_ERRORS}"
        )
    direction = options.get("direction", spec.better)
    if direction not in ("lower", "higher"):
        raise UserError(
            f"{where}: metric {metric} needs direction 'lower' or 'higher' (lower/higher is better), got {direction!r}"
        )
    return MetricRule(
        metric=metric,
        direction=direction,
        tolerance=_non_negative(options.get("tolerance", 0.0), f"{where}: {metric}.tolerance"),
        relative_tolerance=_non_negative(
            options.get("relative_tolerance", 0.0), f"{where}: {metric}.relative_tolerance"
        ),
        models=_model_list(options.get("models"), f"{where}: {metric}"),
    )


def policy_from_mapping(values: Any, source: str = "policy") -> Policy:
    """Validates a parsed policy mapping; UserError (one line) when malformed."""
    if not isinstance(values, dict):
        raise UserError(f"{source}: a policy must be a mapping with keys {', '.join(sorted(_POLICY_KEYS))}")
    unknown = set(values) - _POLICY_KEYS
    if unknown:
        raise UserError(
            f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(_POLICY_KEYS))}"
        )
    metrics = values.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise UserError(f"{source}: 'metrics' must be a non-empty mapping of metric name to options")
    if "z" in values and "alpha" in values:
        raise UserError(f"{source}: give z or alpha, not both (z = 1.96 is a one-sided alpha of 0.025)")
    z = values.get("z", DEFAULT_Z)
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
        raise UserError(f"{source}: z must be a positive number, got {z!r}")
    alpha = values.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1):
        raise UserError(
            f"{source}: alpha must be a number between 0 and 1 (a one-sided false-alarm rate), got {alpha!r}"
        )
    default_models = _model_list(values.get("models", "all"), source)
    rules = []
    for metric, options in metrics.items():
        rule = _metric_rule(metric, options, source)
        if rule.models is None and default_models is not None:
            rule = MetricRule(rule.metric, rule.direction, rule.tolerance, rule.relative_tolerance, default_models)
        rules.append(rule)
    return Policy(tuple(rules), float(z), source, None if alpha is None else float(alpha))


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
        # Segmentation runs record their data set (and split) apart from the classification keys.
        "dataset": record.get("dataset") if record.get("task") == "segmentation" else config.get("dataset"),
        "split": config.get("segmentation_split") if record.get("task") == "segmentation" else config.get("split"),
        "sample_size": record.get("sample_size"),
        "seed": record.get("seed"),
        "profile": config.get("profile"),
        "severities": " ".join(str(severity) for severity in config.get("severities", []) or []),
        "suites": " ".join(config.get("suites", []) or []),
        "models": len(record.get("models", {}) or {}),
        "sample_digest": record.get("sample_digest", ""),
        "robustbench_lift": record.get("versions", {}).get("robustbench_lift", __version__),
    }


def write_baseline(run_directory: str | Path, baseline_file: str | Path) -> Path:
    """Stores every metric of a finished run as the baseline (for ``--update-baseline``).

    The file is a CSV with ``# key: value`` header lines (run metadata) and one row per
    model x metric: ``model,metric,value,low,high,n`` (n only for proportions). No
    timestamps, so the file only changes when the numbers or the run set-up do. Next to
    it goes the sidecar ``<baseline>.npz``: the run's per-image outcomes that the paired
    tests need (a stale sidecar is removed when the run has none).

    Args:
        run_directory: a finished run.
        baseline_file: the CSV to write.

    Returns:
        The CSV's path (the sidecar is :func:`~robustbench_lift.per_image.sidecar_path` of it).
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
    sidecar = sidecar_path(path)
    if (run_directory / PER_IMAGE_FILE).is_file():
        write_per_image(sidecar, read_per_image(run_directory / PER_IMAGE_FILE).subset(records["model"]))
    elif sidecar.exists():
        # Per-image data of an older baseline would pair this baseline's numbers with other outcomes.
        sidecar.unlink()
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
        raise UserError(
            f"baseline file {path} lacks column(s) {', '.join(missing)}; expected {','.join(RECORD_COLUMNS)}"
        )
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
    status: str  # PASSED, FAILED, NOT_RUN or NO_BASELINE; only FAILED fails the gate
    message: str
    baseline: float = math.nan
    value: float = math.nan
    worse_by: float = math.nan  # > 0: worse than the baseline
    allowance: float = math.nan
    test: str = ""  # how significance was judged, e.g. "McNemar exact: 9 worse, 0 better of 200 images"
    p_value: float = math.nan  # one-sided; NaN when the tolerance alone decided
    spec: MetricSpec | None = None

    @property
    def passed(self) -> bool:
        return self.status != FAILED


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


@dataclass(frozen=True)
class Pairing:
    """Per-image data of both sides, when they exist and cover the same images.

    ``baseline`` and ``run`` are None when the gate must test unpaired; ``reason`` says why.
    """

    baseline: PerImage | None = None
    run: PerImage | None = None
    reason: str = "no per-image data"
    seed: int = 0

    @property
    def paired(self) -> bool:
        return self.baseline is not None and self.run is not None

    @classmethod
    def load(cls, baseline_file: Path, run_directory: Path, seed: int) -> Pairing:
        """Reads the baseline's sidecar and the run's per-image file; checks they share images."""
        sidecar, run_file = sidecar_path(baseline_file), run_directory / PER_IMAGE_FILE
        if not sidecar.is_file() and not run_file.is_file():
            return cls(reason=f"neither the baseline nor the run has per-image outcomes ({PER_IMAGE_FILE})", seed=seed)
        if not sidecar.is_file():
            return cls(
                reason=f"the baseline has no per-image sidecar {sidecar.name} (refresh it with --update-baseline)",
                seed=seed,
            )
        if not run_file.is_file():
            return cls(reason=f"the run has no {PER_IMAGE_FILE} (written by runs of this version)", seed=seed)
        baseline, run = read_per_image(sidecar), read_per_image(run_file)
        if not baseline.sample_digest or baseline.sample_digest != run.sample_digest:
            return cls(
                reason=f"baseline and run evaluated different images (sample digest {baseline.sample_digest[:12] or 'unknown'} vs {run.sample_digest[:12] or 'unknown'}: data set, split, sample size or seed differ)",
                seed=seed,
            )
        return cls(baseline, run, "", seed)


def _spec_for(rule: MetricRule) -> MetricSpec:
    known = _CONDITION_ERRORS_SPEC if rule.metric == CONDITION_ERRORS else metric_spec(rule.metric)
    assert known is not None, f"policy metric {rule.metric} was validated when the policy was read"
    return MetricSpec(known.name, known.label, known.kind, rule.direction, known.percent)


def _missing_reason(row: Mapping[Any, Any] | None) -> str:
    if row is not None and np.isinf(row["value"]):
        return f"value is {row['value']} (a ratio over a zero reference value?)"
    return "no value (failed cells or no reference model?)"


def _matches(recomputed: float, stored: float) -> bool:
    return abs(recomputed - stored) <= _RECOMPUTE_TOLERANCE * max(1.0, abs(stored))


def _unpaired(
    baseline_row: Mapping[Any, Any], run_row: Mapping[Any, Any], spec: MetricSpec, worse_by: float, why: str
) -> tuple[str, float]:
    """(test description, one-sided p) of the independent-samples normal test."""
    error = difference_standard_error(baseline_row, run_row, spec)
    if not np.isfinite(error):
        return f"tolerance only (no interval stored; {why})", math.nan
    if error == 0:
        # Both proportions at 0 or 1: any change is beyond sampling noise.
        return f"unpaired, SE 0 ({why})", 0.0 if worse_by > 0 else 1.0
    return f"unpaired normal, SE {_magnitude(error, spec)} ({why})", 0.5 * math.erfc(worse_by / error / math.sqrt(2))


def _significance(
    model: str,
    rule: MetricRule,
    spec: MetricSpec,
    baseline_row: Mapping[Any, Any],
    run_row: Mapping[Any, Any],
    worse_by: float,
    pairing: Pairing,
) -> tuple[str, float]:
    """(test description, one-sided p-value that the run is not worse); NaN p: tolerance decides."""
    why = pairing.reason
    if pairing.paired:
        assert pairing.baseline is not None and pairing.run is not None
        try:
            result = paired_test(rule.metric, model, pairing.baseline, pairing.run, rule.direction, pairing.seed)
        except Unpairable as error:
            why = str(error)
        else:
            if _matches(result.baseline_value, float(baseline_row["value"])) and _matches(
                result.candidate_value, float(run_row["value"])
            ):
                return f"{result.method}: {result.detail}", result.p_value
            why = f"per-image data give {format_value(result.baseline_value, spec)} → {format_value(result.candidate_value, spec)}, the tables {format_value(float(baseline_row['value']), spec)} → {format_value(float(run_row['value']), spec)}"
    return _unpaired(baseline_row, run_row, spec, worse_by, why)


def _judge(
    model: str,
    rule: MetricRule,
    baseline_row: Mapping[Any, Any] | None,
    run_row: Mapping[Any, Any] | None,
    run_has_model: bool,
    policy: Policy,
    pairing: Pairing,
) -> GateCheck:
    spec = _spec_for(rule)
    if not run_has_model:
        return GateCheck(model, rule.metric, FAILED, f"{model}: model missing from the run", spec=spec)
    if run_row is None:
        return GateCheck(
            model, rule.metric, NOT_RUN, f"{model}: {rule.metric} not run (no such column in summary.csv)", spec=spec
        )
    if not np.isfinite(run_row["value"]):
        return GateCheck(
            model,
            rule.metric,
            FAILED,
            f"{model}: {rule.metric} missing from the run: {_missing_reason(run_row)}",
            spec=spec,
        )
    value = float(run_row["value"])
    if baseline_row is None:
        return GateCheck(
            model,
            rule.metric,
            NO_BASELINE,
            f"{model}: {rule.metric} has no baseline value (not checked); refresh the baseline with --update-baseline",
            value=value,
            spec=spec,
        )
    if not np.isfinite(baseline_row["value"]):
        return GateCheck(
            model,
            rule.metric,
            FAILED,
            f"{model}: the baseline has no usable {rule.metric} ({_missing_reason(baseline_row)}); refresh it with --update-baseline",
            value=value,
            spec=spec,
        )
    baseline = float(baseline_row["value"])
    if _matches(value, baseline):
        value = baseline  # the baseline CSV keeps 6 significant digits: equal up to its rounding
    worse_by = value - baseline if rule.direction == "lower" else baseline - value
    allowance = rule.allowance(baseline)
    # Tiny epsilon so that float round-off of an identical number never fails a build.
    beyond_tolerance = worse_by > allowance + 1e-12
    test, p_value = _significance(model, rule, spec, baseline_row, run_row, worse_by, pairing)
    significant = p_value < policy.alpha if np.isfinite(p_value) else True
    failed = beyond_tolerance and significant
    change = format_change(value - baseline, spec)
    if failed:
        message = f"{model}: {rule.metric} regressed {format_value(baseline, spec)} → {format_value(value, spec)} ({change}), beyond the tolerance ({_magnitude(allowance, spec)}) and significant ({test}, p = {_p_text(p_value)})"
    else:
        message = f"{model}: {rule.metric} {format_value(baseline, spec)} → {format_value(value, spec)} ({change})"
    return GateCheck(
        model,
        rule.metric,
        FAILED if failed else PASSED,
        message,
        baseline,
        value,
        worse_by,
        allowance,
        test,
        p_value,
        spec,
    )


def _condition_names(data: PerImage, model: str) -> list[str]:
    return [
        name for (owner, suite, name) in data.arrays if owner == model and suite == "corruption" and name != "clean"
    ]


def _judge_conditions(model: str, rule: MetricRule, run_has_model: bool, policy: Policy, pairing: Pairing) -> GateCheck:
    """One check over every corruption x severity error of ``model`` (paired data only).

    Each condition gets McNemar's exact test; a condition fails when its error grew by more
    than the tolerance with p below alpha / (number of conditions) (Bonferroni), so a run
    with dozens of conditions keeps the false-alarm rate of one check.
    """
    spec = _spec_for(rule)
    if not run_has_model:
        return GateCheck(model, rule.metric, FAILED, f"{model}: model missing from the run", spec=spec)
    if not pairing.paired:
        return GateCheck(
            model,
            rule.metric,
            NO_BASELINE,
            f"{model}: {rule.metric} needs per-image data on both sides: {pairing.reason}",
            spec=spec,
        )
    assert pairing.baseline is not None and pairing.run is not None
    conditions = _condition_names(pairing.run, model)
    if not conditions:
        return GateCheck(
            model,
            rule.metric,
            NOT_RUN,
            f"{model}: {rule.metric} not run (no corruption conditions in the run)",
            spec=spec,
        )
    shared = [name for name in conditions if pairing.baseline.get(model, "corruption", name) is not None]
    if not shared:
        return GateCheck(
            model,
            rule.metric,
            NO_BASELINE,
            f"{model}: {rule.metric}: the baseline has no per-image corruption data of {model}",
            spec=spec,
        )
    level = policy.alpha / len(shared)
    judged: list[tuple[bool, float, str, float, float, McNemar]] = []
    for name in shared:
        base, run = pairing.baseline.get(model, "corruption", name), pairing.run.get(model, "corruption", name)
        assert base is not None and run is not None
        if base.size != run.size:
            return GateCheck(
                model,
                rule.metric,
                NO_BASELINE,
                f"{model}: {rule.metric}: per-image arrays of {name} differ in length",
                spec=spec,
            )
        bad_is_true = rule.direction == "lower"
        outcome = mcnemar_test(base == bad_is_true, run == bad_is_true)
        worse_by = outcome.change if bad_is_true else -outcome.change
        failed = worse_by > rule.allowance(float(base.mean())) + 1e-12 and outcome.p_value < level
        judged.append((failed, worse_by, name, float(base.mean()), float(run.mean()), outcome))
    failing = [item for item in judged if item[0]]
    # Show the failing condition with the largest worsening, else the largest worsening overall.
    _, worse_by, name, baseline, value, outcome = max(failing or judged, key=lambda item: (item[1], -item[5].p_value))
    allowance = rule.allowance(baseline)
    test = f"McNemar exact per condition, Bonferroni over {len(shared)}: worst {name}, {outcome.worse} worse, {outcome.better} better of {outcome.n} images"
    if failing:
        names = ", ".join(item[2] for item in sorted(failing, key=lambda item: -item[1])[:3]) + (
            f" and {len(failing) - 3} more" if len(failing) > 3 else ""
        )
        message = f"{model}: {rule.metric} regressed in {len(failing)} of {len(shared)} conditions ({names}); worst {name} {format_value(baseline, spec)} → {format_value(value, spec)}, beyond the tolerance ({_magnitude(allowance, spec)}) with p = {_p_text(outcome.p_value)} < alpha / {len(shared)}"
    else:
        message = (
            f"{model}: {rule.metric} worst change {name} {format_value(baseline, spec)} → {format_value(value, spec)}"
        )
    return GateCheck(
        model,
        rule.metric,
        FAILED if failing else PASSED,
        message,
        baseline,
        value,
        worse_by,
        allowance,
        test,
        outcome.p_value,
        spec,
    )


def _p_text(p_value: float) -> str:
    return f"{p_value:.2g}" if np.isfinite(p_value) else "—"


def _magnitude(value: float, spec: MetricSpec) -> str:
    """An unsigned amount in the metric's display unit (pp for percent metrics)."""
    return format_change(value, spec).lstrip("+")


def _rule_models(rule: MetricRule, baseline_models: list[str]) -> list[str]:
    return list(rule.models) if rule.models is not None else baseline_models


def evaluate_gate(
    run_records: pd.DataFrame, baseline_records: pd.DataFrame, policy: Policy, pairing: Pairing | None = None
) -> list[GateCheck]:
    """One check per policy metric and model (policy models, or every baseline model).

    Args:
        run_records: the run's metric records (:func:`~robustbench_lift.reporting.comparison.metric_records`).
        baseline_records: the baseline's (:func:`read_baseline`).
        policy: what to check.
        pairing: per-image data of both sides; None tests unpaired.

    Returns:
        The checks, in policy order.
    """
    pairing = pairing or Pairing()
    run_index = {(row["model"], row["metric"]): row for row in run_records.to_dict("records")}
    baseline_index = {(row["model"], row["metric"]): row for row in baseline_records.to_dict("records")}
    run_models = set(run_records["model"])
    baseline_models = list(dict.fromkeys(baseline_records["model"]))
    checks = []
    for rule in policy.rules:
        for model in _rule_models(rule, baseline_models):
            if rule.metric == CONDITION_ERRORS:
                checks.append(_judge_conditions(model, rule, model in run_models, policy, pairing))
            else:
                checks.append(
                    _judge(
                        model,
                        rule,
                        baseline_index.get((model, rule.metric)),
                        run_index.get((model, rule.metric)),
                        model in run_models,
                        policy,
                        pairing,
                    )
                )
    return checks


def _header_notes(
    header: Mapping[str, str],
    record: Mapping[str, Any],
    run_directory: Path,
    run_records: pd.DataFrame,
    baseline_records: pd.DataFrame,
    pairing: Pairing,
) -> list[str]:
    notes = []
    if pairing.paired:
        assert pairing.run is not None
        notes.append(
            f"paired tests: baseline and run evaluated the same images (sample digest {pairing.run.sample_digest[:12]})"
        )
    else:
        notes.append(f"unpaired tests (normal approximation from the stored intervals): {pairing.reason}")
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
        f"A metric fails when it is worse than the baseline by more than its tolerance and the one-sided test of the worsening gives {policy.threshold}.",
        "",
        "| model | metric | baseline | run | change | tolerance | test | p | result |",
        "|---|---|---:|---:|---:|---:|---|---:|---|",
    ]
    labels = {PASSED: "pass", FAILED: "**FAIL**", NOT_RUN: "not run", NO_BASELINE: "no baseline"}
    for check in result.checks:
        spec = check.spec
        assert spec is not None, "every check of evaluate_gate carries its spec"
        cells = [check.model, check.metric, format_value(check.baseline, spec), format_value(check.value, spec)]
        cells.append(
            format_change(check.value - check.baseline, spec)
            if np.isfinite(check.baseline) and np.isfinite(check.value)
            else "—"
        )
        cells.append(_magnitude(check.allowance, spec) if np.isfinite(check.allowance) else "—")
        cells += [check.test or "—", _p_text(check.p_value)]
        lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + f" | {labels[check.status]} |")
    if result.failures:
        lines += ["", "### Failures", ""] + [f"- {markdown_cell(message)}" for message in result.failures]
    skipped = [check.message for check in result.checks if check.status in (NOT_RUN, NO_BASELINE)]
    if result.notes or skipped:
        lines += ["", "### Notes", ""] + [f"- {markdown_cell(note)}" for note in result.notes + skipped]
    return "\n".join(lines) + "\n"


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: Any) -> str:
    # ElementTree escapes markup but not control characters, which XML 1.0 forbids.
    return _XML_INVALID.sub("?", str(text))


def write_junit(result: GateResult, junit_path: str | Path) -> Path:
    """JUnit XML, one testcase per model x metric (classname = model, name = metric)."""
    failures = len(result.failures)
    skipped = sum(check.status in (NOT_RUN, NO_BASELINE) for check in result.checks)
    suites = ElementTree.Element(
        "testsuites", name="robustbench-lift gate", tests=str(len(result.checks)), failures=str(failures), errors="0"
    )
    suite = ElementTree.SubElement(
        suites,
        "testsuite",
        name="robustness-gate",
        tests=str(len(result.checks)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time="0",
    )
    for check in result.checks:
        case = ElementTree.SubElement(
            suite, "testcase", classname=_xml_text(check.model), name=_xml_text(check.metric), time="0"
        )
        if check.status in (NOT_RUN, NO_BASELINE):
            ElementTree.SubElement(case, "skipped", message=_xml_text(check.message))
        elif not check.passed:
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


def check_run(
    run_directory: str | Path,
    baseline_file: str | Path,
    policy_file: str | Path | None = None,
    junit_path: str | Path | None = None,
) -> GateResult:
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
    seed = record.get("seed")
    pairing = Pairing.load(
        baseline_file, run_directory, seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
    )
    result = GateResult(evaluate_gate(run_records, baseline_records, policy, pairing))
    result.notes = _header_notes(header, record, run_directory, run_records, baseline_records, pairing)
    result.markdown = gate_markdown(result, run_directory, baseline_file, policy)
    _append_step_summary(result.markdown)
    if junit_path is not None:
        write_junit(result, junit_path)
    return result
