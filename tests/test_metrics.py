"""Tests for the metrics of docs/metrics.md (robustbench_lift/metrics/)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustbench_lift.errors import UserError
from robustbench_lift.metrics import (
    ALEXNET_IMAGENET_C,
    ALEXNET_IMAGENET_C_ERRORS,
    ALEXNET_IMAGENET_C_SEVERITY_ERRORS,
    ALEXNET_IMAGENET_CLEAN_ERROR,
    corruption_error,
    corruption_summary,
    error_with_interval,
    flip_probability,
    flip_share,
    relative_corruption_error,
    top5_distance,
    wilson_interval,
)

Z95 = 1.959963984540054  # standard normal 97.5 % quantile


def textbook_wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


# ---------------------------------------------------------------- Wilson interval


def test_wilson_eight_of_ten() -> None:
    low, high = wilson_interval(8, 10)
    # Published value for 8/10 at 95 %: 0.4902 .. 0.9433.
    assert low == pytest.approx(0.49016, abs=1e-4)
    assert high == pytest.approx(0.94332, abs=1e-4)
    expected = textbook_wilson(8, 10)
    assert (low, high) == pytest.approx(expected, abs=1e-9)


def test_wilson_zero_of_twenty() -> None:
    low, high = wilson_interval(0, 20)
    # With no successes the upper bound is z^2/n / (1 + z^2/n).
    assert low == 0.0  # exactly: the interval must contain the observed 0
    assert high == pytest.approx((Z95**2 / 20) / (1 + Z95**2 / 20), abs=1e-9)
    assert high == pytest.approx(0.1611, abs=1e-4)


def test_wilson_all_successes_mirrors_no_successes() -> None:
    low, high = wilson_interval(20, 20)
    assert high == 1.0
    assert low == pytest.approx(1 - wilson_interval(0, 20)[1], abs=1e-12)


def test_wilson_other_confidence() -> None:
    z90 = 1.6448536269514722
    assert wilson_interval(3, 12, confidence=0.9) == pytest.approx(textbook_wilson(3, 12, z90), abs=1e-9)
    # A lower confidence gives a narrower interval.
    low90, high90 = wilson_interval(3, 12, confidence=0.9)
    low95, high95 = wilson_interval(3, 12)
    assert low95 < low90 and high90 < high95


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_bounds_are_ordered_and_inside_unit_interval(case) -> None:
    successes, n = case
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= successes / n <= high <= 1.0
    assert (low, high) == pytest.approx(textbook_wilson(successes, n), abs=1e-9)


def test_wilson_narrows_with_more_samples() -> None:
    small = wilson_interval(8, 10)
    large = wilson_interval(800, 1000)
    assert large[1] - large[0] < (small[1] - small[0]) / 5


def test_wilson_degenerate_inputs() -> None:
    assert all(math.isnan(bound) for bound in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(-1, 10)


def test_error_with_interval_counts_wrong_predictions() -> None:
    result = error_with_interval(np.array([0, 1, 2, 3, 4]), np.array([0, 1, 0, 0, 4]))
    assert result["n"] == 5 and result["errors"] == 2
    assert result["error"] == pytest.approx(0.4)
    assert (result["error_low"], result["error_high"]) == pytest.approx(textbook_wilson(2, 5), abs=1e-9)


# ---------------------------------------------------------------- flips


def test_flip_share() -> None:
    assert flip_share(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == pytest.approx(0.5)
    assert flip_share(np.array([7, 7, 7]), np.array([7, 7, 7])) == 0.0
    assert flip_share(np.array([1, 2]), np.array([2, 1])) == 1.0
    assert math.isnan(flip_share(np.array([], dtype=int), np.array([], dtype=int)))


# ---------------------------------------------------------------- CE / mCE

# Two models x two corruptions x two severities, plus a held-out corruption that must
# not enter the averages.
#             c1 s1  c1 s2  c2 s1  c2 s2   clean
# max (ref)   0.20   0.40   0.30   0.50    0.10
# lift        0.10   0.30   0.30   0.60    0.05
ERRORS = {
    ("max", "c1"): [0.20, 0.40],
    ("max", "c2"): [0.30, 0.50],
    ("lift", "c1"): [0.10, 0.30],
    ("lift", "c2"): [0.30, 0.60],
    ("max", "held_out"): [0.90, 0.90],
    ("lift", "held_out"): [0.10, 0.10],
}
CLEAN = {"max": 0.10, "lift": 0.05}

# CE(lift, c1) = (0.1 + 0.3) / (0.2 + 0.4) = 2/3; CE(lift, c2) = 0.9 / 0.8 = 1.125
LIFT_MCE = (2 / 3 + 1.125) / 2
# relative CE(lift, c1) = (0.05 + 0.25) / (0.1 + 0.3) = 0.75
# relative CE(lift, c2) = (0.25 + 0.55) / (0.2 + 0.4) = 4/3
LIFT_RELATIVE_MCE = (0.75 + 4 / 3) / 2
LIFT_MEAN_ERROR = (0.1 + 0.3 + 0.3 + 0.6) / 4
MAX_MEAN_ERROR = (0.2 + 0.4 + 0.3 + 0.5) / 4


def error_table(shuffle_seed: int = 0) -> pd.DataFrame:
    rows = [
        {"model": model, "corruption": corruption, "severity": severity, "error": error}
        for (model, corruption), errors in ERRORS.items()
        for severity, error in zip((1, 2), errors)
    ]
    # Row order must not matter (severities are matched by value).
    return pd.DataFrame(rows).sample(frac=1, random_state=shuffle_seed).reset_index(drop=True)


def test_corruption_error_by_hand() -> None:
    assert corruption_error([0.1, 0.3], [0.2, 0.4]) == pytest.approx(2 / 3)
    assert corruption_error([0.3, 0.6], [0.3, 0.5]) == pytest.approx(1.125)
    assert math.isnan(corruption_error([0.1], [0.0]))


def test_relative_corruption_error_by_hand() -> None:
    assert relative_corruption_error([0.1, 0.3], 0.05, [0.2, 0.4], 0.1) == pytest.approx(0.75)
    assert relative_corruption_error([0.3, 0.6], 0.05, [0.3, 0.5], 0.1) == pytest.approx(4 / 3)
    # A reference that does not degrade leaves the relative CE undefined.
    assert math.isnan(relative_corruption_error([0.3], 0.1, [0.1], 0.1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corruption_summary_with_a_reference_model(seed) -> None:
    summary = corruption_summary(error_table(seed), CLEAN, "max", ["c1", "c2"]).set_index("model")
    assert set(summary.index) == {"max", "lift"}
    assert summary.loc["lift", "mce"] == pytest.approx(LIFT_MCE)
    assert summary.loc["lift", "relative_mce"] == pytest.approx(LIFT_RELATIVE_MCE)
    assert summary.loc["lift", "mean_corruption_error"] == pytest.approx(LIFT_MEAN_ERROR)
    # The reference normalises itself to exactly 1.
    assert summary.loc["max", "mce"] == pytest.approx(1.0)
    assert summary.loc["max", "relative_mce"] == pytest.approx(1.0)
    assert summary.loc["max", "mean_corruption_error"] == pytest.approx(MAX_MEAN_ERROR)


def test_corruption_summary_other_reference() -> None:
    summary = corruption_summary(error_table(), CLEAN, "lift", ["c1", "c2"]).set_index("model")
    # CE(max vs lift) = (0.6/0.4 + 0.8/0.9) / 2
    assert summary.loc["max", "mce"] == pytest.approx((0.6 / 0.4 + 0.8 / 0.9) / 2)
    assert summary.loc["lift", "mce"] == pytest.approx(1.0)


def test_corruption_summary_against_alexnet_uses_the_severities_run() -> None:
    rows = [
        {"model": "net", "corruption": "gaussian_noise", "severity": 1, "error": 0.5},
        {"model": "net", "corruption": "gaussian_noise", "severity": 2, "error": 0.7},
        {"model": "net", "corruption": "brightness", "severity": 2, "error": 0.4},
        {"model": "net", "corruption": "brightness", "severity": 1, "error": 0.2},
    ]
    summary = corruption_summary(pd.DataFrame(rows), {"net": 0.1}, ALEXNET_IMAGENET_C, ["gaussian_noise", "brightness"])
    row = summary.set_index("model").loc["net"]
    # AlexNet's published errors at severities 1 and 2 (not its five-severity means):
    # gaussian_noise 0.69528, 0.82542; brightness 0.45140, 0.48502; clean 0.43478.
    expected = ((0.5 + 0.7) / (0.69528 + 0.82542) + (0.2 + 0.4) / (0.45140 + 0.48502)) / 2
    assert row["mce"] == pytest.approx(expected, rel=1e-12)
    expected_relative = (
        (0.4 + 0.6) / (0.69528 + 0.82542 - 2 * 0.43478) + (0.1 + 0.3) / (0.45140 + 0.48502 - 2 * 0.43478)
    ) / 2
    assert row["relative_mce"] == pytest.approx(expected_relative, rel=1e-12)
    assert row["mean_corruption_error"] == pytest.approx(0.45)


@pytest.mark.parametrize("severities", [(1, 2, 3, 4, 5), (1, 3, 5), (2,), (4, 5)])
def test_a_model_with_alexnets_errors_has_mce_and_relative_mce_of_one(severities: tuple[int, ...]) -> None:
    rows = [
        {"model": "alexnet-copy", "corruption": name, "severity": severity, "error": errors[severity - 1]}
        for name, errors in ALEXNET_IMAGENET_C_SEVERITY_ERRORS.items()
        for severity in severities
    ]
    clean = {"alexnet-copy": ALEXNET_IMAGENET_CLEAN_ERROR}
    summary = corruption_summary(pd.DataFrame(rows), clean, ALEXNET_IMAGENET_C, ALEXNET_IMAGENET_C_ERRORS)
    row = summary.set_index("model").loc["alexnet-copy"]
    assert row["mce"] == pytest.approx(1.0, rel=1e-12)
    assert row["relative_mce"] == pytest.approx(1.0, rel=1e-12)


def test_relative_mce_is_empty_without_the_models_clean_error() -> None:
    rows = [{"model": "net", "corruption": "fog", "severity": 3, "error": 0.5}]
    row = corruption_summary(pd.DataFrame(rows), {}, ALEXNET_IMAGENET_C, ["fog"]).iloc[0]
    assert row["mce"] == pytest.approx(0.5 / 0.84378)
    assert math.isnan(row["relative_mce"])


def test_alexnet_per_severity_table_reproduces_the_published_means() -> None:
    assert list(ALEXNET_IMAGENET_C_SEVERITY_ERRORS) == list(ALEXNET_IMAGENET_C_ERRORS)
    for name, errors in ALEXNET_IMAGENET_C_SEVERITY_ERRORS.items():
        assert len(errors) == 5, name
        # Whole numbers of the 50,000 ImageNet validation images ...
        counts = np.asarray(errors) * 50_000
        assert np.allclose(counts, np.round(counts), atol=1e-6), name
        # ... whose mean is the published mean to all six published decimals.
        assert round(sum(errors) / 5, 6) == ALEXNET_IMAGENET_C_ERRORS[name], name
    assert round(ALEXNET_IMAGENET_CLEAN_ERROR * 50_000) == 21_739  # torchvision acc@1 56.522 %
    assert round(100 * ALEXNET_IMAGENET_CLEAN_ERROR, 1) == 43.5  # the ImageNet-C paper's figure


def test_published_reference_refuses_what_it_does_not_have() -> None:
    assert ALEXNET_IMAGENET_C.errors_at("snow", [3.0, 1]).tolist() == [0.86468, 0.71726]
    with pytest.raises(UserError, match="severity 6"):
        ALEXNET_IMAGENET_C.errors_at("snow", [6])
    with pytest.raises(UserError, match="severity 2.5"):
        ALEXNET_IMAGENET_C.errors_at("snow", [2.5])
    with pytest.raises(UserError, match="spatter"):
        ALEXNET_IMAGENET_C.errors_at("spatter", [1])


def test_alexnet_table_matches_the_spec() -> None:
    assert ALEXNET_IMAGENET_C_ERRORS == {
        "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
        "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
        "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
        "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
        "pixelate": 0.717840, "jpeg_compression": 0.606500,
    }  # fmt: skip


def test_corruption_summary_refuses_a_missing_corruption() -> None:
    with pytest.raises(ValueError, match="c3"):
        corruption_summary(error_table(), CLEAN, "max", ["c1", "c3"])


# --- ImageNet-P stability metrics on hand-built sequences (docs/metrics.md) ---------------------


def test_flip_probability_noise_rule_compares_with_the_first_frame() -> None:
    predictions = np.array([[0, 0, 1, 0, 2]])
    assert flip_probability(predictions, noise=True) == pytest.approx(2 / 4)
    # Difficulty does not change the noise rule (it selects the noise strength instead).
    assert flip_probability(predictions, noise=True, difficulty=3) == pytest.approx(2 / 4)


def test_flip_probability_consecutive_rule_and_difficulty_steps() -> None:
    predictions = np.array([[0, 0, 1, 0, 2]])
    assert flip_probability(predictions, noise=False, difficulty=1) == pytest.approx(3 / 4)  # 0-0, 0-1, 1-0, 0-2
    assert flip_probability(predictions, noise=False, difficulty=2) == pytest.approx(2 / 3)  # 0-1, 0-0, 1-2
    assert np.isnan(flip_probability(predictions, noise=False, difficulty=5))
    with pytest.raises(ValueError):
        flip_probability(predictions, noise=False, difficulty=0)


def test_flip_probability_averages_sequences_equally() -> None:
    predictions = np.array([[1, 1, 1], [1, 2, 3]])
    assert flip_probability(predictions, noise=False) == pytest.approx((0 + 1) / 2)


def _frame(order: list[int]) -> np.ndarray:
    """Logits over 10 classes whose ranking (best first) is ``order``."""
    logits = np.zeros(10)
    for rank, label in enumerate(order):
        logits[label] = 10 - rank
    return logits


BASE = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
SWAPPED_TOP_TWO = [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]
TOP_DROPS_TO_LAST = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_top5_distance_hand_computed_cases() -> None:
    same = np.stack([_frame(BASE), _frame(BASE)])[None]
    assert top5_distance(same, noise=False) == 0
    swapped = np.stack([_frame(BASE), _frame(SWAPPED_TOP_TWO)])[None]
    assert top5_distance(swapped, noise=False) == 2  # |0-1| + |1-0|
    dropped = np.stack([_frame(BASE), _frame(TOP_DROPS_TO_LAST)])[None]
    assert top5_distance(dropped, noise=False) == 9  # |0-5| + 4 x |k-(k-1)|


def test_top5_distance_noise_rule_versus_consecutive_rule() -> None:
    frames = np.stack([_frame(BASE), _frame(SWAPPED_TOP_TWO), _frame(SWAPPED_TOP_TWO)])[None]
    assert top5_distance(frames, noise=True) == pytest.approx((2 + 2) / 2)  # both against frame 1
    assert top5_distance(frames, noise=False) == pytest.approx((2 + 0) / 2)  # neighbours
    assert top5_distance(frames, noise=False, difficulty=2) == pytest.approx(2)  # frame 1 vs frame 3
