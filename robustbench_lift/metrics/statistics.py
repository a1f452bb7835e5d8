"""Interval estimates: Wilson score intervals for proportions and percentile bootstrap intervals.

See ``docs/metrics.md`` for when each is used.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BOOTSTRAP_SAMPLES", "bootstrap_interval", "wilson_interval"]

#: Bootstrap resamples behind every bootstrap interval of a run's summary.
BOOTSTRAP_SAMPLES = 1000


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
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


def bootstrap_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples``, ignoring non-finite ones (NaN when none is finite).

    Args:
        samples: one statistic per bootstrap resample.
        confidence: the interval's coverage.

    Returns:
        (low, high).
    """
    samples = np.asarray(samples, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return (math.nan, math.nan)
    tail = 50 * (1 - confidence)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
