"""The segmentation suite: mIoU under corruptions and per-pixel stability (``docs/segmentation.md``).

Cells of one model: ``clean``, ``<corruption>/<severity>`` and
``stability/<perturbation>/d<difficulty>``. Corruptions come from the same engine and
profiles as the classification corruption suite and are applied to the image only: the
label map is never touched, so only corruptions that leave every pixel where it was are
allowed (:data:`GEOMETRIC_CORRUPTIONS` are refused). The default set is the 16 ImageNet-C
corruptions of Kamann & Rother (CVPR 2020): noise, blur, digital and weather, without
elastic transform, pixelate and zoom blur.

Metrics per cell: mIoU (one confusion matrix over all pixels of the cell's images) with a
percentile bootstrap interval over images, pixel accuracy, and for corrupted cells the
relative mIoU (corrupted / clean). Stability cells run label-preserving perturbation
sequences (noise, blur, brightness and similar; every frame shares the image's label map)
and report the share of non-ignored pixels whose predicted label flips between compared
frames (consecutive frames ``difficulty`` apart, noise frames against the clean first one).

Summary per model: clean mIoU and pixel accuracy, mean mIoU over the corruption cells,
relative robustness (mean corrupted mIoU / clean mIoU, Kamann & Rother's measure) and the
mean pixel flip share, each with a paired bootstrap interval over images (sequences).

This suite runs on a segmentation data set (``segmentation_dataset``) through
:func:`robustbench_lift.run.segmentation.run_segmentation_benchmark`
(``robustbench-lift run --task segmentation``), not beside the classification suites.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import pandas as pd

from robustbench_lift.errors import UserError, corruption_input
from robustbench_lift.evaluation.suites.base import ModelEntry, RunContext, Suite, SuiteOutput, failed_row
from robustbench_lift.evaluation.suites.corruption import select_names
from robustbench_lift.metrics.segmentation import (
    bootstrap_miou_interval,
    mean_iou,
    per_image_confusion,
    pixel_accuracy,
    sequence_pixel_flip_share,
)
from robustbench_lift.metrics.statistics import BOOTSTRAP_SAMPLES, bootstrap_interval, bootstrap_weights
from robustbench_lift.options import ConfigView, Option

if TYPE_CHECKING:
    from torch import nn

    from robustbench_lift.data.segmentation import SegmentationDataset

__all__ = [
    "DEFAULT_CORRUPTIONS",
    "DEFAULT_PERTURBATIONS",
    "GEOMETRIC_CORRUPTIONS",
    "LABEL_PRESERVING_PERTURBATIONS",
    "SegmentationSuite",
    "predict_label_maps",
    "segmentation_data",
    "selected_segmentation_corruptions",
    "selected_segmentation_perturbations",
]

#: Kamann & Rother's 16 corruptions (blur, noise, digital, weather).
DEFAULT_CORRUPTIONS = (
    "motion_blur", "defocus_blur", "glass_blur", "gaussian_blur",
    "gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise",
    "brightness", "contrast", "saturate", "jpeg_compression",
    "snow", "spatter", "fog", "frost",
)  # fmt: skip
#: Corruptions that move pixels; with an untouched label map they would be scored against the wrong labels.
GEOMETRIC_CORRUPTIONS = frozenset({"elastic_transform"})
#: Perturbations whose frames keep every pixel in place (so they share one label map).
LABEL_PRESERVING_PERTURBATIONS = (
    "gaussian_noise", "shot_noise", "speckle_noise", "motion_blur", "zoom_blur", "gaussian_blur", "brightness",
    "snow", "spatter",
)  # fmt: skip
DEFAULT_PERTURBATIONS = ("gaussian_noise", "shot_noise", "speckle_noise", "gaussian_blur", "motion_blur", "brightness")
_CORRUPTION_SETS = {"default": DEFAULT_CORRUPTIONS}
_PERTURBATION_SETS = {"default": DEFAULT_PERTURBATIONS, "all": LABEL_PRESERVING_PERTURBATIONS}
STABILITY = "stability"


def selected_segmentation_corruptions(config: ConfigView) -> list[str]:
    """The corruption names of ``segmentation_corruptions`` (``default``, ``all`` or names), validated."""
    import corruptions

    def names_of(which: str) -> list[str]:
        if which == "all":
            return [name for name in corruptions.corruption_names("all") if name not in GEOMETRIC_CORRUPTIONS]
        return list(_CORRUPTION_SETS[which])

    value = config.segmentation_corruptions
    for name in [value] if isinstance(value, str) else value:
        if name in GEOMETRIC_CORRUPTIONS:
            raise UserError(f"corruption {name!r} moves pixels, so the label map would no longer fit the image")
    return select_names(value, ("default", "all"), names_of, "corruption")


def selected_segmentation_perturbations(config: ConfigView) -> list[str]:
    """The perturbations of ``segmentation_perturbations`` (``default``, ``all`` or names), validated."""
    from corruptions import perturbations

    value = config.segmentation_perturbations
    for name in [value] if isinstance(value, str) else value:
        if name not in _PERTURBATION_SETS and name in perturbations.perturbation_names("all"):
            if name not in LABEL_PRESERVING_PERTURBATIONS:
                raise UserError(
                    f"perturbation {name!r} moves pixels, so its frames do not share one label map; "
                    f"label-preserving: {', '.join(LABEL_PRESERVING_PERTURBATIONS)}"
                )
    return select_names(value, ("default", "all"), lambda which: list(_PERTURBATION_SETS[which]), "perturbation")


def segmentation_data(context: RunContext) -> SegmentationDataset:
    """The run's segmentation sample (this suite's runner puts it where classification runs keep theirs)."""
    return cast("SegmentationDataset", context.dataset)


def predict_label_maps(model: nn.Module, images: np.ndarray, batch_size: int, device: str) -> np.ndarray | None:
    """Argmax label maps of ``model`` on uint8 N x H x W x 3 ``images``.

    A model may return logits N x C x H' x W' or torchvision's dict (its ``out`` entry);
    logits at another size than the input are upsampled bilinearly, as torchvision's
    segmentation models do themselves.

    Returns:
        uint8 N x H x W predictions, or None when the model returned NaN or inf.
    """
    import torch
    import torch.nn.functional as F

    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            batch = batch.permute(0, 3, 1, 2).to(device).float().div_(255)
            logits = model(batch)
            if isinstance(logits, Mapping):
                logits = logits["out"]
            if logits.shape[-2:] != batch.shape[-2:]:
                logits = F.interpolate(logits, size=batch.shape[-2:], mode="bilinear", align_corners=False)
            if not bool(logits.isfinite().all()):
                return None
            outputs.append(logits.argmax(1).to(torch.uint8).cpu())
    return torch.cat(outputs).numpy()


class SegmentationSuite(Suite):
    """mIoU clean and under corruptions, relative robustness, per-pixel flip share."""

    name = "segmentation"
    description = "segmentation: mIoU clean and per corruption x severity, relative robustness, pixel flip share"
    options: ClassVar[Mapping[str, Option]] = {
        "segmentation_dataset": Option(str, "garment_scenes", "garment_scenes, voc2012 or cityscapes"),
        "segmentation_split": Option(str | None, None, "split (null: test for garment_scenes, val for disk layouts)"),
        "segmentation_size": Option(list[int] | None, None, "evaluation size [H, W] of disk layouts (null: own size)"),
        "segmentation_fit": Option(str, "resize", "how disk samples reach segmentation_size: resize, resize_crop, crop"),
        "segmentation_corruptions": Option(str | list[str], "default", "corruption names, or default (Kamann & Rother's 16) / all"),
        "segmentation_perturbations": Option(str | list[str], "default", "label-preserving perturbations, or default / all"),
        "segmentation_sequence_count": Option(int | None, 50, "perturbation sequences, from the first images"),
        "segmentation_grid_images": Option(int, 4, "images in the report's prediction grid (0: none)"),
    }  # fmt: skip

    def validate(self, config: ConfigView) -> None:
        from corruptions.perturbations import validate_difficulty
        from robustbench_lift.data.segmentation import FITS, SEGMENTATION_DATASETS

        if list(config.suites) != [self.name]:
            raise UserError("the segmentation suite runs on its own: robustbench-lift run --task segmentation")
        SEGMENTATION_DATASETS.get(config.segmentation_dataset)
        FITS.get(config.segmentation_fit)
        if config.segmentation_size is not None and (
            len(config.segmentation_size) not in (1, 2) or min(config.segmentation_size) <= 0
        ):
            raise UserError(f"segmentation_size must be [H, W] or [side], positive, got {config.segmentation_size}")
        if not config.severities or any(severity not in (1, 2, 3, 4, 5) for severity in config.severities):
            raise UserError(f"severities must be a non-empty subset of 1..5, got {config.severities}")
        selected_segmentation_corruptions(config)
        if config.segmentation_sequence_count is not None and config.segmentation_sequence_count < 0:
            raise UserError(f"segmentation_sequence_count must be >= 0, got {config.segmentation_sequence_count}")
        if config.segmentation_grid_images < 0:
            raise UserError(f"segmentation_grid_images must be >= 0, got {config.segmentation_grid_images}")
        with corruption_input():
            validate_difficulty(selected_segmentation_perturbations(config), config.difficulty, config.profile)

    def record(self, config: ConfigView, context: RunContext | None = None) -> dict[str, Any]:
        return {
            "corruptions": selected_segmentation_corruptions(config),
            "severities": list(config.severities),
            "perturbations": selected_segmentation_perturbations(config),
            "difficulty": config.difficulty,
            "profile": config.profile,
        }

    def pairs(self, config: ConfigView) -> list[tuple[str, int]]:
        return [
            (name, severity) for name in selected_segmentation_corruptions(config) for severity in config.severities
        ]

    def sequence_count(self, context: RunContext) -> int:
        count = context.config.segmentation_sequence_count
        return len(segmentation_data(context)) if count is None else min(count, len(segmentation_data(context)))

    def expected_work(self, condition: str, context: RunContext) -> float:
        if _group(condition) != STABILITY:
            return float(len(segmentation_data(context)))
        from corruptions.perturbations import frame_count

        return float(self.sequence_count(context) * frame_count(condition.split("/")[1], context.config.profile))

    def conditions(self, context: RunContext) -> list[str]:
        config = context.config
        stability = (
            [f"{STABILITY}/{name}/d{config.difficulty}" for name in selected_segmentation_perturbations(config)]
            if self.sequence_count(context)
            else []
        )
        return ["clean"] + [f"{name}/{severity}" for name, severity in self.pairs(config)] + stability

    def prepare(self, context: RunContext, conditions: Sequence[str] | None = None) -> dict[str, Any]:
        import corruptions
        from corruptions import perturbations

        config = context.config
        conditions = self.conditions(context) if conditions is None else list(conditions)
        pairs = [(c.rsplit("/", 1)[0], int(c.rsplit("/", 1)[1])) for c in conditions if _group(c) == "corruption"]
        names = [c.split("/")[1] for c in conditions if _group(c) == STABILITY]
        data = segmentation_data(context)
        prepared: dict[str, Any] = {"corrupted": {}, "sequences": {}}
        if pairs:
            prepared["corrupted"] = corruptions.corrupt_many(
                data.images, pairs, profile=config.profile, seed=config.seed, indices=context.indices,
                workers=config.workers, progress=True,
            )  # fmt: skip
        if names:
            count = self.sequence_count(context)
            prepared["sequences"] = perturbations.perturb_many(
                data.images[:count], names, profile=config.profile, difficulty=config.difficulty, seed=config.seed,
                indices=context.indices[:count], workers=config.workers, progress=True,
            )  # fmt: skip
        return prepared

    def evaluate_condition(
        self, entry: ModelEntry, condition: str, prepared: dict[str, Any], context: RunContext
    ) -> SuiteOutput:
        config = context.config
        data = segmentation_data(context)
        group = _group(condition)
        base = {"suite": self.name, "condition": condition, "group": group}
        if group == STABILITY:
            return self._stability(entry, condition, prepared, context, base)
        if group == "clean":
            images, family, level = data.images, "clean", 0.0
        else:
            family, severity = condition.rsplit("/", 1)
            images, level = prepared["corrupted"][(family, int(severity))], float(severity)
        predictions = predict_label_maps(entry.model, images, config.batch_size, context.device)
        if predictions is None:
            return SuiteOutput([failed_row(condition, family, level, len(data)) | base])
        per_image = per_image_confusion(data.labels, predictions, len(data.classes), data.ignore_index)
        confusion = per_image.sum(axis=0)
        low, high = bootstrap_miou_interval(per_image, BOOTSTRAP_SAMPLES, seed=config.seed)
        row = base | {
            "family": family,
            "level": level,
            "status": "ok",
            "n": len(data),
            "miou": mean_iou(confusion),
            "miou_low": low,
            "miou_high": high,
            "pixel_accuracy": pixel_accuracy(confusion),
        }
        grid = config.segmentation_grid_images
        return SuiteOutput(
            [row],
            {f"{condition}/confusion": per_image, f"{condition}/grid": predictions[:grid] if grid else predictions[:0]},
        )

    def _stability(
        self, entry: ModelEntry, condition: str, prepared: dict[str, Any], context: RunContext, base: dict[str, Any]
    ) -> SuiteOutput:
        from corruptions.perturbations import NOISE_PERTURBATIONS

        config = context.config
        data = segmentation_data(context)
        name = condition.split("/")[1]
        sequences = prepared["sequences"][name]
        count, frames = sequences.shape[:2]
        predictions = predict_label_maps(
            entry.model, sequences.reshape(-1, *sequences.shape[2:]), config.batch_size, context.device
        )
        if predictions is None:
            return SuiteOutput([failed_row(condition, name, float(config.difficulty), count) | base])
        predictions = predictions.reshape(count, frames, *predictions.shape[1:])
        labels = data.labels[:count]
        noise = name in NOISE_PERTURBATIONS
        per_sequence = np.array(
            [
                sequence_pixel_flip_share(predictions[i : i + 1], noise, config.difficulty, labels[i : i + 1], data.ignore_index)
                for i in range(count)
            ]
        )  # fmt: skip
        weights = bootstrap_weights(count, BOOTSTRAP_SAMPLES, config.seed)
        finite = np.nan_to_num(per_sequence)
        low, high = bootstrap_interval(weights @ finite)
        row = base | {
            "family": name,
            "level": float(config.difficulty),
            "status": "ok",
            "n": count,
            "frames": frames,
            "pixel_flip_share": sequence_pixel_flip_share(predictions, noise, config.difficulty, labels, data.ignore_index),
            "pixel_flip_share_low": low,
            "pixel_flip_share_high": high,
        }  # fmt: skip
        return SuiteOutput([row], {f"{condition}/flips": per_sequence})

    def finalize(
        self, model: str, rows: list[dict[str, Any]], per_image: dict[str, np.ndarray], context: RunContext
    ) -> list[dict[str, Any]]:
        """Adds ``relative_miou``: a corrupted cell's mIoU over the clean mIoU."""
        clean = next((row["miou"] for row in rows if row["condition"] == "clean" and row["status"] == "ok"), math.nan)
        for row in rows:
            if row.get("group") == "corruption" and row["status"] == "ok":
                row["relative_miou"] = row["miou"] / clean if clean > 0 else math.nan
        return rows

    def summarize(
        self,
        results: pd.DataFrame,
        per_image: dict[str, dict[str, np.ndarray]],
        models: list[ModelEntry],
        context: RunContext,
    ) -> pd.DataFrame:
        config = context.config
        data = segmentation_data(context)
        corrupted = [f"{name}/{severity}" for name, severity in self.pairs(config)]
        stability = [c for c in self.conditions(context) if _group(c) == STABILITY]
        table = results[(results["suite"] == self.name) & (results["status"] == "ok")]
        classes = len(data.classes)
        weights = bootstrap_weights(len(data), BOOTSTRAP_SAMPLES, config.seed)
        summary = []
        for entry in models:
            arrays = per_image.get(entry.name, {})
            rows = table[table["model"] == entry.name].set_index("condition")
            row: dict[str, Any] = {"model": entry.name, "n": len(data)}
            nan_keys = ("clean_miou", "mean_corrupted_miou", "relative_robustness", "mean_pixel_flip_share")
            row |= {f"{key}{suffix}": math.nan for key in nan_keys for suffix in ("", "_low", "_high")}
            row["clean_pixel_accuracy"] = math.nan
            if "clean" in rows.index:
                row["clean_miou"] = float(rows.loc["clean", "miou"])
                row["clean_miou_low"] = float(rows.loc["clean", "miou_low"])
                row["clean_miou_high"] = float(rows.loc["clean", "miou_high"])
                row["clean_pixel_accuracy"] = float(rows.loc["clean", "pixel_accuracy"])
            if corrupted and all(f"{c}/confusion" in arrays for c in ["clean", *corrupted]):
                row["mean_corrupted_miou"] = float(rows.loc[corrupted, "miou"].mean())
                clean = row["clean_miou"]
                # Undefined (NaN) when the model gets no IoU at all on clean images.
                row["relative_robustness"] = row["mean_corrupted_miou"] / clean if clean > 0 else math.nan
                # Paired bootstrap over images: each resample recomputes every condition's
                # whole-set mIoU from the same drawn images.
                clean_samples = _resampled_miou(weights, arrays["clean/confusion"], classes)
                mean_samples = np.mean(
                    [_resampled_miou(weights, arrays[f"{c}/confusion"], classes) for c in corrupted], axis=0
                )
                row["mean_corrupted_miou_low"], row["mean_corrupted_miou_high"] = bootstrap_interval(mean_samples)
                with np.errstate(divide="ignore", invalid="ignore"):
                    relative = mean_samples / clean_samples
                row["relative_robustness_low"], row["relative_robustness_high"] = bootstrap_interval(relative)
            usable = [c for c in stability if c in rows.index and f"{c}/flips" in arrays]
            if usable:
                row["mean_pixel_flip_share"] = float(rows.loc[usable, "pixel_flip_share"].mean())
                flips = np.stack([np.nan_to_num(arrays[f"{c}/flips"]) for c in usable])
                sequence_weights = bootstrap_weights(flips.shape[1], BOOTSTRAP_SAMPLES, config.seed + 1)
                samples = (sequence_weights @ flips.T).mean(axis=1)
                row["mean_pixel_flip_share_low"], row["mean_pixel_flip_share_high"] = bootstrap_interval(samples)
            summary.append(row)
        return pd.DataFrame(summary).set_index("model")  # fmt: skip


def _group(condition: str) -> str:
    """``clean``, ``corruption`` or ``stability``: what a cell measures."""
    if condition == "clean":
        return "clean"
    return STABILITY if condition.startswith(f"{STABILITY}/") else "corruption"


def _resampled_miou(weights: np.ndarray, per_image: np.ndarray, classes: int) -> np.ndarray:
    """Whole-set mIoU of each bootstrap resample (``weights``: resamples x images)."""
    flat = per_image.reshape(len(per_image), classes * classes).astype(np.float64)
    return np.asarray(mean_iou((weights @ flat).reshape(-1, classes, classes)), dtype=np.float64)
