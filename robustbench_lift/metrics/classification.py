"""Classification error with its interval, and how often a change of input flips a prediction."""

from __future__ import annotations

import math

import numpy as np

from robustbench_lift.metrics.statistics import wilson_interval

__all__ = ["error_with_interval", "flip_share"]


def error_with_interval(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
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
