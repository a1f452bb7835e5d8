"""Evaluation suites: each prepares its inputs once per run and evaluates any model on them.

A suite is a small class over :class:`Suite`. The unit of evaluation is a *cell*: one
model x suite x condition. ``conditions`` names a suite's cells (from the config alone,
so a resumed run knows what is left before preparing anything); ``prepare`` builds what
all models share for some conditions (corrupted images, perturbation frames);
``evaluate_condition`` turns one model's predictions on one condition into result rows
and per-image arrays; ``finalize`` completes one model's rows once all its cells exist
(values that compare cells, such as flips against the clean predictions);
``summarize`` turns the run's rows into per-model columns of ``summary.csv``. Cells are
independent, so any executor may run them in any order, and the runner knows nothing
suite-specific.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from robustbench_lift.config import RunConfig, selected_corruptions, selected_perturbations
from robustbench_lift.datasets import ImageDataset
from robustbench_lift.errors import UserError
from robustbench_lift.inference import predict_logits, resolve_device
from robustbench_lift.metrics import ALEXNET_IMAGENET_C, corruption_summary, error_with_interval, flip_probability, flip_share, top5_distance, wilson_interval
from robustbench_lift.registry import Registry

log = logging.getLogger(__name__)

BOOTSTRAP_SAMPLES = 1000


@dataclass
class RunContext:
    """What every suite of a run sees: the config, the sampled clean data and the device."""

    config: RunConfig
    dataset: ImageDataset
    indices: np.ndarray  # positions of the sampled images in the full split; they seed corruptions
    device: str = ""  # torch device for inference; empty = resolved from config.device

    def __post_init__(self) -> None:
        if not self.device:
            self.device = resolve_device(self.config.device)


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
    """Rows of one cell (or of a whole suite for one model), plus per-image arrays kept for
    bootstrap summaries (keys are unique across a suite's cells)."""

    rows: List[Dict[str, Any]]
    per_image: Dict[str, np.ndarray] = field(default_factory=dict)


class Suite:
    """Base of every suite; subclasses set ``name`` and implement the steps."""

    name: str = ""
    description: str = ""

    def conditions(self, context: RunContext) -> List[str]:
        """Names of this suite's cells for one model, in result order."""
        raise NotImplementedError

    def prepare(self, context: RunContext, conditions: Optional[Sequence[str]] = None) -> Any:
        """Inputs every model shares, for ``conditions`` (None: all of them)."""
        return None

    def evaluate_condition(self, entry: ModelEntry, condition: str, prepared: Any, context: RunContext) -> SuiteOutput:
        """One cell: ``entry`` on ``condition`` (the model is already on ``context.device``)."""
        raise NotImplementedError

    def finalize(self, model: str, rows: List[Dict[str, Any]], per_image: Dict[str, np.ndarray], context: RunContext) -> List[Dict[str, Any]]:
        """One model's rows of all its cells, completed where a value needs several cells."""
        return rows

    def prepared_conditions(self, prepared: Any, context: RunContext) -> List[str]:
        """The conditions ``prepared`` holds inputs for (``evaluate``'s default)."""
        return self.conditions(context)

    def evaluate(self, entry: ModelEntry, prepared: Any, context: RunContext, conditions: Optional[Sequence[str]] = None) -> SuiteOutput:
        """Cells of one model in this process, finalized (``conditions`` default: all that
        ``prepared`` covers). The runner goes cell by cell instead; this is for scripts."""
        rows: List[Dict[str, Any]] = []
        per_image: Dict[str, np.ndarray] = {}
        for condition in self.prepared_conditions(prepared, context) if conditions is None else conditions:
            output = self.evaluate_condition(entry, condition, prepared, context)
            rows += output.rows
            per_image.update(output.per_image)
        return SuiteOutput(self.finalize(entry.name, rows, per_image, context), per_image)

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


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _published_positions(root: str, layout: Optional[str], indices: np.ndarray) -> np.ndarray:
    """Positions in a pre-made set of the run's sampled data-set ``indices``.

    A published set holds the whole split in order (position = data-set index). A set we
    wrote for a subset records that subset's indices in its manifest; we map through them.
    """
    from robustbench_lift.published_layouts import detect_layout, read_manifest

    manifest = read_manifest(root) or {}
    if "indices" not in manifest:
        return np.asarray(indices, dtype=np.int64)
    stored = np.asarray(manifest["indices"], dtype=np.int64)
    if (layout or detect_layout(root)) != "cifar-c":
        stored = np.sort(stored)  # image folders are read in data-set index order
    lookup = {int(index): position for position, index in enumerate(stored)}
    missing = [int(index) for index in indices if int(index) not in lookup]
    if missing:
        raise UserError(f"{root} holds no images for {len(missing)} of the sampled test images (e.g. index {missing[0]}); write it for this sample or sample fewer")
    return np.array([lookup[int(index)] for index in indices], dtype=np.int64)


class CorruptionSuite(Suite):
    """Clean error and ImageNet-C-style corruption errors (SPEC §3).

    Cells: ``clean`` and ``<corruption>/<severity>``. Inputs come, in this order of
    preference, from a pre-made set (``corruption_data``), the on-disk cache
    (``cache_dir``), or :func:`corruptions.corrupt_many`; all three give the same pixels
    for a set written by this package with the run's profile and seed.
    """

    name = "corruption"
    description = "clean error, error per corruption x severity, CE / mCE / relative mCE"

    def pairs(self, config: RunConfig) -> List[tuple[str, int]]:
        return [(corruption, severity) for corruption in selected_corruptions(config) for severity in config.severities]

    def conditions(self, context: RunContext) -> List[str]:
        return ["clean"] + [f"{corruption}/{severity}" for corruption, severity in self.pairs(context.config)]

    def prepared_conditions(self, prepared: Dict[tuple[str, int], np.ndarray], context: RunContext) -> List[str]:
        return ["clean"] + [f"{corruption}/{severity}" for corruption, severity in prepared]

    @staticmethod
    def _pair(condition: str) -> tuple[str, int]:
        corruption, severity = condition.rsplit("/", 1)
        return corruption, int(severity)

    def prepare(self, context: RunContext, conditions: Optional[Sequence[str]] = None) -> Dict[tuple[str, int], np.ndarray]:
        config = context.config
        wanted = self.pairs(config) if conditions is None else [self._pair(condition) for condition in conditions if condition != "clean"]
        if not wanted:
            return {}
        if config.corruption_data:
            return self._load_published(context, wanted)
        if config.cache_dir:
            return self._load_cached(context, wanted)
        return self._generate(context, wanted)

    def _generate(self, context: RunContext, pairs: List[tuple[str, int]]) -> Dict[tuple[str, int], np.ndarray]:
        import corruptions

        config = context.config
        return corruptions.corrupt_many(context.dataset.images, pairs, profile=config.profile, seed=config.seed, indices=context.indices, workers=config.workers, progress=True)

    def _load_published(self, context: RunContext, pairs: List[tuple[str, int]]) -> Dict[tuple[str, int], np.ndarray]:
        from robustbench_lift.published_layouts import load_corruption_set

        config = context.config
        positions = _published_positions(config.corruption_data, config.corruption_layout, context.indices)
        images, labels = load_corruption_set(config.corruption_data, config.corruption_layout, pairs, positions, profile=config.profile, seed=config.seed)
        if not np.array_equal(np.asarray(labels, dtype=np.int64), context.dataset.labels):
            raise UserError(f"labels of corruption_data {config.corruption_data} differ from those of {config.dataset}/{config.split}; the set was made from other images")
        shape = context.dataset.images.shape
        for pair, array in images.items():
            if array.shape != shape:
                raise UserError(f"corruption_data {config.corruption_data}: {pair[0]}/{pair[1]} holds images of shape {array.shape[1:]}, the data set {shape[1:]}")
        log.info("read %d corruption conditions from %s", len(images), config.corruption_data)
        return images

    def cache_path(self, context: RunContext, corruption: str, severity: int, sample_key: Optional[str] = None) -> Path:
        """Where ``cache_dir`` keeps one condition's corrupted inputs.

        The key covers everything the pixels depend on: data set, split, the sampled
        indices and clean pixels (hashed), corruption, severity, profile, seed and the
        package version. ``sample_key``: :meth:`sample_key` of the context, if known.
        """
        from robustbench_lift import __version__

        config = context.config
        key = "|".join([config.dataset, config.split, sample_key or self.sample_key(context), corruption, str(severity), config.profile, str(config.seed), __version__])
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return Path(config.cache_dir) / "corruption" / f"{config.dataset}-{config.split}" / f"{corruption}-{severity}-{config.profile}-{digest}.npy"

    @staticmethod
    def sample_key(context: RunContext) -> str:
        """Hash of the sampled indices and their clean pixels."""
        return _digest(np.asarray(context.indices, dtype=np.int64), context.dataset.images)

    def _load_cached(self, context: RunContext, pairs: List[tuple[str, int]]) -> Dict[tuple[str, int], np.ndarray]:
        found: Dict[tuple[str, int], np.ndarray] = {}
        shape = context.dataset.images.shape
        sample_key = self.sample_key(context)
        for pair in pairs:
            path = self.cache_path(context, *pair, sample_key=sample_key)
            if not path.is_file():
                continue
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                log.warning("ignoring unreadable cache file %s (%s)", path, error)
                continue
            if array.shape == shape and array.dtype == np.uint8:
                found[pair] = array
            else:
                log.warning("ignoring cache file %s: holds %s %s, expected uint8 %s", path, array.dtype, array.shape, shape)
        missing = [pair for pair in pairs if pair not in found]
        log.info("corruption cache %s: %d of %d conditions cached", context.config.cache_dir, len(found), len(pairs))
        if missing:
            generated = self._generate(context, missing)
            for pair, array in generated.items():
                path = self.cache_path(context, *pair, sample_key=sample_key)
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
                    with open(partial, "wb") as handle:
                        np.save(handle, array, allow_pickle=False)
                    os.replace(partial, path)
                except OSError as error:
                    raise UserError(f"cannot write to cache_dir {context.config.cache_dir}: {error.strerror or error}") from None
            found.update(generated)
        return {pair: found[pair] for pair in pairs}

    def evaluate_condition(self, entry: ModelEntry, condition: str, prepared: Dict[tuple[str, int], np.ndarray], context: RunContext) -> SuiteOutput:
        config = context.config
        labels = context.dataset.labels
        n = len(labels)
        if condition == "clean":
            images, suite, family, level = context.dataset.images, "clean", "clean", 0.0
        else:
            corruption, severity = self._pair(condition)
            images, suite, family, level = prepared[(corruption, severity)], self.name, corruption, float(severity)
        predictions = finite_predictions(predict_logits(entry.model, images, config.batch_size, context.device))
        if predictions is None:
            return SuiteOutput([_failed_row(condition, family, level, n) | {"suite": suite}])
        row = {"suite": suite, "condition": condition, "family": family, "level": level, "status": "ok"} | error_with_interval(predictions, labels)
        return SuiteOutput([row], {condition: predictions != labels, f"{condition}/predictions": predictions})

    def finalize(self, model: str, rows: List[Dict[str, Any]], per_image: Dict[str, np.ndarray], context: RunContext) -> List[Dict[str, Any]]:
        """Adds ``flip_share``: how often a corruption changes the clean prediction."""
        clean = per_image.get("clean/predictions")
        for row in rows:
            if row["suite"] == self.name and row["status"] == "ok":
                row["flip_share"] = flip_share(per_image[f"{row['condition']}/predictions"], clean) if clean is not None else math.nan
        return rows

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
        if reference == ALEXNET_IMAGENET_C.name:
            # AlexNet's published errors at exactly the severities run here (not its
            # five-severity means), and its published clean error for relative mCE.
            published = np.stack([ALEXNET_IMAGENET_C.errors_at(name, config.severities) for name in common])
            frame = errors.rename(columns={"family": "corruption", "level": "severity"})
            clean_errors = {model: float(clean_table.loc[model, "error"])} if model in clean_table.index else {}
            computed = corruption_summary(frame, clean_errors, ALEXNET_IMAGENET_C, common).iloc[0]
            out["mce"], out["relative_mce"] = float(computed["mce"]), float(computed["relative_mce"])
            resampled = resampled_model.reshape(-1, *shape)
            model_clean = weights @ model_images["clean"].astype(np.float64)
            samples = (resampled.sum(axis=2) / published.sum(axis=1)).mean(axis=1)
            excess = (published - ALEXNET_IMAGENET_C.clean_error).sum(axis=1)
            relative = ((resampled - model_clean[:, None, None]).sum(axis=2) / excess).mean(axis=1)
            out["mce_low"], out["mce_high"] = np.percentile(samples, [2.5, 97.5]).tolist()
            out["relative_mce_low"], out["relative_mce_high"] = np.percentile(relative, [2.5, 97.5]).tolist()
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


def _first(context: RunContext, size: Optional[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``size`` images of the run's sample (images, labels, dataset indices)."""
    count = len(context.dataset) if size is None else min(size, len(context.dataset))
    return context.dataset.images[:count], context.dataset.labels[:count], context.indices[:count]


def _reference_name(entry: ModelEntry, models: List[ModelEntry], config: RunConfig) -> Optional[str]:
    return CorruptionSuite().reference_for(entry, models, config) if config.reference_model != "alexnet" else None


def _bootstrap_interval(samples: np.ndarray) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return (math.nan, math.nan)
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


class PerturbationSuite(Suite):
    """ImageNet-P-style stability: flip probability, flip rate, top-5 distance (SPEC §4).

    Needs no labels. Cells: ``<perturbation>/d<difficulty>``. Frames are generated once per
    run (or read from ``perturbation_data``) and shared by all models.
    """

    name = "perturbation"
    description = "flip probability / flip rate (mFR) and top-5 distance (mT5D) on perturbation sequences"

    def conditions(self, context: RunContext) -> List[str]:
        return [f"{name}/d{context.config.difficulty}" for name in selected_perturbations(context.config)]

    def prepared_conditions(self, prepared: Dict[str, np.ndarray], context: RunContext) -> List[str]:
        return [f"{name}/d{context.config.difficulty}" for name in prepared]

    def prepare(self, context: RunContext, conditions: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        from corruptions import perturbations

        config = context.config
        names = selected_perturbations(config) if conditions is None else [condition.rsplit("/", 1)[0] for condition in conditions]
        images, _, indices = _first(context, config.perturbation_sample_size)
        if not names:
            return {}
        if config.perturbation_data:
            from robustbench_lift.published_layouts import load_perturbation_set

            positions = _published_positions(config.perturbation_data, config.perturbation_layout, indices)
            sequences = load_perturbation_set(config.perturbation_data, config.perturbation_layout, names, config.difficulty, positions)
            for name, array in sequences.items():
                if array.shape[0] != len(images) or array.shape[2:] != images.shape[1:]:
                    raise UserError(f"perturbation_data {config.perturbation_data}: {name} holds {array.shape}, expected {len(images)} sequences of {images.shape[1:]} frames")
            log.info("read %d perturbations from %s", len(sequences), config.perturbation_data)
            return sequences
        return perturbations.perturb_many(images, names, profile=config.profile, difficulty=config.difficulty, seed=config.seed, indices=indices, workers=config.workers, progress=True)

    def evaluate_condition(self, entry: ModelEntry, condition: str, prepared: Dict[str, np.ndarray], context: RunContext) -> SuiteOutput:
        from corruptions.perturbations import NOISE_PERTURBATIONS

        config = context.config
        name = condition.rsplit("/", 1)[0]
        sequences = prepared[name]
        count, frames = sequences.shape[:2]
        logits = predict_logits(entry.model, sequences.reshape(-1, *sequences.shape[2:]), config.batch_size, context.device)
        if not torch.isfinite(logits).all():
            return SuiteOutput([_failed_row(condition, name, float(config.difficulty), count) | {"suite": self.name}])
        logits_array = logits.numpy().reshape(count, frames, -1)
        predictions = logits_array.argmax(2)
        noise = name in NOISE_PERTURBATIONS
        per_sequence_flips = np.array([flip_probability(predictions[i : i + 1], noise, config.difficulty) for i in range(count)])
        per_sequence_distance = np.array([top5_distance(logits_array[i : i + 1], noise, config.difficulty) for i in range(count)])
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

    def summarize(self, results: pd.DataFrame, per_image: Dict[str, Dict[str, np.ndarray]], models: List[ModelEntry], context: RunContext) -> pd.DataFrame:
        from corruptions.perturbations import MAIN_PERTURBATIONS

        config = context.config
        main = [name for name in selected_perturbations(config) if name in MAIN_PERTURBATIONS]
        table = results[(results["suite"] == self.name) & (results["status"] == "ok")]
        rng = np.random.default_rng(config.seed + 1)
        summary = []
        for entry in models:
            row: Dict[str, Any] = {"model": entry.name}
            model_table = table[table["model"] == entry.name].set_index("family")
            usable = [name for name in main if name in model_table.index]
            row["mean_flip_probability"] = float(model_table.loc[usable, "flip_probability"].mean()) if usable else math.nan
            row["mean_top5_distance"] = float(model_table.loc[usable, "top5_distance"].mean()) if usable else math.nan
            row |= {"mfr": math.nan, "mfr_low": math.nan, "mfr_high": math.nan, "mt5d": math.nan, "mt5d_low": math.nan, "mt5d_high": math.nan}
            reference = _reference_name(entry, models, config)
            reference_table = table[table["model"] == reference].set_index("family") if reference else None
            if reference_table is not None and usable and all(name in reference_table.index for name in usable):
                own, theirs = per_image.get(entry.name, {}), per_image.get(reference, {})
                for metric, key, column in (("mfr", "flips", "flip_probability"), ("mt5d", "top5", "top5_distance")):
                    # A perturbation on which the reference never flips gives no ratio; it is
                    # left out of the mean (and counted in mfr_perturbations) rather than
                    # turning the whole mFR infinite.
                    reference_values = reference_table.loc[usable, column].to_numpy()
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ratios = np.where(reference_values > 0, model_table.loc[usable, column].to_numpy() / reference_values, np.nan)
                    row[metric] = float(np.nanmean(ratios)) if np.isfinite(ratios).any() else math.nan
                    row[f"{metric}_perturbations"] = int(np.isfinite(ratios).sum())
                    # Paired bootstrap over sequences for the interval.
                    count = len(own[f"{usable[0]}/{key}"])
                    draws = rng.integers(0, count, size=(BOOTSTRAP_SAMPLES, count))
                    model_means = np.stack([own[f"{name}/{key}"][draws].mean(axis=1) for name in usable], axis=1)
                    reference_means = np.stack([theirs[f"{name}/{key}"][draws].mean(axis=1) for name in usable], axis=1)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        samples = np.nanmean(np.where(reference_means > 0, model_means / reference_means, np.nan), axis=1)
                    row[f"{metric}_low"], row[f"{metric}_high"] = _bootstrap_interval(samples)
            summary.append(row)
        return pd.DataFrame(summary).set_index("model")


class ShiftSuite(Suite):
    """Shift consistency (Zhang 2019): how often two random shifts of an image get the same class."""

    name = "shift"
    description = "shift consistency: same prediction under two random shifts of up to shift_max px"

    def conditions(self, context: RunContext) -> List[str]:
        return [f"shift/{context.config.shift_max}px"]

    def prepare(self, context: RunContext, conditions: Optional[Sequence[str]] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from corruptions.perturbations import shift_pairs

        config = context.config
        return shift_pairs(context.dataset.images, max_shift=config.shift_max, seed=config.seed, indices=context.indices)

    def evaluate_condition(self, entry: ModelEntry, condition: str, prepared: tuple[np.ndarray, np.ndarray, np.ndarray], context: RunContext) -> SuiteOutput:
        config = context.config
        first, second, _ = prepared
        predictions_first = finite_predictions(predict_logits(entry.model, first, config.batch_size, context.device))
        predictions_second = finite_predictions(predict_logits(entry.model, second, config.batch_size, context.device))
        if predictions_first is None or predictions_second is None:
            return SuiteOutput([_failed_row(condition, "shift", float(config.shift_max), len(first)) | {"suite": self.name}])
        same = predictions_first == predictions_second
        low, high = wilson_interval(int(same.sum()), len(same))
        row = {"suite": self.name, "condition": condition, "family": "shift", "level": float(config.shift_max), "status": "ok", "n": len(same), "consistency": float(same.mean()), "consistency_low": low, "consistency_high": high}
        return SuiteOutput([row], {"same": same})

    def summarize(self, results: pd.DataFrame, per_image: Dict[str, Dict[str, np.ndarray]], models: List[ModelEntry], context: RunContext) -> pd.DataFrame:
        table = results[(results["suite"] == self.name) & (results["status"] == "ok")].set_index("model")
        rows = []
        for entry in models:
            if entry.name in table.index:
                found = table.loc[entry.name]
                rows.append({"model": entry.name, "shift_consistency": found["consistency"], "shift_consistency_low": found["consistency_low"], "shift_consistency_high": found["consistency_high"]})
            else:
                rows.append({"model": entry.name, "shift_consistency": math.nan, "shift_consistency_low": math.nan, "shift_consistency_high": math.nan})
        return pd.DataFrame(rows).set_index("model")


class AdversarialSuite(Suite):
    """Adversarial robustness over foolbox 3 (SPEC §5), with gradient-masking checks.

    Cells: ``clean`` (predictions on the attacked images; no rows) and one per attack (a
    row per epsilon). The gradient-masking checks compare attacks, so they run in
    ``finalize`` once all of a model's cells exist.
    """

    name = "adversarial"
    description = "robust accuracy per attack and epsilon (foolbox 3), success rate, flips, median perturbation"

    def conditions(self, context: RunContext) -> List[str]:
        return ["clean"] + list(context.config.attacks)

    def prepare(self, context: RunContext, conditions: Optional[Sequence[str]] = None) -> tuple[np.ndarray, np.ndarray]:
        images, labels, _ = _first(context, context.config.attack_sample_size)
        return images, labels

    def evaluate_condition(self, entry: ModelEntry, condition: str, prepared: tuple[np.ndarray, np.ndarray], context: RunContext) -> SuiteOutput:
        from robustbench_lift.attacks import evaluate_attack
        from robustbench_lift.datasets import to_tensor

        config = context.config
        pixels, label_array = prepared
        if condition == "clean":
            predictions = finite_predictions(predict_logits(entry.model, pixels, config.batch_size, context.device))
            return SuiteOutput([], {} if predictions is None else {"clean_correct": predictions == label_array})
        epsilons = (config.attack_epsilons or {}).get(condition)
        attack_rows = evaluate_attack(entry.model, to_tensor(pixels), torch.from_numpy(label_array), condition, epsilons, batch_size=config.batch_size, device=context.device, seed=config.seed)
        rows = []
        for attack_row in attack_rows:
            row = {"suite": self.name, "condition": f"{attack_row['attack']}/eps={attack_row['epsilon']:.5g}", "family": attack_row["attack"], "level": float(attack_row["epsilon"])}
            row |= {key: value for key, value in attack_row.items() if key not in ("attack", "epsilon")}
            rows.append(row)
        return SuiteOutput(rows)

    def finalize(self, model: str, rows: List[Dict[str, Any]], per_image: Dict[str, np.ndarray], context: RunContext) -> List[Dict[str, Any]]:
        from robustbench_lift.attacks import sanity_warnings

        correct = per_image.get("clean_correct")
        clean_accuracy = float(correct.mean()) if correct is not None else math.nan
        views = [dict(row, attack=row["family"], epsilon=row["level"]) for row in rows]
        for warning in sanity_warnings(views, clean_accuracy):
            log.warning("%s: %s", model, warning)
        for row, view in zip(rows, views):
            if view.get("warning") != row.get("warning"):
                row["warning"] = view["warning"]
        return rows

    def summarize(self, results: pd.DataFrame, per_image: Dict[str, Dict[str, np.ndarray]], models: List[ModelEntry], context: RunContext) -> pd.DataFrame:
        from robustbench_lift.attacks import ATTACKS

        table = results[results["suite"] == self.name]
        rows = []
        for entry in models:
            row: Dict[str, Any] = {"model": entry.name}
            for attack in context.config.attacks:
                spec = ATTACKS.get(attack)
                cells = table[(table["model"] == entry.name) & (table["family"] == attack) & (table["status"] == "ok")]
                match = cells[np.isclose(cells["level"], spec.headline_epsilon)]
                column = f"robust_accuracy_{attack}"
                row[column] = float(match["robust_accuracy"].iloc[0]) if len(match) else math.nan
                row[f"{column}_low"] = float(match["robust_accuracy_low"].iloc[0]) if len(match) else math.nan
                row[f"{column}_high"] = float(match["robust_accuracy_high"].iloc[0]) if len(match) else math.nan
                if spec.minimization:
                    row[f"median_perturbation_{attack}"] = float(cells["median_perturbation"].dropna().iloc[0]) if cells["median_perturbation"].notna().any() else math.nan
            warnings = table[(table["model"] == entry.name) & table["warning"].fillna("").astype(bool)] if "warning" in table else table.iloc[0:0]
            # One warning text can sit on every epsilon row of its attack: count distinct ones.
            row["adversarial_warnings"] = int(warnings["warning"].nunique()) if len(warnings) else 0
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")


SUITES.add("perturbation", PerturbationSuite())
SUITES.add("shift", ShiftSuite())
SUITES.add("adversarial", AdversarialSuite())
