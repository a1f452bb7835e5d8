"""The regression gate and the run comparison.

Most tests use synthetic TEST-FIXTURE runs: small tables in the results.csv / summary.csv /
run.json schema with made-up numbers, without per-image data (so the gate tests them
unpaired); regressions are planted by editing copies of them. The acceptance tests at the
end run the quick preset's corruption suite for real and gate a deliberately degraded
model, paired.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

import cli
from robustbench_lift.data.datasets import DEBIAN_FASHION_MNIST
from robustbench_lift.errors import UserError
from robustbench_lift.metrics import wilson_interval
from robustbench_lift.reporting.comparison import build_comparison, compare_runs
from robustbench_lift.reporting.gate import (
    DEFAULT_POLICY,
    EXIT_PASSED,
    EXIT_REGRESSION,
    check_run,
    load_policy,
    read_baseline,
    write_baseline,
)
from robustbench_lift.results import read_run, write_run

REPOSITORY = Path(__file__).resolve().parents[1]
MODELS = {"small_cnn-max": 20, "small_cnn-lift": 16, "odd|name <b>": 24}  # clean errors out of 200
N, ATTACK_N = 200, 50
POLICY_METRICS = ["clean_error", "mce", "mfr", "shift_consistency", "robust_accuracy_pgd_linf"]


# ------------------------------------------------------------------ synthetic runs (test fixtures)


def _interval(successes: int, n: int) -> dict[str, float]:
    low, high = wilson_interval(successes, n)
    return {"value": successes / n, "low": low, "high": high}


def make_run(directory: Path) -> Path:
    """A finished run with clean, shift and PGD rows and the summary the gate reads."""
    results: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for model, clean_errors in MODELS.items():
        base = {
            "run": directory.name,
            "model": model,
            "architecture": "small_cnn",
            "pooling": model.split("-")[-1],
            "dataset": "fashion_mnist",
        }
        clean, shift, robust = _interval(clean_errors, N), _interval(N - clean_errors, N), _interval(20, ATTACK_N)
        results.append(
            base
            | {
                "suite": "clean",
                "condition": "clean",
                "family": "clean",
                "level": 0.0,
                "status": "ok",
                "n": N,
                "errors": clean_errors,
                "error": clean["value"],
                "error_low": clean["low"],
                "error_high": clean["high"],
            }
        )
        results.append(
            base
            | {
                "suite": "shift",
                "condition": "shift/4px",
                "family": "shift",
                "level": 4.0,
                "status": "ok",
                "n": N,
                "consistency": shift["value"],
                "consistency_low": shift["low"],
                "consistency_high": shift["high"],
            }
        )
        results.append(
            base
            | {
                "suite": "adversarial",
                "condition": "pgd_linf/eps=0.031373",
                "family": "pgd_linf",
                "level": 8 / 255,
                "status": "ok",
                "n": ATTACK_N,
                "norm": "linf",
                "robust_accuracy": robust["value"],
                "robust_accuracy_low": robust["low"],
                "robust_accuracy_high": robust["high"],
            }
        )
        row: dict[str, Any] = {
            "model": model,
            "architecture": "small_cnn",
            "pooling": base["pooling"],
            "n": N,
            "clean_error": clean["value"],
            "clean_error_low": clean["low"],
            "clean_error_high": clean["high"],
            "reference_model": "small_cnn-max",
        }
        for metric in ("mce", "relative_mce", "mfr", "mt5d", "mean_corruption_error"):
            row |= {metric: 1.0, f"{metric}_low": 0.97, f"{metric}_high": 1.03}
        row |= {
            "shift_consistency": shift["value"],
            "shift_consistency_low": shift["low"],
            "shift_consistency_high": shift["high"],
        }
        row |= {
            "robust_accuracy_pgd_linf": robust["value"],
            "robust_accuracy_pgd_linf_low": robust["low"],
            "robust_accuracy_pgd_linf_high": robust["high"],
        }
        summary.append(row)
    record = {
        "run_name": directory.name,
        "config": {
            "dataset": "fashion_mnist",
            "split": "test",
            "profile": "cifar",
            "severities": [1, 3, 5],
            "suites": ["corruption", "shift", "adversarial"],
        },
        "seed": 0,
        "sample_size": N,
        "models": {model: {} for model in MODELS},
        "versions": {"robustbench_lift": "0.1.0"},
    }
    return write_run(directory, pd.DataFrame(results), pd.DataFrame(summary), record)


def edit_summary(run: Path, model: str, **values: float) -> None:
    summary = pd.read_csv(run / "summary.csv")
    for column, value in values.items():
        summary.loc[summary["model"] == model, column] = value
    summary.to_csv(run / "summary.csv", index=False)


def write_policy(path: Path, policy: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("gate") / "baseline-run")


@pytest.fixture()
def candidate(baseline_run: Path, tmp_path: Path) -> Path:
    """An identical copy of the baseline run, to be edited by a test."""
    return Path(shutil.copytree(baseline_run, tmp_path / "candidate"))


@pytest.fixture()
def baseline(baseline_run: Path, tmp_path: Path) -> Path:
    return write_baseline(baseline_run, tmp_path / "baselines" / "quick.csv")


@pytest.fixture()
def policy() -> Path:
    return REPOSITORY / "reports" / "policy.yaml"


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


# ------------------------------------------------------------------ gate


def test_identical_runs_pass(candidate: Path, baseline: Path, policy: Path) -> None:
    result = check_run(candidate, baseline, policy)
    assert result.passed and result.failures == [] and result.exit_code == EXIT_PASSED
    assert len(result.checks) == len(MODELS) * len(POLICY_METRICS)
    assert "passed" in result.markdown


def test_planted_regression_fails(candidate: Path, baseline: Path, policy: Path, tmp_path: Path) -> None:
    # Clean error 8 % -> 20 % on n = 200: far beyond 2 pp and beyond z * SE (about 6.6 pp).
    edit_summary(candidate, "small_cnn-lift", clean_error=0.20, clean_error_low=0.15, clean_error_high=0.26)
    # mCE 100 -> 130 with tight bootstrap intervals.
    edit_summary(candidate, "small_cnn-max", mce=1.30, mce_low=1.27, mce_high=1.33)
    result = check_run(candidate, baseline, policy, junit_path=tmp_path / "gate.xml")
    assert not result.passed and result.exit_code == EXIT_REGRESSION
    assert len(result.failures) == 2
    assert any("small_cnn-lift" in failure and "clean_error" in failure for failure in result.failures)
    assert any("small_cnn-max" in failure and "mce" in failure for failure in result.failures)
    assert "**FAIL**" in result.markdown


def test_change_within_sampling_noise_passes(candidate: Path, baseline: Path, policy: Path) -> None:
    # +3 pp clean error is beyond the 2 pp tolerance but within 1.96 SE of n = 200 runs.
    edit_summary(candidate, "small_cnn-lift", clean_error=0.11)
    # mCE +6 points is beyond 0.05 but its bootstrap intervals are wide (SE 0.1 per run).
    edit_summary(candidate, "small_cnn-max", mce=1.06, mce_low=0.86, mce_high=1.25)
    baseline_with_wide_interval = candidate.parent / "wide.csv"
    records, _ = read_baseline(baseline)
    text = baseline.read_text().replace("small_cnn-max,mce,1,0.97,1.03,", "small_cnn-max,mce,1,0.8,1.2,")
    baseline_with_wide_interval.write_text(text)
    assert (
        read_baseline(baseline_with_wide_interval)[0]
        .set_index(["model", "metric"])
        .loc[("small_cnn-max", "mce"), "low"]
        == 0.8
    )
    result = check_run(candidate, baseline_with_wide_interval, policy)
    assert result.passed, result.failures


def test_change_within_tolerance_passes_even_when_significant(candidate: Path, baseline: Path, tmp_path: Path) -> None:
    edit_summary(candidate, "small_cnn-max", mfr=1.04, mfr_low=1.039, mfr_high=1.041)
    result = check_run(
        candidate, baseline, write_policy(tmp_path / "policy.yaml", {"metrics": {"mfr": {"tolerance": 0.05}}})
    )
    assert result.passed


def test_relative_tolerance_and_model_list(candidate: Path, baseline: Path, tmp_path: Path) -> None:
    edit_summary(candidate, "small_cnn-max", mce=1.08, mce_low=1.079, mce_high=1.081)
    edit_summary(candidate, "small_cnn-lift", mce=1.20, mce_low=1.199, mce_high=1.201)
    policy = write_policy(
        tmp_path / "policy.yaml", {"models": ["small_cnn-max"], "metrics": {"mce": {"relative_tolerance": 0.10}}}
    )
    result = check_run(candidate, baseline, policy)
    assert result.passed and [check.model for check in result.checks] == ["small_cnn-max"]


def test_metric_the_run_lacks_is_reported_not_failed(
    candidate: Path, baseline: Path, policy: Path, tmp_path: Path
) -> None:
    summary = pd.read_csv(candidate / "summary.csv").drop(columns=["mfr", "mfr_low", "mfr_high"])
    summary.to_csv(candidate / "summary.csv", index=False)
    junit = tmp_path / "gate.xml"
    result = check_run(candidate, baseline, policy, junit_path=junit)
    assert result.passed, result.failures
    not_run = [check for check in result.checks if check.status == "not run"]
    assert [check.metric for check in not_run] == ["mfr"] * len(MODELS)
    assert "mfr not run" in result.markdown
    assert ElementTree.parse(junit).getroot().find("testsuite").get("skipped") == str(len(MODELS))


def test_metric_the_run_could_not_compute_fails(candidate: Path, baseline: Path, policy: Path) -> None:
    edit_summary(candidate, "small_cnn-lift", mfr=math.nan, mfr_low=math.nan, mfr_high=math.nan)
    result = check_run(candidate, baseline, policy)
    assert result.failures == [
        "small_cnn-lift: mfr missing from the run: no value (failed cells or no reference model?)"
    ]


def test_missing_model_fails(candidate: Path, baseline: Path, policy: Path) -> None:
    # A whole run made without one of the baseline's models (a cut-down summary.csv alone
    # is refused by read_run as truncated, see tests/test_bad_input.py).
    results, summary, record = read_run(candidate)
    record["models"].pop("small_cnn-lift")
    write_run(
        candidate, results[results["model"] != "small_cnn-lift"], summary[summary["model"] != "small_cnn-lift"], record
    )
    result = check_run(candidate, baseline, policy)
    assert any("small_cnn-lift: model missing from the run" == failure for failure in result.failures)


@pytest.mark.parametrize(
    "text, match",
    [
        ("metrics: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("metrics: {}\n", "non-empty mapping"),
        ("metrics:\n  clean_error: {tolerance: -1}\n", "non-negative"),
        ("metrics:\n  clean_error: {direction: sideways}\n", "direction"),
        ("metrics:\n  my_score: {tolerance: 0.1}\n", "not a metric the gate knows"),
        ("metrics:\n  clean_error: {tolerence: 0.1}\n", "unknown option"),
        ("thresholds: 1\nmetrics:\n  clean_error: {}\n", "unknown key"),
        ("z: 0\nmetrics:\n  clean_error: {}\n", "z must be"),
        ("models: max\nmetrics:\n  clean_error: {}\n", "models must be"),
    ],
)
def test_malformed_policy_is_user_error(candidate: Path, baseline: Path, tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=match):
        check_run(candidate, baseline, path)


def test_missing_policy_file_is_user_error(candidate: Path, baseline: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        check_run(candidate, baseline, tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "text, match",
    [
        (None, "does not exist"),
        ("", "not a baseline CSV"),
        ("# only a header\n", "not a baseline CSV"),
        ("name,score\nx,1\n", "lacks column"),
        ("model,metric,value\nsmall_cnn-max,clean_error,lots\n", "non-numeric"),
        ("model,metric,value\n", "no rows"),
        ("model,metric,value\na,clean_error,0.1\na,clean_error,0.2\n", "twice"),
    ],
)
def test_malformed_baseline_is_user_error(candidate: Path, policy: Path, tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "baseline.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError, match=match):
        check_run(candidate, path, policy)


def test_run_without_results_is_user_error(baseline: Path, policy: Path, tmp_path: Path) -> None:
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(UserError, match="holds no finished run"):
        check_run(tmp_path / "empty-run", baseline, policy)


def test_junit_xml_is_well_formed(candidate: Path, baseline: Path, policy: Path, tmp_path: Path) -> None:
    edit_summary(candidate, "odd|name <b>", clean_error=0.3, clean_error_low=0.24, clean_error_high=0.37)
    junit = tmp_path / "reports" / "gate.xml"
    check_run(candidate, baseline, policy, junit_path=junit)
    root = ElementTree.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(MODELS) * len(POLICY_METRICS)
    assert {(case.get("classname"), case.get("name")) for case in cases} == {
        (model, metric) for model in MODELS for metric in POLICY_METRICS
    }
    failed = [case for case in cases if case.find("failure") is not None]
    assert [(case.get("classname"), case.get("name")) for case in failed] == [("odd|name <b>", "clean_error")]
    assert root.find("testsuite").get("failures") == "1"


def test_step_summary_is_appended(
    candidate: Path, baseline: Path, policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary_file = tmp_path / "step_summary.md"
    summary_file.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    result = check_run(candidate, baseline, policy)
    text = summary_file.read_text()
    assert text.startswith("previous step\n") and result.markdown in text
    # A pipe in a model name must not break the Markdown table.
    assert "odd\\|name &lt;b&gt;" in result.markdown


def test_baseline_is_human_diffable_and_round_trips(baseline: Path, baseline_run: Path) -> None:
    lines = baseline.read_text().splitlines()
    assert lines[0].startswith("# robustbench-lift baseline")
    assert "# sample_size: 200" in lines
    assert "model,metric,value,low,high,n" in lines
    assert "small_cnn-max,clean_error,0.1,0.0656704,0.149406,200" in lines
    records, header = read_baseline(baseline)
    assert header["run_name"] == "baseline-run"
    pgd = records.set_index(["model", "metric"]).loc[("small_cnn-lift", "robust_accuracy_pgd_linf")]
    assert pgd["value"] == pytest.approx(0.4) and pgd["n"] == ATTACK_N


def test_update_without_per_image_data_removes_a_stale_sidecar(baseline_run: Path, tmp_path: Path) -> None:
    # Outcomes of an older baseline must never be paired with this baseline's numbers.
    sidecar = tmp_path / "quick.npz"
    sidecar.write_bytes(b"outcomes of an older run")
    write_baseline(baseline_run, tmp_path / "quick.csv")
    assert not sidecar.exists()


def test_default_policy_matches_reports_policy_yaml(policy: Path) -> None:
    assert yaml.safe_load(policy.read_text()) == DEFAULT_POLICY
    assert [rule.metric for rule in load_policy(policy).rules] == POLICY_METRICS


# ------------------------------------------------------------------ comparison


def test_compare_runs_difference_and_interval(baseline_run: Path, candidate: Path, tmp_path: Path) -> None:
    edit_summary(candidate, "small_cnn-lift", clean_error=0.12)
    comparison = build_comparison(baseline_run, candidate)
    clean = next(
        difference
        for difference in comparison.differences
        if difference.model == "small_cnn-lift" and difference.spec.name == "clean_error"
    )
    expected_error = math.sqrt(0.08 * 0.92 / N + 0.12 * 0.88 / N)
    assert clean.difference == pytest.approx(0.04)
    assert clean.standard_error == pytest.approx(expected_error)
    assert clean.low == pytest.approx(0.04 - 1.96 * expected_error)
    mce = next(
        difference
        for difference in comparison.differences
        if difference.model == "small_cnn-max" and difference.spec.name == "mce"
    )
    assert mce.standard_error == pytest.approx(math.hypot(0.06 / 3.92, 0.06 / 3.92))
    markdown_path, html_path = compare_runs(baseline_run, candidate, tmp_path / "comparison")
    markdown = markdown_path.read_text()
    assert "| small_cnn-lift | clean error | 8.00 % | 12.00 % | +4.00 pp |" in markdown
    html = html_path.read_text()
    assert "odd|name &lt;b&gt;" in html and "<b>" not in html


# ------------------------------------------------------------------ acceptance: real quick-preset runs, paired


class FlipSomePredictions(torch.nn.Module):
    """A zoo model whose prediction is moved to a wrong class on about 1 / ``modulus`` of its
    inputs: those whose uint8 pixel content hashes to 0 modulo ``modulus`` (deterministic,
    so baseline and candidate runs see the same flips on the same inputs)."""

    def __init__(self, model: torch.nn.Module, modulus: int = 20) -> None:
        super().__init__()
        self.model = model
        self.modulus = modulus

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        pixels = (images.detach() * 255).round().to(torch.uint8).cpu().numpy()
        chosen = [
            int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "little") % self.modulus == 0
            for image in pixels
        ]
        mask = torch.tensor(chosen, device=logits.device)
        wrong_class = (logits.argmax(dim=1) + 1) % logits.shape[1]
        push = torch.nn.functional.one_hot(wrong_class, logits.shape[1]).to(logits.dtype) * 1e4
        return logits + push * mask[:, None].to(logits.dtype)


def quick_corruption_run(
    output_dir: Path, run_name: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, degrade: bool
) -> Path:
    """The quick preset's corruption suite (200 images, all corruptions, severities 1 3 5)
    on small_cnn-lift and its reference small_cnn-max; ``degrade`` wraps small_cnn-lift,
    under the same name, in :class:`FlipSomePredictions`."""
    from robustbench_lift.models._factory import resolve_model as real
    from robustbench_lift.run import runner
    from robustbench_lift.run.config import RunConfig

    def resolve(name: str) -> tuple[str, torch.nn.Module, dict[str, Any]]:
        display, model, metadata = real(name)
        return (
            (display, FlipSomePredictions(model).eval(), metadata)
            if degrade and display == "small_cnn-lift-s0"
            else (display, model, metadata)
        )

    monkeypatch.setattr(runner, "resolve_model", resolve)
    config = RunConfig.quick().replace(
        models=["max", "lift"],
        suites=["corruption"],
        output_dir=str(output_dir),
        run_name=run_name,
        cache_dir=str(cache_dir),
        workers=1,
    )
    return runner.run_benchmark(config)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Baseline, degraded and unchanged quick corruption runs (the corruptions generated once)."""
    if not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST (Debian dataset-fashion-mnist) not installed")
    root = tmp_path_factory.mktemp("quick-gate")
    runs = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, degrade in (("baseline", False), ("degraded", True), ("unchanged", False)):
            runs[name] = quick_corruption_run(root / "runs", name, root / "cache", monkeypatch, degrade)
    cli.main(["check", str(runs["baseline"]), "--baseline", str(root / "baselines" / "quick.csv"), "--update-baseline"])
    runs["baseline_file"] = root / "baselines" / "quick.csv"
    return runs


@pytest.mark.slow
@pytest.mark.needs_data
def test_update_baseline_then_check_of_the_same_run_passes(
    quick_runs: dict[str, Path], policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline_file = quick_runs["baseline_file"]
    assert baseline_file.is_file() and baseline_file.with_suffix(".npz").is_file()
    code = cli.main(["check", str(quick_runs["baseline"]), "--baseline", str(baseline_file), "--policy", str(policy)])
    output = capsys.readouterr().out
    assert code == EXIT_PASSED, output
    # Paired, and the suites this run did not have are reported, not failed.
    assert "paired tests" in output and "McNemar exact" in output and "paired bootstrap" in output
    assert "| small_cnn-lift-s0 | mfr |" in output and "not run" in output


@pytest.mark.slow
@pytest.mark.needs_data
def test_five_percent_flipped_predictions_fail_the_gate(
    quick_runs: dict[str, Path], policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = {
        name: pd.read_csv(quick_runs[name] / "summary.csv").set_index("model") for name in ("baseline", "degraded")
    }
    # The wrapper changes small_cnn-lift-s0 only, by a few points of clean error.
    assert (
        summary["degraded"].loc["small_cnn-max-s0", "clean_error"]
        == summary["baseline"].loc["small_cnn-max-s0", "clean_error"]
    )
    assert (
        0.02
        < summary["degraded"].loc["small_cnn-lift-s0", "clean_error"]
        - summary["baseline"].loc["small_cnn-lift-s0", "clean_error"]
        < 0.08
    )
    code = cli.main(
        ["check", str(quick_runs["degraded"]), "--baseline", str(quick_runs["baseline_file"]), "--policy", str(policy)]
    )
    output = capsys.readouterr().out
    assert code == EXIT_REGRESSION, output
    failures = output.split("### Failures", 1)[1].split("###", 1)[0]
    assert "small_cnn-lift-s0: clean_error regressed" in failures and "McNemar exact" in failures
    assert "small_cnn-lift-s0: mce regressed" in failures
    assert "small_cnn-max-s0" not in failures


@pytest.mark.slow
@pytest.mark.needs_data
def test_unchanged_model_rerun_passes(
    quick_runs: dict[str, Path], policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        ["check", str(quick_runs["unchanged"]), "--baseline", str(quick_runs["baseline_file"]), "--policy", str(policy)]
    )
    output = capsys.readouterr().out
    assert code == EXIT_PASSED, output
    assert "0 worse, 0 better of 200 images" in output
