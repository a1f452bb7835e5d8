"""The corruption suite's mCE and relative mCE against the published AlexNet errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustbench_lift.evaluation.suites.corruption import CorruptionSuite
from robustbench_lift.metrics import (
    ALEXNET_IMAGENET_C_SEVERITY_ERRORS,
    ALEXNET_IMAGENET_CLEAN_ERROR,
)
from robustbench_lift.run.config import RunConfig

IMAGES = 50_000  # ImageNet's validation set: AlexNet's published errors are counts of it
COMMON = ["gaussian_noise", "snow", "brightness"]


def wrong_flags(count: int) -> np.ndarray:
    flags = np.zeros(IMAGES, dtype=bool)
    flags[:count] = True
    return flags


def summarize(wrong_counts: dict[str, list[int]], clean_count: int, severities: list[int]) -> dict[str, float]:
    """The suite's summary of one model whose misclassified-image counts are given."""
    model = "net"
    images = {"clean": wrong_flags(clean_count)}
    rows = []
    for name, counts in wrong_counts.items():
        for severity, count in zip(severities, counts):
            images[f"{name}/{severity}"] = wrong_flags(count)
            rows.append(
                {
                    "model": model,
                    "family": name,
                    "level": float(severity),
                    "error": count / IMAGES,
                }
            )
    clean_table = pd.DataFrame({"error": [clean_count / IMAGES]}, index=pd.Index([model], name="model"))
    weights = np.random.default_rng(0).multinomial(IMAGES, np.full(IMAGES, 1 / IMAGES), size=20) / IMAGES
    config = RunConfig(severities=severities, reference_model="alexnet")
    return CorruptionSuite()._model_summary(
        model,
        "alexnet",
        pd.DataFrame(rows),
        clean_table,
        COMMON,
        {model: images},
        config,
        weights,
    )


@pytest.mark.parametrize("severities", [[1, 2, 3, 4, 5], [1, 3, 5]])
def test_a_model_that_errs_like_alexnet_scores_one(severities: list[int]) -> None:
    counts = {
        name: [round(ALEXNET_IMAGENET_C_SEVERITY_ERRORS[name][severity - 1] * IMAGES) for severity in severities]
        for name in COMMON
    }
    out = summarize(counts, round(ALEXNET_IMAGENET_CLEAN_ERROR * IMAGES), severities)
    assert out["mce"] == pytest.approx(1.0, rel=1e-12)
    assert out["relative_mce"] == pytest.approx(1.0, rel=1e-12)
    assert out["mce_low"] <= 1.0 <= out["mce_high"]
    assert out["relative_mce_low"] <= 1.0 <= out["relative_mce_high"]


def test_a_severity_subset_is_normalised_by_alexnets_errors_there() -> None:
    counts = {
        "gaussian_noise": [20_000, 30_000, 40_000],
        "snow": [10_000, 20_000, 25_000],
        "brightness": [15_000, 16_000, 20_000],
    }
    out = summarize(counts, 12_000, [1, 3, 5])
    # AlexNet at severities 1, 3, 5 (published): gaussian_noise 0.69528 0.93554 0.99452,
    # snow 0.71726 0.86468 0.94952, brightness 0.45140 0.54048 0.72440; clean 0.43478.
    alexnet = {
        "gaussian_noise": (0.69528, 0.93554, 0.99452),
        "snow": (0.71726, 0.86468, 0.94952),
        "brightness": (0.45140, 0.54048, 0.72440),
    }
    ce = [sum(counts[name]) / IMAGES / sum(alexnet[name]) for name in COMMON]
    relative = [(sum(counts[name]) / IMAGES - 3 * 0.24) / (sum(alexnet[name]) - 3 * 0.43478) for name in COMMON]
    assert out["mce"] == pytest.approx(np.mean(ce), rel=1e-12)
    assert out["relative_mce"] == pytest.approx(np.mean(relative), rel=1e-12)
    assert out["mce_low"] <= out["mce"] <= out["mce_high"]
    assert out["relative_mce_low"] <= out["relative_mce"] <= out["relative_mce_high"]
