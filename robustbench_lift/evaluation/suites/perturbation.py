"""The perturbation suite: ImageNet-P-style flip probability, mFR and mT5D on perturbation sequences."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from robustbench_lift.errors import UserError, corruption_input
from robustbench_lift.evaluation.suites.base import (
    ModelEntry,
    RunContext,
    Suite,
    SuiteOutput,
    failed_row,
    first_images,
    reference_model,
)
from robustbench_lift.evaluation.suites.base import logits as model_logits
from robustbench_lift.evaluation.suites.cache import published_positions
from robustbench_lift.evaluation.suites.corruption import select_names
from robustbench_lift.metrics import BOOTSTRAP_SAMPLES, bootstrap_interval, flip_probability, top5_distance
from robustbench_lift.options import ConfigView, Option

__all__ = ["PerturbationSuite", "selected_perturbations"]

log = logging.getLogger(__name__)


def selected_perturbations(config: ConfigView) -> list[str]:
    """The perturbation names a config asks for, validated."""
    from corruptions import perturbations

    return select_names(
        config.perturbations, ("main", "extra", "all"), perturbations.perturbation_names, "perturbation"
    )


class PerturbationSuite(Suite):
    """ImageNet-P-style stability: flip probability, flip rate, top-5 distance (``docs/metrics.md``).

    Needs no labels. Cells: ``<perturbation>/d<difficulty>``. Frames are generated once per
    run (or read from ``perturbation_data``) and shared by all models.
    """

    name = "perturbation"
    description = "flip probability / flip rate (mFR) and top-5 distance (mT5D) on perturbation sequences"
    options: ClassVar[Mapping[str, Option]] = {
        "perturbations": Option(str | list[str], "all", "perturbation names, or main / extra / all"),
        "difficulty": Option(int, 1, "compare frames this far apart (noise: strength 1..3)"),
        "perturbation_sample_size": Option(int | None, 100, "sequences, from the first images of the sample"),
        "perturbation_data": Option(str | None, None, "a pre-made perturbation set to read instead of generating"),
        "perturbation_layout": Option(str | None, None, "layout of perturbation_data (null: detect it)"),
    }

    def validate(self, config: ConfigView) -> None:
        from corruptions.perturbations import validate_difficulty

        if config.difficulty < 1:
            raise UserError(f"difficulty must be at least 1, got {config.difficulty}")
        if config.perturbation_sample_size is not None and config.perturbation_sample_size <= 0:
            raise UserError(f"perturbation_sample_size must be positive, got {config.perturbation_sample_size}")
        if config.perturbation_data is not None and not Path(config.perturbation_data).is_dir():
            raise UserError(f"perturbation_data {config.perturbation_data} is not a folder")
        if config.perturbation_layout is not None and config.perturbation_data is None:
            raise UserError("perturbation_layout needs perturbation_data (the folder to read)")
        with corruption_input():
            validate_difficulty(selected_perturbations(config), config.difficulty, config.profile)

    def conditions(self, context: RunContext) -> list[str]:
        return [f"{name}/d{context.config.difficulty}" for name in selected_perturbations(context.config)]

    def expected_work(self, condition: str, context: RunContext) -> float:
        from corruptions.perturbations import frame_count

        sequences = min(context.config.perturbation_sample_size or len(context.dataset), len(context.dataset))
        return float(sequences * frame_count(condition.split("/")[0], context.config.profile))

    def prepared_conditions(self, prepared: dict[str, np.ndarray], context: RunContext) -> list[str]:
        return [f"{name}/d{context.config.difficulty}" for name in prepared]

    def prepare(self, context: RunContext, conditions: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        from corruptions import perturbations

        config = context.config
        names = (
            selected_perturbations(config)
            if conditions is None
            else [condition.rsplit("/", 1)[0] for condition in conditions]
        )
        images, _, indices = first_images(context, config.perturbation_sample_size)
        if not names:
            return {}
        if config.perturbation_data:
            from robustbench_lift.data.published import load_perturbation_set

            positions = published_positions(config.perturbation_data, config.perturbation_layout, indices)
            sequences = load_perturbation_set(
                config.perturbation_data, config.perturbation_layout, names, config.difficulty, positions
            )
            for name, array in sequences.items():
                if array.shape[0] != len(images) or array.shape[2:] != images.shape[1:]:
                    raise UserError(
                        f"perturbation_data {config.perturbation_data}: {name} holds {array.shape}, expected {len(images)} sequences of {images.shape[1:]} frames"
                    )
            log.info("read %d perturbations from %s", len(sequences), config.perturbation_data)
            return sequences
        return perturbations.perturb_many(
            images,
            names,
            profile=config.profile,
            difficulty=config.difficulty,
            seed=config.seed,
            indices=indices,
            workers=config.workers,
            progress=True,
        )

    def evaluate_condition(
        self, entry: ModelEntry, condition: str, prepared: dict[str, np.ndarray], context: RunContext
    ) -> SuiteOutput:
        from corruptions.perturbations import NOISE_PERTURBATIONS

        config = context.config
        name = condition.rsplit("/", 1)[0]
        sequences = prepared[name]
        count, frames = sequences.shape[:2]
        logits = model_logits(entry, sequences.reshape(-1, *sequences.shape[2:]), context)
        if not bool(logits.isfinite().all()):
            return SuiteOutput([failed_row(condition, name, float(config.difficulty), count) | {"suite": self.name}])
        logits_array = logits.numpy().reshape(count, frames, -1)
        predictions = logits_array.argmax(2)
        noise = name in NOISE_PERTURBATIONS
        per_sequence_flips = np.array(
            [flip_probability(predictions[i : i + 1], noise, config.difficulty) for i in range(count)]
        )
        per_sequence_distance = np.array(
            [top5_distance(logits_array[i : i + 1], noise, config.difficulty) for i in range(count)]
        )
        row = {
            "suite": self.name,
            "condition": condition,
            "family": name,
            "level": float(config.difficulty),
            "status": "ok",
            "n": count,
            "frames": frames,
            "flip_probability": flip_probability(predictions, noise, config.difficulty),
            "top5_distance": top5_distance(logits_array, noise, config.difficulty),
        }
        return SuiteOutput([row], {f"{name}/flips": per_sequence_flips, f"{name}/top5": per_sequence_distance})

    def per_image_record(self, models: list[ModelEntry], context: RunContext) -> dict[str, Any]:
        """The perturbations mFR / mT5D average over and each model's reference."""
        from corruptions.perturbations import MAIN_PERTURBATIONS

        config = context.config
        return {
            "main": [name for name in selected_perturbations(config) if name in MAIN_PERTURBATIONS],
            "difficulty": config.difficulty,
            "references": {entry.name: self._reference(entry, models, config) for entry in models},
        }

    @staticmethod
    def _reference(entry: ModelEntry, models: list[ModelEntry], config: ConfigView) -> str | None:
        # The AlexNet table has no flip rates: with it, mFR and mT5D stay empty.
        return reference_model(entry, models, config) if config.reference_model != "alexnet" else None

    def summarize(
        self,
        results: pd.DataFrame,
        per_image: dict[str, dict[str, np.ndarray]],
        models: list[ModelEntry],
        context: RunContext,
    ) -> pd.DataFrame:
        from corruptions.perturbations import MAIN_PERTURBATIONS

        config = context.config
        main = [name for name in selected_perturbations(config) if name in MAIN_PERTURBATIONS]
        table = results[(results["suite"] == self.name) & (results["status"] == "ok")]
        rng = np.random.default_rng(config.seed + 1)
        summary = []
        for entry in models:
            row: dict[str, Any] = {"model": entry.name}
            model_table = table[table["model"] == entry.name].set_index("family")
            usable = [name for name in main if name in model_table.index]
            row["mean_flip_probability"] = (
                float(model_table.loc[usable, "flip_probability"].mean()) if usable else math.nan
            )
            row["mean_top5_distance"] = float(model_table.loc[usable, "top5_distance"].mean()) if usable else math.nan
            row |= {
                "mfr": math.nan,
                "mfr_low": math.nan,
                "mfr_high": math.nan,
                "mt5d": math.nan,
                "mt5d_low": math.nan,
                "mt5d_high": math.nan,
            }
            reference = self._reference(entry, models, config)
            reference_table = table[table["model"] == reference].set_index("family") if reference else None
            if (
                reference is not None
                and reference_table is not None
                and usable
                and all(name in reference_table.index for name in usable)
            ):
                own, theirs = per_image.get(entry.name, {}), per_image.get(reference, {})
                for metric, key, column in (("mfr", "flips", "flip_probability"), ("mt5d", "top5", "top5_distance")):
                    # A perturbation on which the reference never flips gives no ratio; it is
                    # left out of the mean (and counted in mfr_perturbations) rather than
                    # turning the whole mFR infinite.
                    reference_values = reference_table.loc[usable, column].to_numpy()
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ratios = np.where(
                            reference_values > 0, model_table.loc[usable, column].to_numpy() / reference_values, np.nan
                        )
                    row[metric] = float(np.nanmean(ratios)) if np.isfinite(ratios).any() else math.nan
                    row[f"{metric}_perturbations"] = int(np.isfinite(ratios).sum())
                    # Paired bootstrap over sequences for the interval.
                    count = len(own[f"{usable[0]}/{key}"])
                    draws = rng.integers(0, count, size=(BOOTSTRAP_SAMPLES, count))
                    model_means = np.stack([own[f"{name}/{key}"][draws].mean(axis=1) for name in usable], axis=1)
                    reference_means = np.stack([theirs[f"{name}/{key}"][draws].mean(axis=1) for name in usable], axis=1)
                    # On small samples some resamples have no perturbation the reference flips
                    # on: their ratio is NaN (dropped by bootstrap_interval), not a warning.
                    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
                        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
                        samples = np.nanmean(
                            np.where(reference_means > 0, model_means / reference_means, np.nan), axis=1
                        )
                    row[f"{metric}_low"], row[f"{metric}_high"] = bootstrap_interval(samples)
            summary.append(row)
        return pd.DataFrame(summary).set_index("model")
