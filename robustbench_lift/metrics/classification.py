"""Robustness metrics of SPEC §3, §4 and §6: error rates with Wilson intervals, CE/mCE,
flip shares, flip probability and top-5 distance.

Everything here is a pure function of prediction arrays or result tables, so reports
and checks can recompute nothing but read these numbers.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Mapping, Sequence, Tuple

import numpy as np
import pandas as pd

# Published mean-over-severity top-1 errors of AlexNet on ImageNet-C (SPEC §3): the
# normaliser of ImageNet mCE.
ALEXNET_IMAGENET_C_ERRORS: Dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Preferred over the normal approximation because it stays inside [0, 1] and behaves
    at proportions near 0 or 1, which robust accuracies often are.
    """
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    z = _normal_quantile(0.5 + confidence / 2)
    proportion = successes / n
    denominator = 1 + z * z / n
    centre = (proportion + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(proportion * (1 - proportion) / n + z * z / (4 * n * n)) / denominator
    # The interval always contains the proportion; clamping keeps rounding (0/n giving a
    # lower bound of 1e-17) from excluding it.
    return (max(0.0, min(proportion, centre - half_width)), min(1.0, max(proportion, centre + half_width)))


def _normal_quantile(probability: float) -> float:
    # statistics.NormalDist is exact enough and keeps scipy out of this module.
    from statistics import NormalDist

    return NormalDist().inv_cdf(probability)


def error_with_interval(predictions: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Top-1 error, its count and 95 % Wilson interval."""
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    n = int(labels.shape[0])
    wrong = int((predictions != labels).sum())
    low, high = wilson_interval(wrong, n)
    return {"n": n, "errors": wrong, "error": wrong / n if n else math.nan, "error_low": low, "error_high": high}


def flip_share(predictions: np.ndarray, reference_predictions: np.ndarray) -> float:
    """Share of inputs whose prediction differs from the reference (clean) prediction."""
    predictions = np.asarray(predictions)
    return float((predictions != np.asarray(reference_predictions)).mean()) if predictions.size else math.nan


def corruption_error(model_errors: Sequence[float], reference_errors: Sequence[float]) -> float:
    """CE(f, c) = sum_s E(f,c,s) / sum_s E(ref,c,s) (SPEC §3)."""
    denominator = float(np.sum(reference_errors))
    return float(np.sum(model_errors)) / denominator if denominator > 0 else math.nan


def relative_corruption_error(
    model_errors: Sequence[float], model_clean_error: float, reference_errors: Sequence[float], reference_clean_error: float
) -> float:
    """Relative CE: sum_s (E(f,c,s) - E(f,clean)) / sum_s (E(ref,c,s) - E(ref,clean))."""
    numerator = float(np.sum(np.asarray(model_errors) - model_clean_error))
    denominator = float(np.sum(np.asarray(reference_errors) - reference_clean_error))
    return numerator / denominator if denominator != 0 else math.nan


def corruption_summary(
    errors: pd.DataFrame,
    clean_errors: Mapping[str, float],
    reference: str | Mapping[str, float],
    corruptions: Iterable[str],
) -> pd.DataFrame:
    """Per-model mCE, relative mCE and unnormalised mean corruption error.

    ``errors`` has columns model, corruption, severity, error. ``reference`` is either a
    model name present in ``errors`` or a table of mean-over-severity reference errors
    (the AlexNet table); relative mCE needs a model reference and is NaN otherwise.
    """
    corruptions = list(corruptions)
    table = errors[errors["corruption"].isin(corruptions)]
    rows = []
    for model, model_table in table.groupby("model", sort=False):
        ce_values, relative_values = [], []
        for corruption in corruptions:
            model_errors = model_table[model_table["corruption"] == corruption].sort_values("severity")["error"].to_numpy()
            if model_errors.size == 0:
                raise ValueError(f"model {model!r} has no results for corruption {corruption!r}")
            if isinstance(reference, str):
                reference_table = table[(table["model"] == reference) & (table["corruption"] == corruption)]
                reference_errors = reference_table.sort_values("severity")["error"].to_numpy()
                ce_values.append(corruption_error(model_errors, reference_errors))
                relative_values.append(
                    relative_corruption_error(model_errors, clean_errors[model], reference_errors, clean_errors[reference])
                )
            else:
                # A published table gives one mean error per corruption: scale it to the
                # same number of severities so the ratio is of means.
                reference_errors = np.full(model_errors.size, reference[corruption])
                ce_values.append(corruption_error(model_errors, reference_errors))
                relative_values.append(math.nan)
        rows.append(
            {
                "model": model,
                "mce": float(np.mean(ce_values)),
                "relative_mce": float(np.mean(relative_values)),
                "mean_corruption_error": float(model_table["error"].mean()),
            }
        )
    return pd.DataFrame(rows)


def _frame_pairs(frames: int, noise: bool, difficulty: int) -> Tuple[np.ndarray, np.ndarray]:
    """(earlier, later) frame positions compared by the ImageNet-P stability metrics.

    Noise sequences compare every later frame with the first; the others compare each
    frame with the one ``difficulty`` frames before it.
    """
    if difficulty < 1:
        raise ValueError(f"difficulty must be at least 1, got {difficulty}")
    if noise:
        later = np.arange(1, frames)
        return np.zeros_like(later), later
    later = np.arange(difficulty, frames)
    return later - difficulty, later


def flip_probability(predictions: np.ndarray, noise: bool, difficulty: int = 1) -> float:
    """Flip probability over sequences (SPEC §4): predictions is sequences x frames."""
    predictions = np.asarray(predictions)
    earlier, later = _frame_pairs(predictions.shape[1], noise, difficulty)
    if later.size == 0:
        return math.nan
    return float((predictions[:, later] != predictions[:, earlier]).mean())


def top5_distance(logits: np.ndarray, noise: bool, difficulty: int = 1) -> float:
    """Mean top-5 distance between compared frames (SPEC §4; ImageNet-P ``ranking_dist``).

    For the top-5 classes of the earlier frame, in its order k = 0..4, the distance sums
    |k - min(r_k, 5)| where r_k is the class's 0-based rank in the later frame: 0 when
    the top-5 list is unchanged, larger the more it is reordered or replaced.
    ``logits`` is sequences x frames x classes.
    """
    logits = np.asarray(logits)
    earlier, later = _frame_pairs(logits.shape[1], noise, difficulty)
    if later.size == 0:
        return math.nan
    # rank[s, f, c]: 0-based rank of class c in frame f (ties broken by class order, as
    # scipy's "ordinal" ranking does).
    order = np.argsort(-logits, axis=2, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(logits.shape[2])[None, None, :], axis=2)
    top = order[:, earlier, :5]  # classes ranked 0..4 in the earlier frame
    later_rank = np.take_along_axis(rank[:, later, :], top, axis=2)
    distance = np.abs(np.arange(top.shape[2])[None, None, :] - np.minimum(later_rank, 5)).sum(axis=2)
    return float(distance.mean())
