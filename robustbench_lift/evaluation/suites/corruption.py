"""The corruption suite: clean error and ImageNet-C-style corruption errors, CE, mCE, relative mCE."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

import corruptions
from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.suites.base import (
    ModelEntry,
    RunContext,
    Suite,
    SuiteOutput,
    failed_row,
    predict,
    reference_model,
)
from robustbench_lift.evaluation.suites.cache import engine_label, load_cached, published_positions
from robustbench_lift.metrics import (
    ALEXNET_IMAGENET_C,
    BOOTSTRAP_SAMPLES,
    corruption_summary,
    error_with_interval,
    flip_share,
)
from robustbench_lift.options import ConfigView, Option

__all__ = ["CorruptedInputs", "CorruptionSuite", "resolved_engine", "selected_corruptions"]

log = logging.getLogger(__name__)


def select_names(value: str | list[str], subsets: tuple[str, ...], names_of: Any, what: str) -> list[str]:
    """Expands a subset name (``all``...) or validates a list of names against the known ones."""
    names = [value] if isinstance(value, str) else list(value)
    if len(names) == 1 and names[0] in subsets:
        return list(names_of(names[0]))
    known = names_of("all")
    for name in names:
        if name not in known:
            raise UserError(f"unknown {what} {name!r}; known: {', '.join(known)}")
    return names


def _on_host(images: Any) -> Any:
    return images if isinstance(images, np.ndarray) else images.cpu()


def selected_corruptions(config: ConfigView) -> list[str]:
    """The corruption names a config asks for, validated."""
    return select_names(config.corruptions, ("common", "extra", "all"), corruptions.corruption_names, "corruption")


#: ``corruption_engine`` values besides the engines themselves.
AUTO_ENGINE = "auto"
#: What results.csv's ``corruption_engine`` says for a pre-made set whose manifest names no engine.
PREMADE_ENGINE = "pre-made"


def resolved_engine(config: ConfigView) -> str:
    """The engine a run uses: ``corruption_engine``, with ``auto`` resolved to ``torch``
    when the run's device (as resolved on this machine) is a CUDA GPU, else ``numpy``."""
    if config.corruption_engine != AUTO_ENGINE:
        return str(config.corruption_engine)
    from robustbench_lift.evaluation.inference import resolve_device

    return "torch" if resolve_device(config.device).startswith("cuda") else "numpy"


class CorruptedInputs(dict):
    """``{(corruption, severity): images}`` plus the engine that made them (results.csv's
    ``corruption_engine``). Images are uint8 ``N x H x W x 3`` arrays (numpy engine, cache,
    pre-made sets) or uint8 ``N x 3 x H x W`` tensors on the evaluation device (torch engine)."""

    def __init__(self, images: Mapping[tuple[str, int], Any], engine: str) -> None:
        super().__init__(images)
        self.engine = engine


class CorruptionSuite(Suite):
    """Clean error and ImageNet-C-style corruption errors (``docs/metrics.md``).

    Cells: ``clean`` and ``<corruption>/<severity>``. Inputs come, in this order of
    preference, from a pre-made set (``corruption_data``), the on-disk cache
    (``cache_dir``), or generation by ``corruption_engine`` (:mod:`corruptions.engines`);
    all three give the same pixels for a set written by this package with the run's
    profile, seed and engine. The torch engine generates on the evaluation device and the
    models read its tensors there, without a copy through host memory.
    """

    name = "corruption"
    description = "clean error, error per corruption x severity, CE / mCE / relative mCE"
    options: ClassVar[Mapping[str, Option]] = {
        "corruptions": Option(str | list[str], "all", "corruption names, or common / extra / all"),
        "severities": Option(list[int], [1, 2, 3, 4, 5], "severities, a subset of 1..5"),
        "cache_dir": Option(str | None, None, "folder caching the generated inputs (null: no cache)"),
        "corruption_data": Option(str | None, None, "a pre-made corruption set to read instead of generating"),
        "corruption_layout": Option(str | None, None, "layout of corruption_data (null: detect it)"),
        "corruption_engine": Option(
            str, "numpy", "numpy (the reference), torch (batched, on the device) or auto (torch on a CUDA device)"
        ),
    }

    #: Each condition's inputs can be prepared on their own (executors may prepare them apart).
    inputs_per_condition = True

    def validate(self, config: ConfigView) -> None:
        if not config.severities:
            raise UserError("severities must not be empty")
        for severity in config.severities:
            if severity not in corruptions.SEVERITIES:
                raise UserError(f"severity {severity} outside 1..5")
        selected_corruptions(config)
        if config.corruption_data is not None and not Path(config.corruption_data).is_dir():
            raise UserError(f"corruption_data {config.corruption_data} is not a folder")
        if config.corruption_layout is not None and config.corruption_data is None:
            raise UserError("corruption_layout needs corruption_data (the folder to read)")
        from corruptions.engines import ENGINE_NAMES

        if config.corruption_engine not in (*ENGINE_NAMES, AUTO_ENGINE):
            raise UserError(
                f"unknown corruption_engine {config.corruption_engine!r}; known: {', '.join(ENGINE_NAMES)}, {AUTO_ENGINE}"
            )

    def record(self, config: ConfigView, context: RunContext | None = None) -> dict[str, Any]:
        """The engine that made the corrupted inputs (``auto`` resolved), for ``run.json``."""
        return {"corruption_engine": self._data_engine(config) if config.corruption_data else resolved_engine(config)}

    @staticmethod
    def _data_engine(config: ConfigView) -> str:
        from robustbench_lift.data.published import read_manifest

        manifest = read_manifest(config.corruption_data) or {}
        return str(manifest.get("corruption_engine", PREMADE_ENGINE))

    def pinned_options(self, config: ConfigView) -> dict[str, Any]:
        """``auto`` resolved here (a Ray worker with a GPU must not pick torch when the driver picked numpy)."""
        return {"corruption_engine": resolved_engine(config)} if config.corruption_engine == AUTO_ENGINE else {}

    def portable(self, prepared: Any) -> Any:
        """Tensors moved to host memory, so another process (a Ray worker) can read them."""
        if not isinstance(prepared, CorruptedInputs):
            return prepared
        return CorruptedInputs({pair: _on_host(images) for pair, images in prepared.items()}, prepared.engine)

    def pairs(self, config: ConfigView) -> list[tuple[str, int]]:
        return [(corruption, severity) for corruption in selected_corruptions(config) for severity in config.severities]

    def conditions(self, context: RunContext) -> list[str]:
        return ["clean"] + [f"{corruption}/{severity}" for corruption, severity in self.pairs(context.config)]

    def prepared_conditions(self, prepared: CorruptedInputs, context: RunContext) -> list[str]:
        return ["clean"] + [f"{corruption}/{severity}" for corruption, severity in prepared]

    @staticmethod
    def _pair(condition: str) -> tuple[str, int]:
        corruption, severity = condition.rsplit("/", 1)
        return corruption, int(severity)

    def prepare(self, context: RunContext, conditions: Sequence[str] | None = None) -> CorruptedInputs:
        config = context.config
        wanted = (
            self.pairs(config)
            if conditions is None
            else [self._pair(condition) for condition in conditions if condition != "clean"]
        )
        if config.corruption_data:
            return CorruptedInputs(self._load_published(context, wanted) if wanted else {}, self._data_engine(config))
        engine = resolved_engine(config)
        if not wanted:
            return CorruptedInputs({}, engine)
        if config.cache_dir:
            label = engine_label(engine, context.device)
            return CorruptedInputs(load_cached(context, wanted, self._generate, engine=label), engine)
        return CorruptedInputs(self._generate(context, wanted), engine)

    def _generate(self, context: RunContext, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], Any]:
        from corruptions.engines import generate

        config = context.config
        return generate(
            resolved_engine(config),
            context.dataset.images,
            pairs,
            profile=config.profile,
            seed=config.seed,
            indices=context.indices,
            workers=config.workers,
            device=context.device,
            progress=True,
        )

    def _load_published(self, context: RunContext, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], np.ndarray]:
        from robustbench_lift.data.published import load_corruption_set

        config = context.config
        positions = published_positions(config.corruption_data, config.corruption_layout, context.indices)
        images, labels = load_corruption_set(
            config.corruption_data, config.corruption_layout, pairs, positions, profile=config.profile, seed=config.seed
        )
        if not np.array_equal(np.asarray(labels, dtype=np.int64), context.dataset.labels):
            raise UserError(
                f"labels of corruption_data {config.corruption_data} differ from those of {config.dataset}/{config.split}; the set was made from other images"
            )
        shape = context.dataset.images.shape
        for pair, array in images.items():
            if array.shape != shape:
                raise UserError(
                    f"corruption_data {config.corruption_data}: {pair[0]}/{pair[1]} holds images of shape {array.shape[1:]}, the data set {shape[1:]}"
                )
        log.info("read %d corruption conditions from %s", len(images), config.corruption_data)
        return images

    def evaluate_condition(
        self, entry: ModelEntry, condition: str, prepared: CorruptedInputs, context: RunContext
    ) -> SuiteOutput:
        labels = context.dataset.labels
        n = len(labels)
        if condition == "clean":
            images, suite, family, level = context.dataset.images, "clean", "clean", 0.0
        else:
            corruption, severity = self._pair(condition)
            images, suite, family, level = prepared[(corruption, severity)], self.name, corruption, float(severity)
        predictions = predict(entry, images, context)
        if predictions is None:
            return SuiteOutput([failed_row(condition, family, level, n) | {"suite": suite}])
        row = {
            "suite": suite,
            "condition": condition,
            "family": family,
            "level": level,
            "status": "ok",
        } | error_with_interval(predictions, labels)
        if suite == self.name:
            row["corruption_engine"] = getattr(prepared, "engine", "")
        return SuiteOutput([row], {condition: predictions != labels, f"{condition}/predictions": predictions})

    def finalize(
        self, model: str, rows: list[dict[str, Any]], per_image: dict[str, np.ndarray], context: RunContext
    ) -> list[dict[str, Any]]:
        """Adds ``flip_share``: how often a corruption changes the clean prediction."""
        clean = per_image.get("clean/predictions")
        for row in rows:
            if row["suite"] == self.name and row["status"] == "ok":
                row["flip_share"] = (
                    flip_share(per_image[f"{row['condition']}/predictions"], clean) if clean is not None else math.nan
                )
        return rows

    def per_image_record(self, models: list[ModelEntry], context: RunContext) -> dict[str, Any]:
        """The conditions mCE averages over and each model's reference (``reference_model`` of summary.csv)."""
        config = context.config
        return {
            "common": [name for name in selected_corruptions(config) if name in corruptions.COMMON_CORRUPTIONS],
            "severities": list(config.severities),
            "profile": config.profile,
            "references": {entry.name: reference_model(entry, models, config) for entry in models},
        }

    def summarize(
        self,
        results: pd.DataFrame,
        per_image: dict[str, dict[str, np.ndarray]],
        models: list[ModelEntry],
        context: RunContext,
    ) -> pd.DataFrame:
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
            row: dict[str, Any] = {"model": entry.name}
            if entry.name in clean_table.index:
                clean = clean_table.loc[entry.name]
                row |= {
                    "n": int(clean["n"]),
                    "clean_error": clean["error"],
                    "clean_error_low": clean["error_low"],
                    "clean_error_high": clean["error_high"],
                }
            model_table = table[table["model"] == entry.name]
            extra_table = model_table[model_table["family"].isin(extra)]
            row["extra_mean_error"] = float(extra_table["error"].mean()) if len(extra_table) else math.nan
            reference = reference_model(entry, models, config)
            row["reference_model"] = reference or ""
            row |= self._model_summary(entry.name, reference, table, clean_table, common, per_image, config, weights)
            summary.append(row)
        return pd.DataFrame(summary).set_index("model")

    def _model_summary(
        self,
        model: str,
        reference: str | None,
        table: pd.DataFrame,
        clean_table: pd.DataFrame,
        common: list[str],
        per_image: dict[str, dict[str, np.ndarray]],
        config: ConfigView,
        weights: np.ndarray,
    ) -> dict[str, float]:
        nan = {
            key: math.nan
            for key in (
                "mce",
                "mce_low",
                "mce_high",
                "relative_mce",
                "relative_mce_low",
                "relative_mce_high",
                "mean_corruption_error",
                "mean_corruption_error_low",
                "mean_corruption_error_high",
            )
        }
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
        out["mean_corruption_error_low"], out["mean_corruption_error_high"] = np.percentile(
            mean_samples, [2.5, 97.5]
        ).tolist()
        if reference is None:
            return out
        shape = (len(common), len(config.severities))
        if reference == ALEXNET_IMAGENET_C.name:
            # AlexNet's published errors at exactly the severities run here (not its
            # five-severity means), and its published clean error for relative mCE.
            published = np.stack([ALEXNET_IMAGENET_C.errors_at(name, config.severities) for name in common])
            frame = errors.rename(columns={"family": "corruption", "level": "severity"})
            clean_errors = {model: float(clean_table["error"].loc[model])} if model in clean_table.index else {}
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
        reference_errors = table[(table["model"] == reference) & table["family"].isin(common)][
            ["model", "family", "level", "error"]
        ]
        frame = pd.concat([errors, reference_errors]).rename(columns={"family": "corruption", "level": "severity"})
        clean_errors = {name: float(clean_table["error"].astype(float)[name]) for name in (model, reference)}
        computed = corruption_summary(frame, clean_errors, reference, common).set_index("model").loc[model]
        out["mce"], out["relative_mce"] = float(computed["mce"]), float(computed["relative_mce"])
        reference_wrong = np.stack([reference_images[condition] for condition in conditions]).astype(np.float64)
        resampled_reference = (weights @ reference_wrong.T).reshape(-1, *shape)
        resampled = resampled_model.reshape(-1, *shape)
        model_clean = weights @ model_images["clean"].astype(np.float64)
        reference_clean = weights @ reference_images["clean"].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ce = resampled.sum(axis=2) / resampled_reference.sum(axis=2)
            relative = (resampled - model_clean[:, None, None]).sum(axis=2) / (
                resampled_reference - reference_clean[:, None, None]
            ).sum(axis=2)
        # On small samples a resample can hold no reference error at all (CE = inf); numpy
        # then warns while interpolating between infinite percentiles. The interval is
        # right as it is (unbounded); the warning would only alarm the user.
        with np.errstate(invalid="ignore"):
            out["mce_low"], out["mce_high"] = np.nanpercentile(ce.mean(axis=1), [2.5, 97.5]).tolist()
            out["relative_mce_low"], out["relative_mce_high"] = np.nanpercentile(
                relative.mean(axis=1), [2.5, 97.5]
            ).tolist()
        for metric in ("mce", "relative_mce"):
            if not math.isfinite(out[metric]):  # an undefined estimate has no interval
                out[f"{metric}_low"] = out[f"{metric}_high"] = math.nan
        return out
