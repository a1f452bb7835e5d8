"""The adversarial suite: robust accuracy per attack and epsilon (foolbox 3, AutoAttack over
torchattacks), with gradient-masking checks and each attack's protocol in run.json."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.suites.base import (
    ModelEntry,
    RunContext,
    Suite,
    SuiteOutput,
    first_images,
    predict,
)
from robustbench_lift.options import ConfigView, Option

if TYPE_CHECKING:
    from robustbench_lift.evaluation.attacks import AttackSpec

__all__ = ["AdversarialSuite", "configured_attack"]

log = logging.getLogger(__name__)


class AdversarialSuite(Suite):
    """Adversarial robustness over foolbox 3 (``docs/attacks.md``), with gradient-masking checks.

    Cells: ``clean`` (predictions on the attacked images; no rows) and one per attack (a
    row per epsilon). The gradient-masking checks compare attacks, so they run in
    ``finalize`` once all of a model's cells exist.
    """

    name = "adversarial"
    description = "robust accuracy per attack and epsilon (foolbox 3), success rate, flips, median perturbation"
    options: ClassVar[Mapping[str, Option]] = {
        "attacks": Option(list[str], ["fgsm", "pgd_linf", "pgd_l2"], "attack names"),
        "attack_epsilons": Option(
            dict[str, list[float]] | None, None, "epsilons per attack (null: each attack's grid)"
        ),
        "attack_sample_size": Option(int | None, 50, "images attacked, the first of the sample"),
        "attack_options": Option(
            dict[str, dict[str, Any]] | None,
            None,
            "hyperparameters per attack, e.g. {pgd_linf: {steps: 50, restarts: 5}} (see docs/attacks.md)",
        ),
    }

    def validate(self, config: ConfigView) -> None:
        from robustbench_lift.evaluation.attacks import ATTACKS, validate_epsilons

        if config.attack_sample_size is not None and config.attack_sample_size <= 0:
            raise UserError(f"attack_sample_size must be positive, got {config.attack_sample_size}")
        for attack in config.attacks:
            ATTACKS.get(attack)
        for attack, epsilons in (config.attack_epsilons or {}).items():
            validate_epsilons(ATTACKS.get(attack).norm, epsilons)
        for attack in config.attack_options or {}:
            configured_attack(attack, config)

    def record(self, config: ConfigView, context: RunContext | None = None) -> dict[str, Any]:
        """Each attack's display label, norm, headline epsilon and protocol (library and
        version, hyperparameters, epsilons, images attacked, seed), for reports."""
        shape = _input_shape(context)
        images = config.attack_sample_size
        if context is not None:
            images = min(images or len(context.dataset), len(context.dataset))
        attacks = {}
        for name in config.attacks:
            spec = configured_attack(name, config)
            epsilons = (config.attack_epsilons or {}).get(name) or list(spec.epsilons_for(shape))
            attacks[name] = {
                "label": spec.label,
                "norm": spec.norm,
                "headline_epsilon": spec.headline_for(shape),
                "protocol": spec.protocol()
                | {
                    "epsilons": [float(epsilon) for epsilon in epsilons],
                    "sample_size": images,
                    "seed": config.seed,
                    "precision": getattr(config, "attack_precision", "fp32"),
                },
            }
        return {"attacks": attacks}

    def conditions(self, context: RunContext) -> list[str]:
        return ["clean"] + list(context.config.attacks)

    def expected_work(self, condition: str, context: RunContext) -> float:
        config = context.config
        images = min(config.attack_sample_size or len(context.dataset), len(context.dataset))
        if condition == "clean":
            return float(images)
        spec = configured_attack(condition, config)
        # A minimisation attack runs once for all epsilons, the others once per epsilon > 0.
        grid = (config.attack_epsilons or {}).get(condition) or spec.epsilons_for(_input_shape(context))
        runs = 1 if spec.minimization else max(1, sum(1 for epsilon in grid if epsilon > 0))
        return float(images * spec.expected_passes() * runs)

    def prepare(self, context: RunContext, conditions: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        images, labels, _ = first_images(context, context.config.attack_sample_size)
        return images, labels

    def evaluate_condition(
        self, entry: ModelEntry, condition: str, prepared: tuple[np.ndarray, np.ndarray], context: RunContext
    ) -> SuiteOutput:
        import torch

        from robustbench_lift.evaluation.attacks import evaluate_attack
        from robustbench_lift.evaluation.inference import to_tensor

        config = context.config
        pixels, label_array = prepared
        if condition == "clean":
            predictions = predict(entry, pixels, context)
            return SuiteOutput([], {} if predictions is None else {"clean_correct": predictions == label_array})
        spec = configured_attack(condition, config)
        epsilons = (config.attack_epsilons or {}).get(condition)
        robust_correct: dict[float, np.ndarray] = {}
        images = to_tensor(pixels)
        attack_precision = getattr(config, "attack_precision", "fp32")
        attack_rows = evaluate_attack(
            entry.model,
            images,
            torch.from_numpy(label_array),
            spec,
            epsilons,
            batch_size=config.batch_size,
            device=context.device,
            seed=config.seed,
            robust_correct=robust_correct,
            precision=attack_precision,
        )
        rows = []
        for attack_row in attack_rows:
            row = {
                "suite": self.name,
                "condition": f"{attack_row['attack']}/eps={attack_row['epsilon']:.5g}",
                "family": attack_row["attack"],
                "level": float(attack_row["epsilon"]),
            }
            row |= {key: value for key, value in attack_row.items() if key not in ("attack", "epsilon")}
            row["attack_precision"] = attack_precision
            rows.append(row)
        # Per-image outcomes at the headline epsilon (the summary's robust accuracy) for paired gates.
        headline = spec.headline_for(tuple(images.shape[1:]))
        at_headline = [correct for epsilon, correct in robust_correct.items() if np.isclose(epsilon, headline)]
        return SuiteOutput(rows, {f"{condition}/robust_correct": at_headline[0]} if at_headline else {})

    def finalize(
        self, model: str, rows: list[dict[str, Any]], per_image: dict[str, np.ndarray], context: RunContext
    ) -> list[dict[str, Any]]:
        from robustbench_lift.evaluation.attacks import sanity_warnings

        correct = per_image.get("clean_correct")
        clean_accuracy = float(correct.mean()) if correct is not None else math.nan
        views = [dict(row, attack=row["family"], epsilon=row["level"]) for row in rows]
        for warning in sanity_warnings(views, clean_accuracy):
            log.warning("%s: %s", model, warning)
        for row, view in zip(rows, views):
            if view.get("warning") != row.get("warning"):
                row["warning"] = view["warning"]
        return rows

    def summarize(
        self,
        results: pd.DataFrame,
        per_image: dict[str, dict[str, np.ndarray]],
        models: list[ModelEntry],
        context: RunContext,
    ) -> pd.DataFrame:
        table = results[results["suite"] == self.name]
        shape = _input_shape(context)
        rows = []
        for entry in models:
            row: dict[str, Any] = {"model": entry.name}
            for attack in context.config.attacks:
                spec = configured_attack(attack, context.config)
                cells = table[(table["model"] == entry.name) & (table["family"] == attack) & (table["status"] == "ok")]
                match = cells[np.isclose(cells["level"], spec.headline_for(shape))]
                column = f"robust_accuracy_{attack}"
                row[column] = float(match["robust_accuracy"].iloc[0]) if len(match) else math.nan
                row[f"{column}_low"] = float(match["robust_accuracy_low"].iloc[0]) if len(match) else math.nan
                row[f"{column}_high"] = float(match["robust_accuracy_high"].iloc[0]) if len(match) else math.nan
                if spec.minimization:
                    row[f"median_perturbation_{attack}"] = (
                        float(cells["median_perturbation"].dropna().iloc[0])
                        if cells["median_perturbation"].notna().any()
                        else math.nan
                    )
            warnings = (
                table[(table["model"] == entry.name) & table["warning"].fillna("").astype(bool)]
                if "warning" in table
                else table.iloc[0:0]
            )
            # One warning text can sit on every epsilon row of its attack: count distinct ones.
            row["adversarial_warnings"] = int(warnings["warning"].nunique()) if len(warnings) else 0
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")


def configured_attack(name: str, config: ConfigView) -> AttackSpec:
    """The registered attack ``name`` with the run's ``attack_options`` for it applied.

    Args:
        name: a registered attack.
        config: the run's configuration.

    Returns:
        The configured attack.

    Raises:
        UserError: one line for an unknown attack, option or a bad value.
    """
    from robustbench_lift.evaluation.attacks import ATTACKS

    return ATTACKS.get(name).configured((getattr(config, "attack_options", None) or {}).get(name))


def _input_shape(context: RunContext | None) -> tuple[int, int, int] | None:
    """(C, H, W) of the run's attacked inputs (uint8 N x H x W x 3 in the data set), if known."""
    shape = None if context is None else getattr(context.dataset.images, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    height, width = shape[1:3]
    return (3, int(height), int(width))
