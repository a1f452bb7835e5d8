"""Dense-prediction metrics (SPEC §7), numpy only: confusion matrices, per-class IoU, mIoU,
pixel accuracy, a bootstrap interval over images, and per-pixel flip shares.

IoU is accumulated over the whole evaluated set (one confusion matrix summed over all
pixels of all images), not averaged per image; pixels labelled ``ignore_index`` (255)
count nowhere. mIoU averages over the classes that occur in the ground truth or in the
predictions; a class absent from both has no IoU (NaN) and is left out.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "bootstrap_miou_interval",
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "per_image_confusion",
    "pixel_accuracy",
    "pixel_flip_share",
    "segmentation_scores",
    "sequence_pixel_flip_share",
]

IGNORE_INDEX = 255


def _check(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    valid = labels != ignore_index
    if predictions.size and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(f"predictions must lie in 0..{num_classes - 1}")
    if valid.any() and (labels[valid].min() < 0 or labels[valid].max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1} or be {ignore_index}")
    return labels, predictions


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Pixel counts summed over everything given: rows are true classes, columns predicted.

    Args:
        labels: ground-truth label maps (any shape), class ids or ``ignore_index``.
        predictions: predicted class ids, same shape.
        num_classes: number of classes C.
        ignore_index: label value excluded from the counts.

    Returns:
        int64 C x C matrix.
    """
    labels, predictions = _check(labels, predictions, num_classes, ignore_index)
    valid = labels != ignore_index
    pairs = labels[valid].astype(np.int64) * num_classes + predictions[valid].astype(np.int64)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_image_confusion(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """One confusion matrix per image: labels and predictions are N x H x W; returns N x C x C.

    Their sum over images is :func:`confusion_matrix` of the whole set, and resampling
    them is what :func:`bootstrap_miou_interval` does.
    """
    labels, predictions = _check(labels, predictions, num_classes, ignore_index)
    count = labels.shape[0]
    valid = labels.reshape(count, -1) != ignore_index
    pairs = labels.reshape(count, -1).astype(np.int64) * num_classes + predictions.reshape(count, -1).astype(np.int64)
    # Offsetting each image's cells by its own block lets one bincount fill all matrices.
    offsets = np.arange(count, dtype=np.int64)[:, None] * num_classes * num_classes
    flat = np.bincount((pairs + offsets)[valid], minlength=count * num_classes * num_classes)
    return flat.reshape(count, num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from labels and predictions.

    Args:
        confusion: C x C matrix (rows true, columns predicted), or ... x C x C for a stack.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(axis=-1) + confusion.sum(axis=-2) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / np.where(union > 0, union, 1), np.nan)


def mean_iou(confusion: np.ndarray) -> float | np.ndarray:
    """Mean IoU over the classes present in the ground truth or the predictions (NaN if none).

    A stack of matrices (... x C x C) gives one mIoU per matrix.
    """
    iou = iou_per_class(confusion)
    present = ~np.isnan(iou)
    counts = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(counts > 0, np.where(present, iou, 0).sum(axis=-1) / np.maximum(counts, 1), np.nan)
    return float(result) if np.ndim(result) == 0 else result


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Share of non-ignored pixels labelled correctly (NaN when there are none)."""
    confusion = np.asarray(confusion)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else math.nan


def bootstrap_miou_interval(
    per_image: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the set's mIoU, resampling images with replacement.

    Each resample sums the per-image confusion matrices of the drawn images and recomputes
    mIoU from the sum, so the interval is that of the accumulated (whole-set) metric.

    Args:
        per_image: N x C x C confusion matrices (:func:`per_image_confusion`).
        resamples: number of bootstrap resamples.
        confidence: coverage of the interval, e.g. 0.95.
        seed: seed of the resampling.

    Returns:
        (low, high); (NaN, NaN) for an empty set.
    """
    per_image = np.asarray(per_image)
    if per_image.ndim != 3 or per_image.shape[1] != per_image.shape[2]:
        raise ValueError(f"per_image must be N x C x C, got {per_image.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    count, classes, _ = per_image.shape
    if count == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    flat = per_image.reshape(count, classes * classes).astype(np.float64)
    values = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(count, 1))  # bounds the resample-weight matrix's memory
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        draws = rng.integers(0, count, (stop - start, count))
        # How often each image was drawn, per resample: one bincount over offset rows.
        rows = np.arange(stop - start, dtype=np.int64)[:, None] * count
        weights = np.bincount((draws + rows).ravel(), minlength=(stop - start) * count).reshape(stop - start, count)
        values[start:stop] = mean_iou((weights.astype(np.float64) @ flat).reshape(-1, classes, classes))
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return float(low), float(high)


def segmentation_scores(confusion: np.ndarray, classes: list[str] | None = None) -> dict[str, object]:
    """mIoU, pixel accuracy and the per-class IoUs (keyed by class name when given) of one matrix."""
    iou = iou_per_class(confusion)
    names = classes if classes is not None else [str(index) for index in range(len(iou))]
    return {
        "miou": mean_iou(confusion),
        "pixel_accuracy": pixel_accuracy(confusion),
        "iou": {name: (None if np.isnan(value) else float(value)) for name, value in zip(names, iou)},
    }


def pixel_flip_share(
    predictions: np.ndarray, reference: np.ndarray, labels: np.ndarray | None = None, ignore_index: int = IGNORE_INDEX
) -> float:
    """Share of pixels whose predicted label differs between two frames of the same scene.

    Args:
        predictions: predicted label maps of one frame (any shape).
        reference: predicted label maps of the frame compared with, same shape.
        labels: ground truth of the scene; pixels labelled ``ignore_index`` are left out.
        ignore_index: the ignored label value.
    """
    predictions = np.asarray(predictions)
    reference = np.asarray(reference)
    if predictions.shape != reference.shape:
        raise ValueError(f"frames differ in shape: {predictions.shape} and {reference.shape}")
    flips = predictions != reference
    if labels is not None:
        flips = flips[np.broadcast_to(np.asarray(labels) != ignore_index, flips.shape)]
    return float(flips.mean()) if flips.size else math.nan


def sequence_pixel_flip_share(
    frames: np.ndarray,
    noise: bool,
    difficulty: int = 1,
    labels: np.ndarray | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> float:
    """Per-pixel flip share over perturbation sequences whose frames share one label map.

    Frames are compared as in ImageNet-P's flip probability (SPEC §4): noise sequences
    each later frame with the first, the others each frame with the one ``difficulty``
    frames before it; the result is the share of (pixel, compared pair) whose label flips.

    Args:
        frames: predictions, sequences x frames x H x W.
        noise: whether the sequences are noise sequences.
        difficulty: frame distance of the compared pairs (non-noise sequences).
        labels: sequences x H x W ground truth; ``ignore_index`` pixels are left out.
        ignore_index: the ignored label value.
    """
    from robustbench_lift.metrics.stability import _frame_pairs

    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"frames must be sequences x frames x H x W, got {frames.shape}")
    earlier, later = _frame_pairs(frames.shape[1], noise, difficulty)
    if later.size == 0:
        return math.nan
    valid = None if labels is None else np.asarray(labels)[:, None]
    return pixel_flip_share(frames[:, later], frames[:, earlier], valid, ignore_index)
