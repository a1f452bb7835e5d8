"""Paired tests of the gate: McNemar's exact test, the paired bootstrap, the per-image file
format, and the gate's use of them, on hand-built per-image outcomes (TEST FIXTURES)."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_lift.errors import UserError
from robustbench_lift.metrics import corruption_summary
from robustbench_lift.metrics.statistics import bootstrap_p_value, bootstrap_weights, mcnemar_test, one_sided_alpha
from robustbench_lift.per_image import PerImage, read_per_image, sidecar_path, write_per_image
from robustbench_lift.reporting.gate import (
    CONDITION_ERRORS,
    FAILED,
    NO_BASELINE,
    NOT_RUN,
    PASSED,
    Pairing,
    evaluate_gate,
    policy_from_mapping,
)
from robustbench_lift.reporting.paired import Unpairable, paired_test

N = 200
COMMON = ["gaussian_noise", "contrast", "fog"]
SEVERITIES = [1, 3, 5]
MAIN = ["gaussian_noise", "rotate"]


# ------------------------------------------------------------------ statistics


def test_mcnemar_counts_discordant_images_and_gives_the_exact_binomial_tail() -> None:
    baseline = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    candidate = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    outcome = mcnemar_test(baseline, candidate)
    assert (outcome.worse, outcome.better, outcome.n) == (3, 1, 10)
    # P(X >= 3 | X ~ Binomial(4, 1/2)) = 5/16
    assert outcome.p_value == pytest.approx(5 / 16)
    assert outcome.change == pytest.approx(0.2)
    assert mcnemar_test(baseline, baseline).p_value == 1.0
    # Six images worse and none better is the smallest count below alpha 0.025.
    assert (
        mcnemar_test(np.zeros(N, bool), np.arange(N) < 5).p_value
        > 0.025
        > mcnemar_test(np.zeros(N, bool), np.arange(N) < 6).p_value
    )


def test_mcnemar_refuses_unpaired_shapes() -> None:
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        mcnemar_test(np.zeros(3, bool), np.zeros(4, bool))


def test_bootstrap_weights_are_seeded_resamples() -> None:
    weights = bootstrap_weights(50, 300, seed=4)
    assert weights.shape == (300, 50)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert np.allclose(weights * 50, np.round(weights * 50))  # counts / n
    assert np.array_equal(weights, bootstrap_weights(50, 300, seed=4))
    assert not np.array_equal(weights, bootstrap_weights(50, 300, seed=5))


def test_bootstrap_p_value() -> None:
    assert bootstrap_p_value(np.zeros(99)) == 1.0
    assert bootstrap_p_value(np.full(99, 0.1)) == pytest.approx(1 / 100)
    assert bootstrap_p_value(np.array([0.1, -0.1, np.nan, 0.2])) == pytest.approx(2 / 4)
    assert math.isnan(bootstrap_p_value(np.array([np.nan])))
    assert one_sided_alpha(1.96) == pytest.approx(0.025, abs=1e-4)


# ------------------------------------------------------------------ per-image outcomes (fixtures)


def outcomes(seed: int = 0, flip: float = 0.0, flip_seed: int = 99, clean_too: bool = True) -> PerImage:
    """Per-image outcomes of two models, max (the reference) and lift, in every suite's format;
    ``flip`` turns that share of lift's correct images wrong (a degraded candidate), on clean
    images as well unless ``clean_too`` is False."""
    rng = np.random.default_rng(seed)
    flips = np.random.default_rng(flip_seed)
    arrays: dict[tuple[str, str, str], np.ndarray] = {}
    for model, base_error in (("max", 0.12), ("lift", 0.09)):
        degrade = flip if model == "lift" else 0.0

        def wrong(error: float, degrade: float = degrade) -> np.ndarray:
            return (rng.random(N) < error) | (flips.random(N) < degrade)

        arrays[(model, "corruption", "clean")] = wrong(base_error, degrade if clean_too else 0.0)
        for name in COMMON + ["spatter"]:
            for severity in SEVERITIES:
                arrays[(model, "corruption", f"{name}/{severity}")] = wrong(base_error + 0.06 * severity)
        for name in MAIN:
            arrays[(model, "perturbation", f"{name}/flips")] = rng.random(50) * 0.1 + degrade
            arrays[(model, "perturbation", f"{name}/top5")] = rng.random(50) + degrade
        arrays[(model, "shift", "same")] = ~wrong(0.1)
        arrays[(model, "adversarial", "pgd_linf/robust_correct")] = ~wrong(0.6)[:50]
    references = {"max": "max", "lift": "max"}
    meta = {
        "sample_digest": "d" * 64,
        "suites": {
            "corruption": {"common": COMMON, "severities": SEVERITIES, "references": references},
            "perturbation": {"main": MAIN, "references": references},
        },
    }
    return PerImage(arrays, meta)


def test_per_image_file_round_trips_without_pickle(tmp_path: Path) -> None:
    data = outcomes()
    data.arrays[("max", "corruption", "clean/predictions")] = np.arange(N)  # integers stay in the store
    path = write_per_image(tmp_path / "per_image.npz", data)
    read = read_per_image(path)
    assert read.sample_digest == data.sample_digest and read.models == ["max", "lift"]
    assert ("max", "corruption", "clean/predictions") not in read.arrays
    for key, array in data.arrays.items():
        if key[2].endswith("/predictions"):
            continue
        assert read.arrays[key].dtype == (bool if array.dtype == bool else np.float64)
        assert np.allclose(read.arrays[key], array, atol=1e-7)
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert archive["a0"].dtype == np.uint8
    assert read.subset(["lift"]).models == ["lift"]
    assert sidecar_path("reports/baselines/quick.csv") == Path("reports/baselines/quick.npz")


@pytest.mark.parametrize("content", [b"not a zip", None])
def test_unreadable_per_image_file_is_user_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "per_image.npz"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("index.npy", b"garbage")
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match="unreadable"):
        read_per_image(path)


# ------------------------------------------------------------------ recomputed metrics and paired tests


def _errors_frame(data: PerImage) -> pd.DataFrame:
    rows = [
        {"model": model, "corruption": name.split("/")[0], "severity": int(name.split("/")[1]), "error": array.mean()}
        for (model, suite, name), array in data.arrays.items()
        if suite == "corruption" and name != "clean"
    ]
    return pd.DataFrame(rows)


def test_recomputed_corruption_metrics_match_the_suite_definitions() -> None:
    data = outcomes()
    clean = {model: data.get(model, "corruption", "clean").mean() for model in ("max", "lift")}
    expected = corruption_summary(_errors_frame(data), clean, "max", COMMON).set_index("model").loc["lift"]
    for metric in ("mce", "relative_mce", "mean_corruption_error"):
        result = paired_test(metric, "lift", data, data, "lower")
        assert result.baseline_value == pytest.approx(
            expected[metric]
            if metric != "mean_corruption_error"
            else _errors_frame(data).query("corruption in @COMMON and model == 'lift'")["error"].mean()
        )
        assert result.p_value == 1.0  # identical outcomes are never worse


def test_recomputed_mfr_matches_its_definition() -> None:
    data = outcomes()
    ratios = [
        data.get("lift", "perturbation", f"{name}/flips").mean()
        / data.get("max", "perturbation", f"{name}/flips").mean()
        for name in MAIN
    ]
    assert paired_test("mfr", "lift", data, data, "lower").baseline_value == pytest.approx(np.mean(ratios))


@pytest.mark.parametrize(
    "metric",
    [
        "clean_error",
        "mce",
        "relative_mce",
        "mean_corruption_error",
        "mfr",
        "mt5d",
        "shift_consistency",
        "robust_accuracy_pgd_linf",
    ],
)
def test_a_degraded_candidate_is_significantly_worse(metric: str) -> None:
    direction = "higher" if metric in ("shift_consistency", "robust_accuracy_pgd_linf") else "lower"
    # Relative mCE grows only when corrupted errors grow more than the clean error.
    baseline, candidate = (
        outcomes(clean_too=metric != "relative_mce"),
        outcomes(flip=0.15, clean_too=metric != "relative_mce"),
    )
    result = paired_test(metric, "lift", baseline, candidate, direction, seed=1)
    assert result.p_value < 0.01, result
    worse_by = result.candidate_value - result.baseline_value
    assert (worse_by > 0) if direction == "lower" else (worse_by < 0)
    # The same change read the other way round is an improvement.
    assert paired_test(metric, "lift", candidate, baseline, direction, seed=1).p_value > 0.5


def test_paired_test_says_why_it_cannot_pair() -> None:
    data = outcomes()
    with pytest.raises(Unpairable, match="no paired test"):
        paired_test("mean_flip_probability", "lift", data, data, "lower")
    with pytest.raises(Unpairable, match="robust_correct"):
        paired_test("robust_accuracy_fgsm", "lift", data, data, "higher")
    shorter = PerImage(
        {key: (array[:100] if key[1] == "corruption" else array) for key, array in data.arrays.items()}, data.meta
    )
    with pytest.raises(Unpairable, match="lengths"):
        paired_test("clean_error", "lift", data, shorter, "lower")


# ------------------------------------------------------------------ the gate on paired data


def _records(data: PerImage) -> pd.DataFrame:
    """Metric records whose values are the ones the per-image data give (what a run stores)."""
    rows = []
    for model in ("max", "lift"):
        for metric in ("clean_error", "mce", "mfr"):
            rows.append(
                {
                    "model": model,
                    "metric": metric,
                    "value": paired_test(metric, model, data, data, "lower").baseline_value,
                    "low": math.nan,
                    "high": math.nan,
                    "n": N if metric == "clean_error" else math.nan,
                }
            )
    return pd.DataFrame(rows)


def _gate(
    baseline: PerImage, candidate: PerImage, policy: dict, pairing: Pairing | None = None
) -> dict[tuple[str, str], object]:
    pairing = pairing or Pairing(baseline, candidate, "", 0)
    checks = evaluate_gate(_records(candidate), _records(baseline), policy_from_mapping(policy), pairing)
    return {(check.model, check.metric): check for check in checks}


def test_gate_fails_a_degraded_model_paired_and_passes_the_unchanged_one() -> None:
    policy = {"metrics": {"clean_error": {"tolerance": 0.02}, "mce": {"tolerance": 0.05}, "mfr": {"tolerance": 0.05}}}
    degraded = _gate(outcomes(), outcomes(flip=0.06), policy)
    assert (
        degraded[("lift", "clean_error")].status == FAILED and "McNemar exact" in degraded[("lift", "clean_error")].test
    )
    assert degraded[("lift", "mce")].status == FAILED and "paired bootstrap" in degraded[("lift", "mce")].test
    assert degraded[("max", "clean_error")].status == PASSED
    unchanged = _gate(outcomes(), outcomes(), policy)
    assert all(check.status == PASSED for check in unchanged.values())


def test_alpha_decides_significance() -> None:
    # A change beyond the tolerance whose p-value lies between a strict and a loose alpha.
    baseline, candidate = outcomes(), outcomes(flip=0.03)
    check = _gate(baseline, candidate, {"metrics": {"clean_error": {"tolerance": 0.0}}})[("lift", "clean_error")]
    assert 0.001 < check.p_value < 0.2, check.p_value
    strict = _gate(baseline, candidate, {"alpha": check.p_value / 2, "metrics": {"clean_error": {"tolerance": 0.0}}})[
        ("lift", "clean_error")
    ]
    loose = _gate(
        baseline, candidate, {"alpha": min(0.99, check.p_value * 2), "metrics": {"clean_error": {"tolerance": 0.0}}}
    )[("lift", "clean_error")]
    assert (strict.status, loose.status) == (PASSED, FAILED)
    with pytest.raises(UserError, match="not both"):
        policy_from_mapping({"z": 2, "alpha": 0.05, "metrics": {"clean_error": {}}})
    with pytest.raises(UserError, match="alpha must be"):
        policy_from_mapping({"alpha": 1.5, "metrics": {"clean_error": {}}})


def test_condition_errors_name_the_failing_condition() -> None:
    baseline = outcomes()
    arrays = dict(baseline.arrays)
    broken = arrays[("lift", "corruption", "fog/3")].copy()
    broken[np.flatnonzero(~broken)[:30]] = True  # fog/3 alone: +15 pp
    arrays[("lift", "corruption", "fog/3")] = broken
    candidate = PerImage(arrays, baseline.meta)
    checks = _gate(baseline, candidate, {"metrics": {CONDITION_ERRORS: {"tolerance": 0.05}}})
    assert checks[("lift", CONDITION_ERRORS)].status == FAILED
    assert (
        "fog/3" in checks[("lift", CONDITION_ERRORS)].message
        and "Bonferroni over 12" in checks[("lift", CONDITION_ERRORS)].test
    )
    assert checks[("max", CONDITION_ERRORS)].status == PASSED
    unpaired = _gate(
        baseline, candidate, {"metrics": {CONDITION_ERRORS: {"tolerance": 0.05}}}, Pairing(reason="no sidecar")
    )
    assert unpaired[("lift", CONDITION_ERRORS)].status == NO_BASELINE


def test_different_images_fall_back_to_the_unpaired_test(tmp_path: Path) -> None:
    baseline_file = tmp_path / "quick.csv"
    run = tmp_path / "run"
    write_per_image(sidecar_path(baseline_file), outcomes())
    other = outcomes()
    other.meta["sample_digest"] = "e" * 64
    write_per_image(run / "per_image.npz", other)
    pairing = Pairing.load(baseline_file, run, seed=0)
    assert not pairing.paired and "different images" in pairing.reason
    write_per_image(run / "per_image.npz", outcomes())
    assert Pairing.load(baseline_file, run, seed=0).paired
    sidecar_path(baseline_file).unlink()
    assert "no per-image sidecar" in Pairing.load(baseline_file, run, seed=0).reason


def test_metric_not_in_the_run_is_reported_not_failed() -> None:
    baseline = outcomes()
    records = _records(baseline)
    checks = evaluate_gate(
        records[records["metric"] != "mfr"],
        records,
        policy_from_mapping({"metrics": {"mfr": {}, "clean_error": {}}}),
        Pairing(baseline, baseline, "", 0),
    )
    statuses = {(check.model, check.metric): check.status for check in checks}
    assert statuses[("lift", "mfr")] == NOT_RUN and statuses[("lift", "clean_error")] == PASSED
