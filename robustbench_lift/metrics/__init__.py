"""Robustness metrics: pure functions of prediction arrays and result tables (numpy and pandas only).

``classification``: error with its Wilson interval, flip share; ``corruption``: CE, relative
CE, mCE and the AlexNet normaliser; ``stability``: flip probability and top-5 distance on
perturbation sequences; ``statistics``: Wilson and bootstrap intervals. Definitions are in
``docs/metrics.md``. Imports nothing from the rest of the package but the base layer, and
never torch.
"""

from __future__ import annotations

from robustbench_lift.metrics.classification import error_with_interval, flip_share
from robustbench_lift.metrics.corruption import (
    ALEXNET_IMAGENET_C,
    ALEXNET_IMAGENET_C_ERRORS,
    ALEXNET_IMAGENET_C_SEVERITY_ERRORS,
    ALEXNET_IMAGENET_CLEAN_ERROR,
    PublishedReference,
    corruption_error,
    corruption_summary,
    relative_corruption_error,
)
from robustbench_lift.metrics.stability import flip_probability, top5_distance
from robustbench_lift.metrics.statistics import BOOTSTRAP_SAMPLES, bootstrap_interval, wilson_interval

__all__ = [
    "ALEXNET_IMAGENET_C",
    "ALEXNET_IMAGENET_C_ERRORS",
    "ALEXNET_IMAGENET_C_SEVERITY_ERRORS",
    "ALEXNET_IMAGENET_CLEAN_ERROR",
    "PublishedReference",
    "BOOTSTRAP_SAMPLES",
    "bootstrap_interval",
    "corruption_error",
    "corruption_summary",
    "error_with_interval",
    "flip_probability",
    "flip_share",
    "relative_corruption_error",
    "top5_distance",
    "wilson_interval",
]
