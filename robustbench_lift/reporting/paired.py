"""Paired tests of a candidate run against a baseline, from their per-image outcomes.

Baseline and candidate evaluated on the same images (same data set, split, sample size
and seed: the same sample digest) differ only on the images whose outcome changed, so
each gate metric is tested on those:

- proportions (clean error, shift consistency, robust accuracy, one condition's error):
  McNemar's exact test on the discordant images;
- statistics over many conditions (mean corruption error, mCE, relative mCE, mFR, mT5D):
  a paired bootstrap that resamples the same image (or sequence) indices for baseline
  and candidate, reference model included, and counts the resamples in which the
  candidate is not worse.

Each test returns a one-sided p-value for "the candidate is worse"; the gate fails a
metric when the change exceeds its tolerance and p < alpha. Metric definitions are
those of the suites (``docs/metrics.md``), recomputed here from the stored per-image arrays;
:func:`paired_test` returns the recomputed values so the gate can confirm they match
summary.csv before trusting the pairing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robustbench_lift.metrics import ALEXNET_IMAGENET_C_ERRORS
from robustbench_lift.metrics.statistics import bootstrap_p_value, bootstrap_weights, mcnemar_test
from robustbench_lift.per_image import PerImage

__all__ = ["BOOTSTRAP_SAMPLES", "PairedResult", "Unpairable", "metric_value", "paired_test"]

#: Resamples of the paired bootstrap: the smallest p-value it can give is 1 / 2001.
BOOTSTRAP_SAMPLES = 2000


class Unpairable(Exception):
    """The per-image data cannot answer this metric; the message says why."""


@dataclass(frozen=True)
class PairedResult:
    """A paired test of one model x metric."""

    method: str  # "McNemar exact" or "paired bootstrap"
    baseline_value: float  # the metric recomputed from the baseline's per-image data
    candidate_value: float
    p_value: float  # one-sided: small when the candidate is worse
    detail: str  # e.g. "9 worse, 0 better of 200 images"


# A test: (baseline, candidate, direction, seed, bootstrap samples) -> result.
_Test = Callable[["_Side", "_Side", str, int, int], PairedResult]


@dataclass(frozen=True)
class _Side:
    data: PerImage
    model: str


def _array(side: _Side, suite: str, name: str) -> np.ndarray:
    array = side.data.get(side.model, suite, name)
    if array is None:
        raise Unpairable(f"no per-image {suite}/{name} for {side.model}")
    return array


def _same_length(*arrays: np.ndarray) -> int:
    lengths = {array.size for array in arrays}
    if len(lengths) != 1:
        raise Unpairable(f"per-image arrays of different lengths {sorted(lengths)}")
    return lengths.pop()


def _proportion(suite: str, name: str) -> _Test:
    """A metric that is the share of images where the bool array ``name`` is True (clean
    error: ``clean``, wrong; robust accuracy: ``robust_correct``; shift consistency: ``same``)."""

    def test(baseline: _Side, candidate: _Side, direction: str, seed: int, samples: int) -> PairedResult:
        base, cand = _array(baseline, suite, name), _array(candidate, suite, name)
        n = _same_length(base, cand)
        # An image is worse off when it turns True for a lower-is-better share, False otherwise.
        bad_is_true = direction == "lower"
        outcome = mcnemar_test(base == bad_is_true, cand == bad_is_true)
        return PairedResult(
            "McNemar exact",
            float(base.mean()),
            float(cand.mean()),
            outcome.p_value,
            f"{outcome.worse} worse, {outcome.better} better of {n} images",
        )

    return test


def _stacked(side: _Side, suite: str, names: list[str]) -> np.ndarray:
    arrays = [_array(side, suite, name) for name in names]
    _same_length(*arrays)
    return np.stack(arrays).astype(np.float64)


def _corruption_statistic(metric: str, side: _Side, weights: np.ndarray) -> np.ndarray:
    """mCE, relative mCE or mean corruption error of one run under each resample's weights."""
    meta = side.data.suite_meta("corruption")
    common, severities = list(meta.get("common") or []), list(meta.get("severities") or [])
    if not common or not severities:
        raise Unpairable("the per-image data name no common corruptions")
    conditions = [f"{name}/{severity}" for name in common for severity in severities]
    shape = (weights.shape[0], len(common), len(severities))
    errors = weights @ _stacked(side, "corruption", conditions).T
    if metric == "mean_corruption_error":
        return errors.mean(axis=1)
    reference = (meta.get("references") or {}).get(side.model)
    if not reference:
        raise Unpairable(f"{side.model} has no reference model for {metric}")
    with np.errstate(divide="ignore", invalid="ignore"):
        if reference == "alexnet":
            if metric != "mce":
                raise Unpairable("relative mCE needs a reference model, not the AlexNet table")
            published = np.array([ALEXNET_IMAGENET_C_ERRORS[name] for name in common])
            return (errors.reshape(shape).mean(axis=2) / published).mean(axis=1)
        reference_side = _Side(side.data, reference)
        reference_errors = weights @ _stacked(reference_side, "corruption", conditions).T
        if metric == "mce":
            ratios = errors.reshape(shape).sum(axis=2) / reference_errors.reshape(shape).sum(axis=2)
        else:
            clean = weights @ _stacked(side, "corruption", ["clean"])[0]
            reference_clean = weights @ _stacked(reference_side, "corruption", ["clean"])[0]
            ratios = (errors - clean[:, None]).reshape(shape).sum(axis=2) / (
                reference_errors - reference_clean[:, None]
            ).reshape(shape).sum(axis=2)
        ratios[~np.isfinite(ratios)] = np.nan
        # A NaN ratio makes the suite's mean NaN too: keep that (np.mean, not nanmean).
        return ratios.mean(axis=1)


def _stability_statistic(metric: str, side: _Side, weights: np.ndarray) -> np.ndarray:
    """mFR or mT5D of one run under each resample's weights over sequences."""
    meta = side.data.suite_meta("perturbation")
    main = list(meta.get("main") or [])
    reference = (meta.get("references") or {}).get(side.model)
    if not main or not reference:
        raise Unpairable(f"the per-image data name no main perturbations or no reference model of {side.model}")
    key = "flips" if metric == "mfr" else "top5"
    usable = [name for name in main if side.data.get(side.model, "perturbation", f"{name}/{key}") is not None]
    if not usable:
        raise Unpairable(f"no per-sequence {key} data for {side.model}")
    own = weights @ _stacked(side, "perturbation", [f"{name}/{key}" for name in usable]).T
    theirs = weights @ _stacked(_Side(side.data, reference), "perturbation", [f"{name}/{key}" for name in usable]).T
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(theirs > 0, own / theirs, np.nan)
        # As the suite does: a perturbation on which the reference never flips is left out
        # (a resample where it never flips on any is NaN, and ignored by the test).
        finite = np.isfinite(ratios)
        return np.where(finite, ratios, 0.0).sum(axis=1) / finite.sum(axis=1)


def _bootstrap(suite: str, statistic: Callable[[str, _Side, np.ndarray], np.ndarray], metric: str, unit: str) -> _Test:
    def test(baseline: _Side, candidate: _Side, direction: str, seed: int, samples: int) -> PairedResult:
        n = _resample_count(baseline, candidate, suite)
        point = np.full((1, n), 1.0 / n)
        with np.errstate(invalid="ignore"):
            base_value, cand_value = (
                float(statistic(metric, baseline, point)[0]),
                float(statistic(metric, candidate, point)[0]),
            )
            if not samples:
                return PairedResult("paired bootstrap", base_value, cand_value, math.nan, "not resampled")
            weights = _weights(n, samples, seed)
            change = statistic(metric, candidate, weights) - statistic(metric, baseline, weights)
        worse_by = change if direction == "lower" else -change
        return PairedResult(
            "paired bootstrap",
            base_value,
            cand_value,
            bootstrap_p_value(worse_by),
            f"{samples} resamples of the same {n} {unit}",
        )

    return test


@functools.lru_cache(maxsize=8)
def _weights(n: int, samples: int, seed: int) -> np.ndarray:
    # Every model and metric of one check uses the same resamples of the same images.
    weights = bootstrap_weights(n, samples, seed)
    weights.flags.writeable = False
    return weights


def _resample_count(baseline: _Side, candidate: _Side, suite: str) -> int:
    lengths = {
        array.size
        for side in (baseline, candidate)
        for (model, array_suite, _), array in side.data.arrays.items()
        if array_suite == suite and model == side.model
    }
    if not lengths:
        raise Unpairable(f"no per-image {suite} data")
    if len(lengths) != 1:
        raise Unpairable(f"per-image {suite} arrays of different lengths {sorted(lengths)}")
    return lengths.pop()


_TESTS: dict[str, _Test] = {
    "clean_error": _proportion("corruption", "clean"),
    "shift_consistency": _proportion("shift", "same"),
    "mean_corruption_error": _bootstrap("corruption", _corruption_statistic, "mean_corruption_error", "images"),
    "mce": _bootstrap("corruption", _corruption_statistic, "mce", "images"),
    "relative_mce": _bootstrap("corruption", _corruption_statistic, "relative_mce", "images"),
    "mfr": _bootstrap("perturbation", _stability_statistic, "mfr", "sequences"),
    "mt5d": _bootstrap("perturbation", _stability_statistic, "mt5d", "sequences"),
}


def metric_value(metric: str, model: str, data: PerImage) -> float:
    """``model``'s ``metric`` recomputed from per-image data alone (no test).

    Raises:
        Unpairable: the metric has no paired test or the data cannot answer it.
    """
    return paired_test(metric, model, data, data, "lower", samples=0).baseline_value


def _test_for(metric: str) -> _Test | None:
    if metric in _TESTS:
        return _TESTS[metric]
    if metric.startswith("robust_accuracy_"):
        return _proportion("adversarial", f"{metric[len('robust_accuracy_') :]}/robust_correct")
    return None


def paired_test(
    metric: str,
    model: str,
    baseline: PerImage,
    candidate: PerImage,
    direction: str,
    seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
) -> PairedResult:
    """The paired test of ``model``'s ``metric``, candidate against baseline.

    Args:
        metric: a summary.csv metric column.
        model: the model (same name in both).
        baseline: the baseline's per-image data (its sidecar).
        candidate: the candidate run's per-image data.
        direction: "lower" or "higher" is better.
        seed: seeds the bootstrap resamples.
        samples: bootstrap resamples (0: values only, p-value NaN).

    Returns:
        The test result with the recomputed values of both sides.

    Raises:
        Unpairable: the metric has no paired test or the data cannot answer it.
    """
    test = _test_for(metric)
    if test is None:
        raise Unpairable(f"{metric} has no paired test")
    try:
        result = test(_Side(baseline, model), _Side(candidate, model), direction, seed, samples)
    except ValueError as error:  # arrays that do not line up (matrix shapes)
        raise Unpairable(f"per-image data of {metric} do not line up: {error}") from None
    if not (math.isfinite(result.baseline_value) and math.isfinite(result.candidate_value)):
        raise Unpairable(f"{metric} cannot be recomputed from the per-image data")
    return result
