"""Training the segmentation zoo: one recipe for every pooling kind, on garment scenes.

The scenes (:func:`robustbench_lift.data.segmentation.generate_garment_scenes`) are drawn
once per configuration and cached as one ``.npz`` next to the checkpoints, so parallel
jobs and resumed runs train on the same bytes. Every tensor a training step touches lives
on the training device (the whole scene set is uploaded once as uint8), and the per-step
host work is one slice of a pre-drawn permutation: the loss is summed on the device and
read once per epoch.

A trained model is written as safetensors whose metadata holds the training config, the
scene generator config, the curves (training loss, validation mIoU and seconds per
epoch), the clean test mIoU with its bootstrap interval, and package versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_lift.data.base import DEFAULT_CACHE, ImageDataset, channel_statistics
from robustbench_lift.data.segmentation import GarmentSceneConfig, SegmentationDataset, generate_garment_scenes
from robustbench_lift.errors import UserError
from robustbench_lift.metrics.segmentation import (
    bootstrap_miou_interval,
    iou_per_class,
    mean_iou,
    per_image_confusion,
    pixel_accuracy,
)
from robustbench_lift.models.checkpoints import save_checkpoint
from robustbench_lift.models.segmentation import build_segmenter, resolve_resampler_options
from robustbench_lift.models.segmentation_zoo import segmentation_zoo_file_name
from robustbench_lift.nn.lifting import lift_pools, lifting_regularization
from robustbench_lift.training import package_versions
from robustbench_lift.utils.io import atomic_write

__all__ = [
    "SceneSplits",
    "SegmentationTrainingConfig",
    "checkpoint_name",
    "evaluate_segmenter",
    "load_scene_splits",
    "predict_labels",
    "train_segmentation_zoo",
    "train_segmenter",
]

log = logging.getLogger(__name__)


@dataclass
class SegmentationTrainingConfig:
    """Everything that decides a trained segmenter; stored in its checkpoint's metadata."""

    architecture: str = "segnet_small"
    pooling: str = "max"
    pooling_options: dict[str, Any] = field(default_factory=dict)
    widths: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 1
    scene_config: dict[str, Any] = field(default_factory=lambda: GarmentSceneConfig().to_dict())
    data_seed: int = 0  # the scenes: the same for every model of the zoo
    train_scenes: int = 4000
    validation_scenes: int = 500  # more training-split scenes, after the training ones
    test_scenes: int = 1000
    epochs: int = 8
    batch_size: int = 32  # progress is step-bound: batch 64 reached half the mIoU at the same epoch
    # AdamW: in short CPU trial runs SGD (lr 0.05, one-cycle) stayed at the all-background
    # solution far longer; the one-cycle schedule is used with either.
    optimizer: str = "adamw"
    learning_rate: float = 5e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    detail_weight: float = 0.01  # lifting regularisers, learned lifting only
    approximation_weight: float = 0.01
    seed: int = 0  # weights, batch order and flips
    threads: int = 1
    device: str = "cpu"

    def scene_key(self) -> dict[str, Any]:
        """What decides the scene set (and so its cache file)."""
        return {
            "config": dict(self.scene_config),
            "data_seed": self.data_seed,
            "train_scenes": self.train_scenes,
            "validation_scenes": self.validation_scenes,
            "test_scenes": self.test_scenes,
        }


@dataclass
class SceneSplits:
    """The training, validation and test scene sets of one configuration."""

    train: SegmentationDataset
    validation: SegmentationDataset
    test: SegmentationDataset
    key: dict[str, Any]
    mean: list[float]  # per-channel statistics of the training images in [0, 1]
    std: list[float]


OPTIMIZERS = {
    "sgd": lambda parameters, config: torch.optim.SGD(
        parameters, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True
    ),
    "adamw": lambda parameters, config: torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay
    ),
}


def checkpoint_name(config: SegmentationTrainingConfig) -> str:
    """File name of a zoo checkpoint, e.g. ``garment_scenes-segnet_small-lift-seed0.safetensors``
    (the name :mod:`robustbench_lift.models.segmentation_zoo` reads)."""
    return segmentation_zoo_file_name(config.pooling, config.seed, config.architecture)


def _scene_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def load_scene_splits(
    config: SegmentationTrainingConfig, cache_dir: str | Path | None = None, data_dir: str | Path | None = None
) -> SceneSplits:
    """Generates the scene splits of ``config`` or reads them from ``cache_dir``.

    Args:
        config: decides scene geometry, counts and seed.
        cache_dir: folder of the cache file (None: generate without caching).
        data_dir: Fashion-MNIST folder.

    Returns:
        Training scenes 0..train-1 and validation scenes train..train+val-1 of the
        training split, and test scenes 0..test-1 of the test split.
    """
    key = config.scene_key()
    path = None if cache_dir is None else Path(cache_dir) / f"garment_scenes-{_scene_digest(key)}.npz"
    scene_config = GarmentSceneConfig(**key["config"])
    if path is not None and path.is_file():
        with np.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
        header = json.loads(str(arrays.pop("header")))

        def part(name: str) -> SegmentationDataset:
            return SegmentationDataset(
                arrays[f"{name}_images"], arrays[f"{name}_labels"], header["classes"], name="garment_scenes"
            )

        return SceneSplits(part("train"), part("validation"), part("test"), key, header["mean"], header["std"])
    train_and_validation = generate_garment_scenes(
        config.train_scenes + config.validation_scenes, "train", config.data_seed, scene_config, data_dir
    )
    train = train_and_validation.subset(np.arange(config.train_scenes))
    validation = train_and_validation.subset(np.arange(config.train_scenes, len(train_and_validation)))
    test = generate_garment_scenes(config.test_scenes, "test", config.data_seed, scene_config, data_dir)
    mean, std = channel_statistics(cast(ImageDataset, train))  # reads only .images, which both share
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"header": np.array(json.dumps({"classes": train.classes, "mean": mean, "std": std}))}
        for name, part_set in (("train", train), ("validation", validation), ("test", test)):
            arrays[f"{name}_images"], arrays[f"{name}_labels"] = part_set.images, part_set.labels
        # Atomic: parallel jobs started later see the whole file or none.
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
    return SceneSplits(train, validation, test, key, mean, std)


def _images_on(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N x H x W x 3 -> uint8 N x 3 x H x W on ``device`` (floats are made per batch)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)


@torch.no_grad()
def predict_labels(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Argmax class per pixel: uint8 N x H x W for uint8 N x H x W x 3 images (or a uint8 NCHW tensor).

    Args:
        model: a segmenter taking float [0, 1] inputs.
        images: the images.
        batch_size: images per forward pass.
        device: where to run (default: the model's device).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    pixels = images if isinstance(images, torch.Tensor) else _images_on(images, device)
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, pixels.shape[0], batch_size):
        batch = pixels[start : start + batch_size].to(device).float().div_(255)
        outputs.append(model(batch).argmax(1).to(torch.uint8))
    model.train(was_training)
    return torch.cat(outputs).cpu().numpy()


def evaluate_segmenter(
    model: torch.nn.Module, dataset: SegmentationDataset, batch_size: int = 256, bootstrap: int = 0, seed: int = 0
) -> dict[str, Any]:
    """Clean mIoU, pixel accuracy and per-class IoU of ``model`` on ``dataset``.

    Args:
        model: a segmenter taking float [0, 1] inputs.
        dataset: scenes with label maps.
        batch_size: images per forward pass.
        bootstrap: resamples of the bootstrap interval of mIoU (0: none).
        seed: seed of the bootstrap.
    """
    predictions = predict_labels(model, dataset.images, batch_size)
    per_image = per_image_confusion(dataset.labels, predictions, len(dataset.classes), dataset.ignore_index)
    confusion = per_image.sum(axis=0)
    result: dict[str, Any] = {
        "miou": mean_iou(confusion),
        "pixel_accuracy": pixel_accuracy(confusion),
        "iou": {
            name: (None if math.isnan(v) else round(float(v), 6))
            for name, v in zip(dataset.classes, iou_per_class(confusion))
        },
    }
    if bootstrap:
        result["miou_interval"] = list(bootstrap_miou_interval(per_image, bootstrap, seed=seed))
    return result


def train_segmenter(
    config: SegmentationTrainingConfig,
    output: str | Path,
    scenes: SceneSplits | None = None,
    data_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Trains one segmenter and writes ``output`` (safetensors with metadata); returns the metadata.

    Args:
        config: the recipe (same for every pooling kind of a zoo).
        output: checkpoint path.
        scenes: pre-generated scene splits (default: generated from ``config``).
        data_dir: Fashion-MNIST folder, used when ``scenes`` is None.
        progress: log every epoch at INFO level.
    """
    if config.epochs < 1 or config.batch_size < 1:
        raise UserError(f"epochs and batch size must be positive, got {config.epochs} and {config.batch_size}")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda given but no CUDA device is available")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    scenes = scenes or load_scene_splits(config, None, data_dir)
    options = resolve_resampler_options(config.pooling, config.pooling_options)
    mean, std = scenes.mean, scenes.std
    classes = scenes.train.classes
    architecture_options = {"widths": list(config.widths), "convs_per_stage": config.convs_per_stage}
    model = build_segmenter(
        config.pooling, len(classes), config.architecture, options, mean, std, **architecture_options
    )
    model.to(device)
    learned_lifting = any(pool.scheme == "learned" for pool in lift_pools(model))
    detail_weight = config.detail_weight if learned_lifting else 0.0
    approximation_weight = config.approximation_weight if learned_lifting else 0.0

    if config.optimizer not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {config.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), config)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes but for an epoch's last batch
    count = len(scenes.train)
    steps_per_epoch = math.ceil(count / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(config.seed)
    images = _images_on(scenes.train.images, device)
    labels = torch.from_numpy(scenes.train.labels).to(device)
    validation_images = _images_on(scenes.validation.images, device)
    curve: dict[str, list[float]] = {"train_loss": [], "validation_miou": [], "epoch_seconds": []}
    started = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_started = time.perf_counter()
        model.train()
        # Order and flips for the whole epoch are drawn on the host in one go and uploaded once.
        order = torch.randperm(count, generator=generator).to(device)
        flips = (torch.rand(count, generator=generator) < 0.5).to(device)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            chosen = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = images[chosen].float().div_(255)
            target = labels[chosen].long()
            flip = flips[chosen]
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            target = torch.where(flip[:, None, None], target.flip(-1), target)
            loss = F.cross_entropy(model(batch), target, ignore_index=scenes.train.ignore_index)
            if detail_weight or approximation_weight:
                detail, approximation = lifting_regularization(model)
                loss = loss + detail_weight * detail + approximation_weight * approximation
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
        predictions = predict_labels(model, validation_images)
        confusion = per_image_confusion(scenes.validation.labels, predictions, len(classes)).sum(axis=0)
        curve["train_loss"].append(round(float(loss_sum) / steps_per_epoch, 5))
        curve["validation_miou"].append(round(float(mean_iou(confusion)), 5))
        curve["epoch_seconds"].append(round(time.perf_counter() - epoch_started, 2))
        if progress:
            log.info(
                "%s seed %d epoch %d/%d: loss %.4f, validation mIoU %.4f (%.1f s)",
                config.pooling, config.seed, epoch + 1, config.epochs,
                curve["train_loss"][-1], curve["validation_miou"][-1], curve["epoch_seconds"][-1],
            )  # fmt: skip
    training_seconds = time.perf_counter() - started
    test = evaluate_segmenter(model, scenes.test, bootstrap=1000, seed=0)
    metadata = {
        "task": "segmentation",
        "architecture": config.architecture,
        "architecture_options": architecture_options,
        "pooling": config.pooling,
        "pooling_options": options,
        "num_classes": len(classes),
        "classes": classes,
        "ignore_index": scenes.train.ignore_index,
        "dataset": "garment_scenes",
        "scene_generator": scenes.key
        | {"source": "Fashion-MNIST (train split for train/validation, test split for test)"},
        "preprocessing": {"input": "float RGB in [0, 1], 64 x 64 garment scenes", "mean": mean, "std": std},
        "seed": config.seed,
        "epochs": config.epochs,
        "training": asdict(config) | {"detail_weight": detail_weight, "approximation_weight": approximation_weight},
        "curve": curve,
        "validation_miou_per_epoch": curve["validation_miou"],
        "clean_test_miou": round(test["miou"], 6),
        "clean_test_miou_interval": [round(value, 6) for value in test["miou_interval"]],
        "clean_test_pixel_accuracy": round(test["pixel_accuracy"], 6),
        "clean_test_iou": test["iou"],
        "test_size": len(scenes.test),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "training_seconds": round(training_seconds, 1),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": config.threads,
        "versions": package_versions(),
    }
    model.eval()
    save_checkpoint(model, metadata, output)
    return metadata


def _train_one(
    config: SegmentationTrainingConfig, output: str, cache_dir: str, data_dir: str | None, progress: bool
) -> dict[str, Any]:
    """One zoo model in a worker process: scenes from the shared cache, then training."""
    if progress:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(config.threads)
    scenes = load_scene_splits(config, cache_dir, data_dir)
    metadata = train_segmenter(config, output, scenes, progress=progress)
    return {
        "kind": config.pooling,
        "seed": config.seed,
        "status": "trained",
        "path": output,
        "clean_test_miou": metadata["clean_test_miou"],
        "training_seconds": metadata["training_seconds"],
        "epoch_seconds": metadata["curve"]["epoch_seconds"],
    }


def train_segmentation_zoo(
    kinds: Sequence[str],
    seeds: Sequence[int],
    output_dir: str | Path,
    base: SegmentationTrainingConfig | None = None,
    jobs: int = 1,
    cache_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Trains one segmenter per (pooling kind, seed) with the same recipe; resumable.

    A model whose checkpoint already exists is skipped (checkpoints are written
    atomically, so an existing file is complete) unless ``force``. The scenes are
    generated once into ``cache_dir`` before any job starts.

    Args:
        kinds: pooling kinds (:data:`robustbench_lift.models.segmentation.RESAMPLERS`).
        seeds: training seeds (weights, batch order, flips; the scenes stay the same).
        output_dir: folder of the checkpoints.
        base: the recipe; its ``pooling`` and ``seed`` are replaced per model.
        jobs: parallel worker processes (1: train in this process).
        cache_dir: folder of the scene cache (default: the data cache,
            ``$ROBUSTBENCH_LIFT_DATA/garment-scenes``, so no data lands beside shipped weights).
        data_dir: Fashion-MNIST folder.
        force: retrain models whose checkpoint exists.
        progress: log every epoch.

    Returns:
        One record per model: kind, seed, status (``trained`` or ``exists``), path, and for
        trained models the clean test mIoU and training seconds.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from robustbench_lift.models.segmentation import RESAMPLERS

    base = base or SegmentationTrainingConfig()
    for kind in kinds:
        RESAMPLERS.get(kind)
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if any(seed < 0 for seed in seeds):
        raise UserError("seeds must be non-negative")
    output_dir = Path(output_dir)
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE / "garment-scenes"
    plans = [replace(base, pooling=kind, seed=int(seed)) for seed in seeds for kind in kinds]
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for position, config in enumerate(plans):
        path = output_dir / checkpoint_name(config)
        if path.exists() and not force:
            records[position] = {"kind": config.pooling, "seed": config.seed, "status": "exists", "path": str(path)}
        else:
            todo.append((position, config, str(path)))
    if todo:
        scenes = load_scene_splits(base, cache, data_dir)  # generates the cache once for every job
        data = None if data_dir is None else str(data_dir)
        if jobs == 1:
            for position, config, output in todo:
                metadata = train_segmenter(config, output, scenes, progress=progress)
                records[position] = {
                    "kind": config.pooling, "seed": config.seed, "status": "trained", "path": output,
                    "clean_test_miou": metadata["clean_test_miou"], "training_seconds": metadata["training_seconds"],
                    "epoch_seconds": metadata["curve"]["epoch_seconds"],
                }  # fmt: skip
        else:
            del scenes
            # spawn: CUDA cannot be used in forked children, and spawn behaves the same everywhere.
            with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context("spawn")) as pool:
                futures = {
                    pool.submit(_train_one, config, path, str(cache), data, progress): position
                    for position, config, path in todo
                }
                for future, position in futures.items():
                    records[position] = future.result()
    return [records[position] for position in range(len(plans))]
