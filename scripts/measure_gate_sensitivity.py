"""Measures, per gate metric, the smallest regression the paired gate detects reliably.

The regression is the one of the gate's acceptance test: a wrapper that moves the
prediction of a share k of its inputs to a wrong class (arg max + 1, by adding a large
logit). For every k of a grid and several random draws of which inputs are hit, the
script builds the degraded model's per-image outcomes, gates them against the run's own
(the baseline) under the policy, and reports the share of draws that fail each metric.
"Detected reliably" = at least 90 % of the draws fail.

Outcomes are exact for the corruption, shift and perturbation suites: the model's
predictions (corruption: from the run's store.sqlite; shift and perturbation: recomputed
on the regenerated inputs, logits included for the top-5 distance) get the wrapper's
change applied in numpy. For robust accuracy the adversarial outcome of a hit input turns
wrong and the attack itself is not rerun (the wrapper's added logit has no gradient).

    .venv/bin/python scripts/measure_gate_sensitivity.py reports/quick --model lift
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from robustbench_lift.per_image import FILE_NAME, PerImage, read_per_image  # noqa: E402
from robustbench_lift.reporting.gate import (  # noqa: E402
    CONDITION_ERRORS,
    FAILED,
    Pairing,
    evaluate_gate,
    load_policy,
    policy_from_mapping,
)
from robustbench_lift.reporting.paired import Unpairable, metric_value  # noqa: E402
from robustbench_lift.results import read_run  # noqa: E402

# Measured besides the policy's metrics, with tolerance 0 (significance alone) unless the policy names them.
EXTRA_METRICS = ["relative_mce", "mean_corruption_error", "mt5d", CONDITION_ERRORS]
RELIABLE = 0.9
PUSH = 1e4  # the added logit: large enough to win the arg max


def _flip_predictions(predictions: np.ndarray, hit: np.ndarray, classes: int) -> np.ndarray:
    return np.where(hit, (predictions + 1) % classes, predictions)


def _push_logits(logits: np.ndarray, hit: np.ndarray) -> np.ndarray:
    pushed = logits.copy()
    target = (logits.argmax(axis=-1) + 1) % logits.shape[-1]
    np.put_along_axis(
        pushed,
        target[..., None],
        np.take_along_axis(logits, target[..., None], axis=-1) + PUSH * hit[..., None],
        axis=-1,
    )
    return pushed


class Outcomes:
    """The undegraded model's raw outputs, computed once, and the degraded outcomes for a draw."""

    def __init__(self, run: Path, model_spec: str, baseline: PerImage) -> None:
        from robustbench_lift.data.datasets import load_dataset
        from robustbench_lift.evaluation.inference import predict_logits
        from robustbench_lift.evaluation.suites import SUITES, RunContext
        from robustbench_lift.models._factory import resolve_model
        from robustbench_lift.run.config import config_from_mapping
        from robustbench_lift.run.store import Store

        _, _, record = read_run(run)
        config = config_from_mapping({key: value for key, value in record["config"].items()} | {"device": "cpu"})
        self.name, model, _ = resolve_model(model_spec)
        full = load_dataset(config.dataset, config.split, config.data_dir, config.download)
        dataset, indices = full.sample(config.sample_size, config.seed)
        self.classes = len(full.classes)
        self.labels = dataset.labels
        self.baseline = baseline
        context = RunContext(config, dataset, indices, device="cpu")
        self.difficulty = config.difficulty

        # Corruption: the stored predictions of every condition (a copy: never touch the run's store).
        self.predictions: dict[str, np.ndarray] = {}
        if "corruption" in config.suites:
            with tempfile.TemporaryDirectory() as folder:
                copy = Path(folder) / "store.sqlite"
                shutil.copyfile(run / "store.sqlite", copy)
                store = Store(copy)
                conditions = SUITES.get("corruption").conditions(context)
                cells = store.load((self.name, "corruption", condition) for condition in conditions)
                store.close()
            for (_, _, condition), cell in cells.items():
                if f"{condition}/predictions" in cell.per_image:
                    self.predictions[condition] = cell.per_image[f"{condition}/predictions"]
        # Shift and perturbation: regenerate the inputs and run the model once.
        self.shift: tuple[np.ndarray, np.ndarray] | None = None
        if "shift" in config.suites:
            first, second, _ = SUITES.get("shift").prepare(context)
            self.shift = tuple(
                predict_logits(model, images, config.batch_size, "cpu").numpy().argmax(1) for images in (first, second)
            )
        self.sequences: dict[str, np.ndarray] = {}
        if "perturbation" in config.suites:
            suite = SUITES.get("perturbation")
            for name, frames in suite.prepare(context, suite.conditions(context)).items():
                count, length = frames.shape[:2]
                self.sequences[name] = (
                    predict_logits(model, frames.reshape(-1, *frames.shape[2:]), config.batch_size, "cpu")
                    .numpy()
                    .reshape(count, length, -1)
                )

    def degraded(self, share: float, rng: np.random.Generator) -> PerImage:
        """The baseline's outcomes with this model's replaced by those of the degraded wrapper."""
        from corruptions.perturbations import NOISE_PERTURBATIONS
        from robustbench_lift.metrics import flip_probability, top5_distance

        arrays = dict(self.baseline.arrays)
        for condition, predictions in self.predictions.items():
            arrays[(self.name, "corruption", condition)] = (
                _flip_predictions(predictions, rng.random(predictions.size) < share, self.classes) != self.labels
            )
        if self.shift is not None:
            first, second = (
                _flip_predictions(predictions, rng.random(predictions.size) < share, self.classes)
                for predictions in self.shift
            )
            arrays[(self.name, "shift", "same")] = first == second
        for name, logits in self.sequences.items():
            pushed = _push_logits(logits, rng.random(logits.shape[:2]) < share)
            noise = name in NOISE_PERTURBATIONS
            predictions = pushed.argmax(2)
            arrays[(self.name, "perturbation", f"{name}/flips")] = np.array(
                [flip_probability(predictions[i : i + 1], noise, self.difficulty) for i in range(len(pushed))]
            )
            arrays[(self.name, "perturbation", f"{name}/top5")] = np.array(
                [top5_distance(pushed[i : i + 1], noise, self.difficulty) for i in range(len(pushed))]
            )
        for (model, suite, key), correct in self.baseline.arrays.items():
            if model == self.name and suite == "adversarial" and key.endswith("/robust_correct"):
                arrays[(model, suite, key)] = correct & ~(rng.random(correct.size) < share)
        return PerImage(arrays, self.baseline.meta)


def _records(data: PerImage, model: str, metrics: list[str]) -> pd.DataFrame:
    rows = []
    for metric in metrics:
        try:
            value = metric_value(metric, model, data)
        except Unpairable:
            continue
        rows.append({"model": model, "metric": metric, "value": value, "low": np.nan, "high": np.nan, "n": np.nan})
    return pd.DataFrame(rows, columns=["model", "metric", "value", "low", "high", "n"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run", type=Path, help="a finished run with per_image.npz and store.sqlite (e.g. reports/quick)"
    )
    parser.add_argument("--model", default="lift", help="the model to degrade (a spec of the run, default lift)")
    parser.add_argument("--policy", type=Path, default=ROOT / "reports" / "policy.yaml")
    parser.add_argument(
        "--shares",
        type=float,
        nargs="+",
        default=[1, 2, 3, 4, 5, 6, 8, 10, 15, 20],
        help="shares of flipped predictions, in percent",
    )
    parser.add_argument("--draws", type=int, default=20, help="random draws of the hit inputs per share")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)

    started = time.perf_counter()
    baseline = read_per_image(arguments.run / FILE_NAME)
    outcomes = Outcomes(arguments.run, arguments.model, baseline)
    policy = load_policy(arguments.policy)
    rules = {rule.metric: rule for rule in policy.rules}
    metrics = list(rules) + [metric for metric in EXTRA_METRICS if metric not in rules]
    mapping = {
        "alpha": policy.alpha,
        "metrics": {
            metric: {
                "direction": rules[metric].direction,
                "tolerance": rules[metric].tolerance,
                "relative_tolerance": rules[metric].relative_tolerance,
            }
            if metric in rules
            else {}
            for metric in metrics
        },
        "models": [outcomes.name],
    }
    gate_policy = policy_from_mapping(mapping, "measurement policy")
    baseline_records = _records(baseline, outcomes.name, metrics)
    rng = np.random.default_rng(arguments.seed)
    failures: dict[str, list[float]] = {metric: [] for metric in metrics}
    changes: dict[str, list[float]] = {metric: [] for metric in metrics}
    for share in arguments.shares:
        failed = {metric: 0 for metric in metrics}
        change = {metric: [] for metric in metrics}
        for _ in range(arguments.draws):
            candidate = outcomes.degraded(share / 100, rng)
            checks = evaluate_gate(
                _records(candidate, outcomes.name, metrics),
                baseline_records,
                gate_policy,
                Pairing(baseline, candidate, "", arguments.seed),
            )
            for check in checks:
                failed[check.metric] += check.status == FAILED
                change[check.metric].append(check.value - check.baseline)
        for metric in metrics:
            failures[metric].append(failed[metric] / arguments.draws)
            finite = [value for value in change[metric] if np.isfinite(value)]
            changes[metric].append(float(np.mean(finite)) if finite else np.nan)
        print(
            f"share {share:g} %: " + ", ".join(f"{metric} {failed[metric]}/{arguments.draws}" for metric in metrics),
            file=sys.stderr,
            flush=True,
        )

    print(
        f"Gate sensitivity: {outcomes.name} of {arguments.run}, policy {arguments.policy} (alpha {policy.alpha:.3g}), {arguments.draws} draws per share, {time.perf_counter() - started:.0f} s\n"
    )
    print(
        "| metric | tolerance | smallest share of flipped predictions failing >= 90 % of draws | mean change at that share | share of draws failing, per flipped share ("
        + " / ".join(f"{share:g}" for share in arguments.shares)
        + " %) |"
    )
    print("|---|---|---:|---:|---|")
    for metric in metrics:
        rule = gate_policy.rules[metrics.index(metric)]
        tolerance = (
            f"{100 * rule.tolerance:g} pp"
            if rule.tolerance
            else (f"{100 * rule.relative_tolerance:g} %" if rule.relative_tolerance else "0 (significance only)")
        )
        if not any(np.isfinite(changes[metric])):
            print(f"| {metric} | {tolerance} | not in the run | — | — |")
            continue
        reliable = [index for index, rate in enumerate(failures[metric]) if rate >= RELIABLE]
        smallest = f"{arguments.shares[reliable[0]]:g} %" if reliable else f"> {arguments.shares[-1]:g} %"
        at = (
            f"{100 * changes[metric][reliable[0]]:+.1f} pp"
            if reliable and np.isfinite(changes[metric][reliable[0]])
            else "—"
        )
        rates = " / ".join(
            f"{rate:.2f}".rstrip("0").rstrip(".") if rate not in (0, 1) else str(int(rate)) for rate in failures[metric]
        )
        print(f"| {metric} | {tolerance} | {smallest} | {at} | {rates} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
