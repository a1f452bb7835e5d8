"""Corruption errors (ImageNet-C): CE, relative CE, mCE, and the AlexNet normaliser.

See ``docs/metrics.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from robustbench_lift.errors import UserError

__all__ = [
    "ALEXNET_IMAGENET_C",
    "ALEXNET_IMAGENET_CLEAN_ERROR",
    "ALEXNET_IMAGENET_C_ERRORS",
    "ALEXNET_IMAGENET_C_SEVERITY_ERRORS",
    "PublishedReference",
    "corruption_error",
    "corruption_summary",
    "relative_corruption_error",
]

# Published mean-over-severity top-1 errors of AlexNet on ImageNet-C (``docs/metrics.md``), as
# quoted with ImageNet-C's mCE everywhere. Kept for display and as the check of
# ALEXNET_IMAGENET_C_SEVERITY_ERRORS; computations use the per-severity table.
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

# AlexNet's top-1 error on ImageNet-C at severities 1..5: torchvision's AlexNet
# (alexnet-owt-4df8aa71, the network ImageNet-C/test.py of hendrycks/robustness evaluates)
# on the 50,000 validation images, as published per severity in the GitHub repository
# UCSC-VLAA/RobustCNN (timm/utils/imagenet_c.py). Every value is a whole number of
# images out of 50,000, and the five-severity means equal ALEXNET_IMAGENET_C_ERRORS to
# all six published decimals (tests/test_metrics.py checks both).
ALEXNET_IMAGENET_C_SEVERITY_ERRORS: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}

# The same AlexNet's clean top-1 error on the ImageNet validation set: 1 - 0.56522, the
# acc@1 torchvision publishes for those weights (AlexNet_Weights.IMAGENET1K_V1); the
# ImageNet-C paper rounds it to 43.5 %.
ALEXNET_IMAGENET_CLEAN_ERROR = 0.43478


@dataclass(frozen=True)
class PublishedReference:
    """A reference model known only from a published table: per-severity errors and clean error.

    Attributes:
        name: How results name this reference (``reference_model`` in run files).
        severity_errors: Corruption name -> top-1 errors at severities 1, 2, 3, 4, 5.
        clean_error: Top-1 error on the uncorrupted images.
    """

    name: str
    severity_errors: Mapping[str, Sequence[float]]
    clean_error: float

    def errors_at(self, corruption: str, severities: Iterable[float]) -> np.ndarray:
        """The reference's errors on ``corruption`` at ``severities`` (in the order given).

        Args:
            corruption: A corruption of the table.
            severities: Severity levels, each one of 1..5 (floats such as 3.0 are accepted).

        Returns:
            Float array with one error per severity.

        Raises:
            UserError: for a corruption the table lacks or a severity outside 1..5.
        """
        table = self.severity_errors.get(corruption)
        if table is None:
            raise UserError(f"the {self.name} reference has no errors for corruption {corruption!r}")
        values = []
        for severity in severities:
            level = float(severity)
            if not level.is_integer() or not 1 <= level <= len(table):
                raise UserError(
                    f"the {self.name} reference has no errors at severity {severity!r} (it has 1..{len(table)})"
                )
            values.append(table[int(level) - 1])
        return np.asarray(values, dtype=np.float64)


ALEXNET_IMAGENET_C = PublishedReference("alexnet", ALEXNET_IMAGENET_C_SEVERITY_ERRORS, ALEXNET_IMAGENET_CLEAN_ERROR)


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
    reference: str | PublishedReference,
    corruptions: Iterable[str],
) -> pd.DataFrame:
    """Per-model mCE, relative mCE and unnormalised mean corruption error.

    Args:
        errors: Columns model, corruption, severity, error.
        clean_errors: Model name -> clean error (relative mCE of a model missing here is NaN).
        reference: A model name present in ``errors``, or a published table
            (:data:`ALEXNET_IMAGENET_C`). Either way CE divides by the reference's errors
            at the severities the model was evaluated on, so a severity subset is
            normalised by the reference's errors at that subset.
        corruptions: The corruptions averaged into mCE.

    Returns:
        One row per model: model, mce, relative_mce, mean_corruption_error.
    """
    corruptions = list(corruptions)
    table = errors[errors["corruption"].isin(corruptions)]
    rows = []
    for model, model_table in table.groupby("model", sort=False):
        ce_values, relative_values = [], []
        for corruption in corruptions:
            model_rows = model_table[model_table["corruption"] == corruption].sort_values("severity")
            model_errors = model_rows["error"].to_numpy()
            if model_errors.size == 0:
                raise ValueError(f"model {model!r} has no results for corruption {corruption!r}")
            if isinstance(reference, PublishedReference):
                reference_errors = reference.errors_at(corruption, model_rows["severity"])
                reference_clean = reference.clean_error
            else:
                reference_table = table[(table["model"] == reference) & (table["corruption"] == corruption)]
                reference_errors = reference_table.sort_values("severity")["error"].to_numpy()
                reference_clean = clean_errors.get(reference, math.nan)
            ce_values.append(corruption_error(model_errors, reference_errors))
            relative_values.append(
                relative_corruption_error(
                    model_errors, clean_errors.get(model, math.nan), reference_errors, reference_clean
                )
            )
        rows.append(
            {
                "model": model,
                "mce": float(np.mean(ce_values)),
                "relative_mce": float(np.mean(relative_values)),
                "mean_corruption_error": float(model_table["error"].mean()),
            }
        )
    return pd.DataFrame(rows)
