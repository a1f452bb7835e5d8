"""Interval estimates (Wilson score intervals for proportions, percentile bootstrap intervals) and
paired tests of two evaluations of the same images (McNemar's exact test, paired bootstrap).

See ``docs/metrics.md`` for when each is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "McNemar",
    "bootstrap_interval",
    "bootstrap_p_value",
    "bootstrap_weights",
    "mcnemar_test",
    "one_sided_alpha",
    "wilson_interval",
]

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


# ------------------------------------------------------------------ paired tests
# A baseline and a candidate evaluated on the same images differ only where their per-image
# outcomes differ, so their difference is far less noisy than two independent samples suggest.


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of a candidate against a baseline on the same images.

    ``worse``: images bad for the candidate only; ``better``: bad for the baseline only;
    ``p_value``: one-sided, P(at least ``worse`` of the ``worse + better`` discordant
    images go the candidate's way against it | either way is equally likely).
    """

    worse: int
    better: int
    n: int
    p_value: float

    @property
    def change(self) -> float:
        """Change in the share of bad images (candidate - baseline)."""
        return (self.worse - self.better) / self.n if self.n else math.nan


def mcnemar_test(baseline_bad: np.ndarray, candidate_bad: np.ndarray) -> McNemar:
    """One-sided exact McNemar test that the candidate has more bad images than the baseline.

    Args:
        baseline_bad: per image, True where the baseline's outcome is bad (wrong, not
            robust, inconsistent).
        candidate_bad: the same for the candidate, on the same images in the same order.

    Returns:
        The discordant counts and the exact binomial p-value (1 when nothing differs).
    """
    baseline_bad = np.asarray(baseline_bad, dtype=bool)
    candidate_bad = np.asarray(candidate_bad, dtype=bool)
    if baseline_bad.shape != candidate_bad.shape or baseline_bad.ndim != 1:
        raise ValueError(f"paired outcomes need equal 1-d shapes, got {baseline_bad.shape} and {candidate_bad.shape}")
    worse = int((candidate_bad & ~baseline_bad).sum())
    better = int((baseline_bad & ~candidate_bad).sum())
    p_value = 1.0
    if worse:
        from scipy.stats import binomtest

        p_value = float(binomtest(worse, worse + better, 0.5, alternative="greater").pvalue)
    return McNemar(worse, better, int(baseline_bad.size), p_value)


def bootstrap_weights(n: int, samples: int, seed: int) -> np.ndarray:
    """Resampling weights for a paired bootstrap over ``n`` images.

    Row b holds how often each image is drawn in resample b, divided by ``n``; a
    statistic that is a mean of per-image values becomes ``weights @ values``. Using the
    same rows for baseline and candidate pairs them.

    Args:
        n: number of images (or sequences).
        samples: number of resamples.
        seed: seeds the draws.

    Returns:
        A ``samples x n`` float array whose rows sum to 1.
    """
    if n < 1 or samples < 1:
        raise ValueError(f"need at least one image and one resample, got n={n}, samples={samples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1 / n), size=samples).astype(np.float64) / n


def bootstrap_p_value(worse_by: np.ndarray) -> float:
    """One-sided bootstrap p-value that a change is not a worsening.

    Args:
        worse_by: per resample, how much worse the candidate is than the baseline (> 0:
            worse); non-finite resamples (a ratio over zero) are ignored.

    Returns:
        ``(1 + #{worse_by <= 0}) / (1 + resamples)``, the share of resamples in which the
        candidate is not worse: below alpha exactly when the one-sided percentile interval
        of the change excludes 0. NaN when no resample is finite.
    """
    worse_by = np.asarray(worse_by, dtype=np.float64)
    finite = worse_by[np.isfinite(worse_by)]
    if finite.size == 0:
        return math.nan
    # A tiny tolerance: float round-off of an identical value must count as "not worse".
    return float((1 + np.count_nonzero(finite <= 1e-12)) / (1 + finite.size))


def one_sided_alpha(z: float) -> float:
    """The one-sided false-alarm rate of a ``z`` standard-error threshold (1.96 -> 0.025)."""
    return 0.5 * math.erfc(z / math.sqrt(2))
