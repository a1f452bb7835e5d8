"""Corruption errors (ImageNet-C): CE, relative CE, mCE, and the AlexNet normaliser.

See ``docs/metrics.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "ALEXNET_IMAGENET_C_ERRORS",
    "corruption_error",
    "corruption_summary",
    "relative_corruption_error",
]

# Published mean-over-severity top-1 errors of AlexNet on ImageNet-C (``docs/metrics.md``): the
# normaliser of ImageNet mCE.
ALEXNET_IMAGENET_C_ERRORS: dict[str, float] = {
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


def corruption_error(model_errors: npt.ArrayLike, reference_errors: npt.ArrayLike) -> float:
    """CE(f, c) = sum_s E(f,c,s) / sum_s E(ref,c,s) (``docs/metrics.md``)."""
    denominator = float(np.sum(reference_errors))
    return float(np.sum(model_errors)) / denominator if denominator > 0 else math.nan


def relative_corruption_error(
    model_errors: npt.ArrayLike, model_clean_error: float, reference_errors: npt.ArrayLike, reference_clean_error: float
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
