"""The shift suite: shift consistency (Zhang 2019), the share of images classified alike under two random shifts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.suites.base import (
    ModelEntry,
    RunContext,
    Suite,
    SuiteOutput,
    failed_row,
    predict,
)
from robustbench_lift.metrics import wilson_interval
from robustbench_lift.options import ConfigView, Option

__all__ = ["ShiftSuite"]


class ShiftSuite(Suite):
    """Shift consistency (Zhang 2019): how often two random shifts of an image get the same class."""

    name = "shift"
    description = "shift consistency: same prediction under two random shifts of up to shift_max px"
    options: ClassVar[Mapping[str, Option]] = {
        "shift_max": Option(int, 4, "largest shift in px"),
    }

    def validate(self, config: ConfigView) -> None:
        if config.shift_max < 1:
            raise UserError(f"shift_max must be at least 1, got {config.shift_max}")

    def conditions(self, context: RunContext) -> list[str]:
        return [f"shift/{context.config.shift_max}px"]

    def expected_work(self, condition: str, context: RunContext) -> float:
        return 2.0 * len(context.dataset)  # two shifted copies of every image

    def prepare(
        self, context: RunContext, conditions: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from corruptions.perturbations import shift_pairs

        config = context.config
        return shift_pairs(
            context.dataset.images, max_shift=config.shift_max, seed=config.seed, indices=context.indices
        )

    def evaluate_condition(
        self,
        entry: ModelEntry,
        condition: str,
        prepared: tuple[np.ndarray, np.ndarray, np.ndarray],
        context: RunContext,
    ) -> SuiteOutput:
        config = context.config
        first, second, _ = prepared
        predictions_first = predict(entry, first, context)
        predictions_second = predict(entry, second, context)
        if predictions_first is None or predictions_second is None:
            return SuiteOutput(
                [failed_row(condition, "shift", float(config.shift_max), len(first)) | {"suite": self.name}]
            )
        same = predictions_first == predictions_second
        low, high = wilson_interval(int(same.sum()), len(same))
        row = {
            "suite": self.name,
            "condition": condition,
            "family": "shift",
            "level": float(config.shift_max),
            "status": "ok",
            "n": len(same),
            "consistency": float(same.mean()),
            "consistency_low": low,
            "consistency_high": high,
        }
        return SuiteOutput([row], {"same": same})

    def summarize(
        self,
        results: pd.DataFrame,
        per_image: dict[str, dict[str, np.ndarray]],
        models: list[ModelEntry],
        context: RunContext,
    ) -> pd.DataFrame:
        table = results[(results["suite"] == self.name) & (results["status"] == "ok")].set_index("model")
        rows = []
        for entry in models:
            if entry.name in table.index:
                found = table.loc[entry.name]
                rows.append(
                    {
                        "model": entry.name,
                        "shift_consistency": found["consistency"],
                        "shift_consistency_low": found["consistency_low"],
                        "shift_consistency_high": found["consistency_high"],
                    }
                )
            else:
                rows.append(
                    {
                        "model": entry.name,
                        "shift_consistency": math.nan,
                        "shift_consistency_low": math.nan,
                        "shift_consistency_high": math.nan,
                    }
                )
        return pd.DataFrame(rows).set_index("model")
