"""What each model of a run receives: its model behind its declared preprocessing, its
outputs restricted to the data set's classes, and the images of its input group.

The runner applies these before any suite sees a model, so every suite (clean,
corruption, perturbation, shift, adversarial) evaluates the same thing:

1. :func:`with_preprocessing`: a module that declares a :class:`Preprocessing` (or takes
   one channel) goes behind :class:`PreprocessedModel` (normalisation inside, the
   channel rule of :mod:`robustbench_lift.models.preprocessing`).
2. :func:`group_models`: models whose geometry (resize/crop/size) gives the same pixels
   share one *input group*; each group's clean images are decoded (or resized) once and
   its corrupted inputs generated once, from the same sampled indices.
3. :func:`with_classes`: a 1000-way ImageNet model on a folder holding a subset of the
   classes predicts among the present classes only (:class:`ClassSubset`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robustbench_lift.data.base import ImageDataset
from robustbench_lift.data.classes import imagenet_wnids
from robustbench_lift.data.geometry import Geometry
from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.suites.base import ModelEntry, RunContext

__all__ = [
    "InputGroup",
    "RunInputs",
    "check_classes",
    "declared_geometry",
    "group_models",
    "with_classes",
    "with_preprocessing",
]


@dataclass
class InputGroup:
    """Models that receive the same images.

    Attributes:
        geometry: the resize/crop the group's images get, None for the data set's own.
        models: names of the models, in run order.
    """

    geometry: Geometry | None
    models: list[str] = field(default_factory=list)

    def describe(self, data: Any) -> str:
        """The group's images in words, e.g. ``resize 232, crop 224 (bilinear)``."""
        geometry = self.geometry if self.geometry is not None else getattr(data, "geometry", None)
        return geometry.describe() if geometry is not None else "as stored"


@dataclass
class RunInputs:
    """The sampled images of a run, per input group.

    Attributes:
        data: the data set (an ImageDataset, or ImageFiles decoded on demand).
        indices: the run's sampled indices (the same for every group).
        groups: from :func:`group_models`; the first is the run's reference sample.
        workers: decoding threads.
    """

    data: Any
    indices: np.ndarray
    groups: list[InputGroup]
    workers: int | None = None
    _first: ImageDataset | None = field(default=None, init=False, repr=False)

    def first_dataset(self) -> ImageDataset:
        """The first group's images (decoded once and kept: the run's context holds them)."""
        if self._first is None:
            self._first = self.data.load(self.indices, self.groups[0].geometry, self.workers)
        return self._first

    def context(self, group: InputGroup, context: RunContext) -> RunContext:
        """``context`` with ``group``'s images (decoded or resized now for a later group)."""
        if group is self.groups[0]:
            return context
        return dataclasses.replace(context, dataset=self.data.load(self.indices, group.geometry, self.workers))

    def describe(self, model: str) -> str:
        """The images ``model`` receives, in words (for run.json)."""
        group = next(group for group in self.groups if model in group.models)
        return group.describe(self.data)


def with_preprocessing(entry: ModelEntry) -> ModelEntry:
    """``entry`` with its model behind its declared preprocessing.

    A model already wrapped (every model this package loads) is kept. A module with a
    ``preprocessing`` attribute, or whose first convolution takes one channel, is wrapped
    in :class:`PreprocessedModel`; other channel counts raise a one-line UserError.
    """
    from robustbench_lift.models.preprocessing import ClassSubset, PreprocessedModel, input_channels, preprocessing_of

    model = entry.model
    if isinstance(model, (PreprocessedModel, ClassSubset)):
        return entry
    declared = preprocessing_of(model)
    if declared is None and input_channels(model) in (None, 3):
        return entry
    try:
        wrapped = PreprocessedModel(model, declared)
    except UserError as error:
        raise UserError(f"model {entry.name}: {error}") from None
    return dataclasses.replace(entry, model=wrapped.eval())


def declared_geometry(entry: ModelEntry) -> Geometry | None:
    """The resize/crop/size ``entry``'s model declares (its preprocessing, else its
    checkpoint metadata), None when it takes the data set's own evaluation size."""
    from robustbench_lift.models.preprocessing import Preprocessing, preprocessing_of

    declared = preprocessing_of(entry.model)
    if declared is not None and declared.geometry is not None:
        return declared.geometry
    stored = entry.metadata.get("preprocessing")
    if isinstance(stored, Mapping):
        return Preprocessing.from_mapping(stored, f"model {entry.name} metadata preprocessing").geometry
    return None


def group_models(entries: Sequence[ModelEntry], data: Any) -> list[InputGroup]:
    """Models grouped by the images they need from ``data`` (an ImageDataset or ImageFiles).

    A declared geometry equal to the data set's own (ImageNet's resize 256 / crop 224 for
    torchvision's V1 weights), or one that leaves its stored images unchanged (resize 32,
    crop 32 on CIFAR), joins the data set's own group. Groups come in order of their first
    model; the data set's own group first when one of the models uses it.
    """
    default = getattr(data, "geometry", None)
    stored_size = data.images.shape[1:3] if isinstance(data, ImageDataset) and data.images.ndim == 4 else None
    groups: dict[Any, InputGroup] = {}
    for entry in entries:
        geometry = declared_geometry(entry)
        if geometry is not None:
            if default is not None and geometry.key() == default.key():
                geometry = None
            elif stored_size is not None and geometry.leaves_unchanged(*stored_size):
                geometry = None
        key = None if geometry is None else geometry.key()
        groups.setdefault(key, InputGroup(geometry)).models.append(entry.name)
    ordered = list(groups.values())
    ordered.sort(key=lambda group: group.geometry is not None)  # stable: the data set's own group first
    return ordered


def _output_count(entry: ModelEntry, images: np.ndarray | None) -> int | None:
    """Classes ``entry`` predicts: its metadata's num_classes, else one forward pass on
    ``images[:1]`` (None when neither is available)."""
    if "num_classes" in entry.metadata:
        return int(entry.metadata["num_classes"])
    if images is None or len(images) == 0:
        return None
    import torch

    from robustbench_lift.evaluation.inference import to_tensor

    parameter = next(entry.model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = entry.model.training
    entry.model.eval()
    with torch.inference_mode():
        logits = entry.model(to_tensor(np.ascontiguousarray(images[:1])).to(device))
    entry.model.train(was_training)
    return int(logits.shape[1]) if logits.ndim == 2 else None


def _class_mismatch(entry: ModelEntry, outputs: int, data: Any, dataset_name: str) -> UserError:
    hint = ""
    if outputs == len(imagenet_wnids()) and getattr(data, "class_index", None) is None:
        hint = "; a 1000-way model evaluates a class subset only when the class folders are ImageNet wnids"
    return UserError(f"model {entry.name} predicts {outputs} classes but {dataset_name} has {len(data.classes)}{hint}")


def check_classes(entries: Sequence[ModelEntry], data: Any, dataset_name: str) -> None:
    """Fails fast (before any image is decoded) for a model whose metadata says it
    predicts a number of classes the data set can serve neither directly nor as a subset."""
    for entry in entries:
        outputs = _output_count(entry, None)
        if outputs is not None and not _serves(outputs, data):
            raise _class_mismatch(entry, outputs, data, dataset_name)


def _serves(outputs: int, data: Any) -> bool:
    return outputs == len(data.classes) or (
        outputs == len(imagenet_wnids()) and getattr(data, "class_index", None) is not None
    )


def with_classes(entry: ModelEntry, dataset: ImageDataset, dataset_name: str) -> ModelEntry:
    """``entry`` predicting ``dataset``'s classes: unchanged when its output count is the
    data set's class count; a 1000-way ImageNet model on a subset of ImageNet's classes
    has its logits restricted to the present ones (:class:`ClassSubset`, label order).

    Raises:
        UserError: the model's outputs match neither.
    """
    from robustbench_lift.models.preprocessing import ClassSubset

    outputs = _output_count(entry, dataset.images)
    if outputs is None or outputs == len(dataset.classes):
        return entry
    if not _serves(outputs, dataset):
        raise _class_mismatch(entry, outputs, dataset, dataset_name)
    assert dataset.class_index is not None
    return dataclasses.replace(entry, model=ClassSubset(entry.model, dataset.class_index.tolist()).eval())
