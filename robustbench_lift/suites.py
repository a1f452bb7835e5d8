"""Evaluation suites: each prepares its inputs once per run and evaluates any model on them.

A suite is a small class over :class:`Suite`: ``prepare`` builds what all models share
(corrupted images, perturbation frames), ``evaluate`` turns one model's predictions into
result rows (one per condition), ``summarize`` turns the run's rows into per-model
columns of ``summary.csv``. The runner knows nothing suite-specific.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from robustbench_lift.config import RunConfig, selected_corruptions
from robustbench_lift.datasets import ImageDataset
from robustbench_lift.inference import predict_logits
from robustbench_lift.metrics import ALEXNET_IMAGENET_C_ERRORS, corruption_summary, error_with_interval, flip_share
from robustbench_lift.registry import Registry

log = logging.getLogger(__name__)

BOOTSTRAP_SAMPLES = 1000


@dataclass
class RunContext:
    """What every suite of a run sees: the config and the sampled clean data."""

    config: RunConfig
    dataset: ImageDataset
    indices: np.ndarray  # positions of the sampled images in the full split; they seed corruptions


@dataclass
class ModelEntry:
    """A model under evaluation with its name and metadata."""

    name: str
    model: nn.Module
    metadata: Dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("architecture", "unknown"))

    @property
    def pooling(self) -> str:
        return str(self.metadata.get("pooling", "unknown"))


@dataclass
class SuiteOutput:
    """One model's rows for a suite, plus per-image arrays kept for bootstrap summaries."""

    rows: List[Dict[str, Any]]
    per_image: Dict[str, np.ndarray] = field(default_factory=dict)


class Suite:
    """Base of every suite; subclasses set ``name`` and implement the three steps."""

    name: str = ""
    description: str = ""

    def prepare(self, context: RunContext) -> Any:
        return None

    def evaluate(self, entry: ModelEntry, prepared: Any, context: RunContext) -> SuiteOutput:
        raise NotImplementedError

    def summarize(self, results: pd.DataFrame, per_image: Dict[str, Dict[str, np.ndarray]], models: List[ModelEntry], context: RunContext) -> pd.DataFrame:
        """Per-model summary columns (index: model name)."""
        return pd.DataFrame(index=[entry.name for entry in models])


SUITES: Registry[Suite] = Registry("suite")


def finite_predictions(logits: torch.Tensor) -> Optional[np.ndarray]:
    """Top-1 predictions, or None when the model produced NaN/inf (the cell then fails)."""
    if not torch.isfinite(logits).all():
        return None
    return logits.argmax(1).numpy()


def _failed_row(condition: str, family: str, level: float, n: int) -> Dict[str, Any]:
    return {"condition": condition, "family": family, "level": level, "n": n, "status": "failed", "message": "model returned NaN or inf"}


class CorruptionSuite(Suite):
    """Clean error and ImageNet-C-style corruption errors (SPEC §3)."""

    name = "corruption"
    description = "clean error, error per corruption x severity, CE / mCE / relative mCE"

    def conditions(self, config: RunConfig) -> List[tuple[str, int]]:
        return [(corruption, severity) for corruption in selected_corruptions(config) for severity in config.severities]

    def prepare(self, context: RunContext) -> Dict[tuple[str, int], np.ndarray]:
        import corruptions

        config = context.config
        return corruptions.corrupt_many(
            context.dataset.images,
            self.conditions(config),
            profile=config.profile,
            seed=config.seed,
            indices=context.indices,
            workers=config.workers,
            progress=True,
        )

    def evaluate(self, entry: ModelEntry, prepared: Dict[tuple[str, int], np.ndarray], context: RunContext) -> SuiteOutput:
        config = context.config
        labels = context.dataset.labels
        n = len(labels)
        clean = finite_predictions(predict_logits(entry.model, context.dataset.images, config.batch_size, config.device))
        rows: List[Dict[str, Any]] = []
        per_image: Dict[str, np.ndarray] = {}
        if clean is None:
            rows.append(_failed_row("clean", "clean", 0.0, n) | {"suite": "clean"})
        else:
            rows.append({"suite": "clean", "condition": "clean", "family": "clean", "level": 0.0, "status": "ok"} | error_with_interval(clean, labels))
            per_image["clean"] = clean != labels
        for (corruption, severity), images in prepared.items():
            condition = f"{corruption}/{severity}"
            predictions = finite_predictions(predict_logits(entry.model, images, config.batch_size, config.device))
            if predictions is None:
                rows.append(_failed_row(condition, corruption, float(severity), n) | {"suite": self.name})
                continue
            row = {"suite": self.name, "condition": condition, "family": corruption, "level": float(severity), "status": "ok"}
            row |= error_with_interval(predictions, labels)
            row["flip_share"] = flip_share(predictions, clean) if clean is not None else math.nan
            rows.append(row)
            per_image[condition] = predictions != labels
        return SuiteOutput(rows, per_image)

    def reference_for(self, entry: ModelEntry, models: List[ModelEntry], config: RunConfig) -> Optional[str]:
        """The model (or the AlexNet table, 'alexnet') that normalises ``entry``'s CE."""
        if config.reference_model:
            return config.reference_model
        for candidate in models:
            if candidate.architecture == entry.architecture and candidate.pooling == "max":
                return candidate.name
        return None

    def summarize(self, results: pd.DataFrame, per_image: Dict[str, Dict[str, np.ndarray]], models: List[ModelEntry], context: RunContext) -> pd.DataFrame:
        import corruptions

        config = context.config
        common = [name for name in selected_corruptions(config) if name in corruptions.COMMON_CORRUPTIONS]
        extra = [name for name in selected_corruptions(config) if name in corruptions.EXTRA_CORRUPTIONS]
        table = results[(results["suite"] == self.name) & (results["status"] == "ok")]
        clean_table = results[(results["suite"] == "clean") & (results["status"] == "ok")].set_index("model")
        summary = []
        rng = np.random.default_rng(config.seed)
        n = len(context.dataset)
        # Paired bootstrap over test images: every model is resampled with the same
        # images, so the interval of a ratio against the reference is honest.
        weights = rng.multinomial(n, np.full(n, 1 / n), size=BOOTSTRAP_SAMPLES).astype(np.float64) / n
        for entry in models:
            row: Dict[str, Any] = {"model": entry.name}
            if entry.name in clean_table.index:
                clean = clean_table.loc[entry.name]
                row |= {"n": int(clean["n"]), "clean_error": clean["error"], "clean_error_low": clean["error_low"], "clean_error_high": clean["error_high"]}
            model_table = table[table["model"] == entry.name]
            extra_table = model_table[model_table["family"].isin(extra)]
            row["extra_mean_error"] = float(extra_table["error"].mean()) if len(extra_table) else math.nan
            reference = self.reference_for(entry, models, config)
            row["reference_model"] = reference or ""
            row |= self._model_summary(entry.name, reference, table, clean_table, common, per_image, config, weights)
            summary.append(row)
        return pd.DataFrame(summary).set_index("model")

    def _model_summary(self, model: str, reference: Optional[str], table: pd.DataFrame, clean_table: pd.DataFrame, common: List[str], per_image: Dict[str, Dict[str, np.ndarray]], config: RunConfig, weights: np.ndarray) -> Dict[str, float]:
        nan = {key: math.nan for key in ("mce", "mce_low", "mce_high", "relative_mce", "relative_mce_low", "relative_mce_high", "mean_corruption_error", "mean_corruption_error_low", "mean_corruption_error_high")}
        conditions = [f"{name}/{severity}" for name in common for severity in config.severities]
        model_images = per_image.get(model, {})
        if not common or any(condition not in model_images for condition in conditions) or "clean" not in model_images:
            return nan
        errors = table[(table["model"] == model) & table["family"].isin(common)][["model", "family", "level", "error"]]
        model_wrong = np.stack([model_images[condition] for condition in conditions]).astype(np.float64)
        out = dict(nan)
        out["mean_corruption_error"] = float(model_wrong.mean())
        resampled_model = weights @ model_wrong.T  # bootstrap x conditions
        mean_samples = resampled_model.mean(axis=1)
        out["mean_corruption_error_low"], out["mean_corruption_error_high"] = np.percentile(mean_samples, [2.5, 97.5]).tolist()
        if reference is None:
            return out
        shape = (len(common), len(config.severities))
        if reference == "alexnet":
            published = np.array([ALEXNET_IMAGENET_C_ERRORS[name] for name in common])
            frame = errors.rename(columns={"family": "corruption", "level": "severity"})
            out["mce"] = float(corruption_summary(frame, {}, dict(zip(common, published)), common)["mce"].iloc[0])
            samples = (resampled_model.reshape(-1, *shape).mean(axis=2) / published).mean(axis=1)
            out["mce_low"], out["mce_high"] = np.percentile(samples, [2.5, 97.5]).tolist()
            return out
        reference_images = per_image.get(reference, {})
        if any(condition not in reference_images for condition in conditions) or "clean" not in reference_images:
            log.warning("reference model %s has no complete corruption results; mCE of %s left empty", reference, model)
            return out
        reference_errors = table[(table["model"] == reference) & table["family"].isin(common)][["model", "family", "level", "error"]]
        frame = pd.concat([errors, reference_errors]).rename(columns={"family": "corruption", "level": "severity"})
        clean_errors = {name: float(clean_table.loc[name, "error"]) for name in (model, reference)}
        computed = corruption_summary(frame, clean_errors, reference, common).set_index("model").loc[model]
        out["mce"], out["relative_mce"] = float(computed["mce"]), float(computed["relative_mce"])
        reference_wrong = np.stack([reference_images[condition] for condition in conditions]).astype(np.float64)
        resampled_reference = (weights @ reference_wrong.T).reshape(-1, *shape)
        resampled = resampled_model.reshape(-1, *shape)
        model_clean = weights @ model_images["clean"].astype(np.float64)
        reference_clean = weights @ reference_images["clean"].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ce = resampled.sum(axis=2) / resampled_reference.sum(axis=2)
            relative = (resampled - model_clean[:, None, None]).sum(axis=2) / (resampled_reference - reference_clean[:, None, None]).sum(axis=2)
        out["mce_low"], out["mce_high"] = np.nanpercentile(ce.mean(axis=1), [2.5, 97.5]).tolist()
        out["relative_mce_low"], out["relative_mce_high"] = np.nanpercentile(relative.mean(axis=1), [2.5, 97.5]).tolist()
        return out


SUITES.add("corruption", CorruptionSuite())
