"""Prediction stability on perturbation sequences (ImageNet-P): flip probability and top-5 distance.

See ``docs/metrics.md`` for the difficulty rule.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["flip_probability", "top5_distance"]


def _frame_pairs(frames: int, noise: bool, difficulty: int) -> tuple[np.ndarray, np.ndarray]:
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
    """Flip probability over sequences (``docs/metrics.md``): predictions is sequences x frames."""
    predictions = np.asarray(predictions)
    earlier, later = _frame_pairs(predictions.shape[1], noise, difficulty)
    if later.size == 0:
        return math.nan
    return float((predictions[:, later] != predictions[:, earlier]).mean())


def top5_distance(logits: np.ndarray, noise: bool, difficulty: int = 1) -> float:
    """Mean top-5 distance between compared frames (``docs/metrics.md``; ImageNet-P ``ranking_dist``).

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
