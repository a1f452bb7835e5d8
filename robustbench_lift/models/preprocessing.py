"""The model input contract and per-model preprocessing.

**The contract.** Every model this package evaluates receives float32 tensors
N x C x H x W with values in [0, 1], at the data set's evaluation size (32 x 32 for
CIFAR and Fashion-MNIST, resize 256 / centre crop 224 for ImageNet, 64 x 64 for
Tiny-ImageNet, resize 32 / crop 32 for ``image_folder``). Whatever else a model needs is
*declared*, never guessed, with a :class:`Preprocessing`:

- ``mean`` / ``std`` (normalisation) run inside the model, in :class:`PreprocessedModel`,
  so corruptions and attacks work in [0, 1] pixel space;
- ``resize`` / ``crop`` / ``size`` (geometry) run on the uint8 images *before* any
  corruption, as ImageNet-C does (corruptions see the resized, cropped image), replacing
  the data set's own evaluation size for that model. Models with different geometry in
  one run each get their own inputs, each generated once.

**Channels.** Data sets always hand out 3 channels (grey data such as Fashion-MNIST is
replicated to RGB). The model's channel count is read from its first ``nn.Conv2d``: a
3-channel model gets the 3 channels; a 1-channel model gets their luminance
(ITU-R 601: 0.299 R + 0.587 G + 0.114 B, exactly the grey value for replicated grey
data); any other count is refused with one line.

**Where preprocessing comes from.** torchvision weights' ``transforms()`` (resize, crop,
interpolation, mean, std), timm's data config (``timm.data.resolve_data_config``), a
checkpoint's metadata, or the user: ``model.preprocessing = Preprocessing(...)`` on any
``nn.Module`` (also one returned by a ``python:`` spec), or ``Preprocessing(...).wrap(model)``.

Example::

    from robustbench_lift.models.preprocessing import Preprocessing

    network = torchvision.models.resnet50()           # expects normalised 224-px inputs
    network.load_state_dict(torch.load("resnet50.pth"))
    network.preprocessing = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                          resize=232, crop=224, interpolation="bilinear")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from robustbench_lift.data.geometry import INTERPOLATIONS, Geometry
from robustbench_lift.errors import UserError

__all__ = [
    "LUMINANCE",
    "ClassSubset",
    "PreprocessedModel",
    "Preprocessing",
    "input_channels",
    "preprocessing_of",
]

#: ITU-R 601 luma weights (Pillow's "L" conversion): a 1-channel model's input from RGB.
LUMINANCE = (0.299, 0.587, 0.114)


def _floats(value: Sequence[float] | None, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    try:
        items = tuple(float(item) for item in value)
    except (TypeError, ValueError):
        raise UserError(f"preprocessing {what} must be a list of numbers, got {value!r}") from None
    if not items or not all(math.isfinite(item) for item in items):
        raise UserError(f"preprocessing {what} must be a non-empty list of finite numbers, got {value!r}")
    return items


@dataclass(frozen=True)
class Preprocessing:
    """What a model needs beyond the contract's [0, 1] inputs at the data set's size.

    Attributes:
        mean: per-channel mean subtracted inside the model (None: no normalisation).
        std: per-channel standard deviation divided by inside the model (with ``mean``).
        size: the whole image resized to exactly size x size (or (height, width)) last,
            for a fixed-size model on data of another size (e.g. a 64-px model on CIFAR).
        resize: shorter side resized to this many pixels, aspect ratio kept.
        crop: centre crop (int or (height, width)) after ``resize``.
        interpolation: ``bilinear`` (default), ``bicubic``, ``nearest``, ``lanczos``,
            ``box`` or ``hamming``.

    ``resize``, ``crop`` and ``size`` apply to the uint8 images before corruption and
    replace the data set's own evaluation size; all None keeps that size.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: int | tuple[int, int] | None = None
    resize: int | None = None
    crop: int | tuple[int, int] | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
        if (mean is None) != (std is None):
            raise UserError("preprocessing needs both mean and std, or neither")
        if mean is not None and std is not None:
            if len(mean) != len(std):
                raise UserError(f"preprocessing mean has {len(mean)} values but std has {len(std)}")
            if min(std) <= 0:
                raise UserError(f"preprocessing std must be positive, got {list(std)}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        geometry = Geometry(self.resize, self.crop, self.size, self.interpolation)  # validates
        object.__setattr__(self, "resize", geometry.resize)
        object.__setattr__(self, "crop", geometry.crop)
        object.__setattr__(self, "size", geometry.size)

    @property
    def geometry(self) -> Geometry | None:
        """The resize/crop/size part, None when the model takes the data set's own size."""
        geometry = Geometry(self.resize, self.crop, self.size, self.interpolation)
        return None if geometry.is_identity else geometry

    def wrap(self, model: nn.Module) -> PreprocessedModel:
        """``model`` behind this preprocessing: takes [0, 1] inputs, normalises inside."""
        return PreprocessedModel(model, self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (run.json, checkpoint metadata)."""
        geometry = Geometry(self.resize, self.crop, self.size, self.interpolation).to_dict()
        return {
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        } | geometry

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "preprocessing") -> Preprocessing:
        """A Preprocessing from a mapping with this class's field names; other keys (such as
        the ``input`` description checkpoints carry) are ignored."""
        known = {item.name for item in fields(cls)}
        try:
            return cls(**{key: value for key, value in values.items() if key in known and value is not None})
        except UserError as error:
            raise UserError(f"{where}: {error}") from None

    @classmethod
    def from_torchvision(cls, weights: Any) -> Preprocessing:
        """The preprocessing of torchvision ``weights`` (a weights enum member), read from
        its ``transforms()``: resize_size, crop_size, interpolation, mean, std."""
        transform = weights.transforms()
        mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
        resize = getattr(transform, "resize_size", None)
        crop = getattr(transform, "crop_size", None)
        interpolation = getattr(transform, "interpolation", None)
        name = getattr(interpolation, "value", "bilinear")
        return cls(
            mean=mean,
            std=std,
            resize=resize[0] if resize else None,
            crop=tuple(crop) if crop and len(crop) == 2 else (crop[0] if crop else None),
            interpolation=name if name in INTERPOLATIONS else "bilinear",
        )

    @classmethod
    def from_timm_config(cls, config: Mapping[str, Any]) -> Preprocessing:
        """The evaluation preprocessing of a timm data config (``timm.data.resolve_data_config``
        or a model's ``pretrained_cfg``): shorter side resized to ``floor(size / crop_pct)``,
        centre crop ``input_size``, its interpolation, mean and std; ``squash`` crop mode
        with crop_pct 1 resizes to ``input_size`` instead. Without ``input_size`` only the
        normalisation is declared."""
        mean, std = config.get("mean"), config.get("std")
        interpolation = str(config.get("interpolation") or "bicubic")
        if interpolation not in INTERPOLATIONS:
            interpolation = "bicubic"  # timm's "random" (training only) and unknown names
        input_size = config.get("input_size")
        if not input_size:
            return cls(mean=mean, std=std)
        height, width = int(input_size[-2]), int(input_size[-1])
        crop_pct = float(config.get("crop_pct") or 0.875)
        if config.get("crop_mode", "center") == "squash" and crop_pct == 1.0:
            return cls(mean=mean, std=std, size=(height, width), interpolation=interpolation)
        # timm scales the shorter side for square inputs; for others its per-side scale
        # is approximated by the shorter side's.
        return cls(
            mean=mean,
            std=std,
            resize=math.floor(min(height, width) / crop_pct),
            crop=(height, width),
            interpolation=interpolation,
        )


def input_channels(model: nn.Module) -> int | None:
    """Input channels of ``model``'s first ``nn.Conv2d`` (None when it has none)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not isinstance(module, nn.LazyConv2d):
            return int(module.in_channels)
    return None


class PreprocessedModel(nn.Module):
    """A model behind its declared preprocessing: takes [0, 1] N x 3 x H x W inputs,
    adapts the channels (see the module docstring), normalises, runs ``model``.

    Attributes:
        model: the wrapped network.
        preprocessing: the :class:`Preprocessing` it declares; its geometry is applied to
            the uint8 images before the model sees them.
        channels: the input channels the network expects (1 or 3).
    """

    mean: Tensor | None
    std: Tensor | None

    def __init__(self, model: nn.Module, preprocessing: Preprocessing | None = None) -> None:
        super().__init__()
        self.model = model
        self.preprocessing = preprocessing or Preprocessing()
        channels = input_channels(model)
        if channels not in (None, 1, 3):
            raise UserError(
                f"{type(model).__name__} takes {channels} input channels; data sets give 3 (RGB, grey replicated) and a "
                "1-channel model gets their luminance: other channel counts are not supported"
            )
        self.channels = channels or 3
        mean, std = self.preprocessing.mean, self.preprocessing.std
        if mean is not None and std is not None:
            if len(mean) not in (1, self.channels):
                raise UserError(
                    f"preprocessing mean/std have {len(mean)} values but {type(model).__name__} takes {self.channels} channels"
                )
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        else:
            self.mean = None
            self.std = None

    def forward(self, x: Tensor) -> Tensor:
        if self.channels == 1 and x.shape[1] == 3:
            weights = torch.tensor(LUMINANCE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * weights).sum(dim=1, keepdim=True)
        elif self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        output = self.model(x)
        # torchvision's segmentation models return {"out": logits, "aux": ...}.
        return output["out"] if isinstance(output, dict) else output


class ClassSubset(nn.Module):
    """Restricts a model's logits to some of its classes, in the given order.

    A 1000-way ImageNet model on a folder with a subset of the classes (ImageNet-100/200,
    a partial ImageNet-C) is evaluated as ImageNet-R and ImageNet-A evaluate 200-class
    subsets: it predicts the best of the present classes, so logit ``j`` of the result is
    the model's logit for ``indices[j]``.
    """

    index: Tensor

    def __init__(self, model: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("index", torch.as_tensor(list(indices), dtype=torch.long), persistent=False)

    @property
    def preprocessing(self) -> Preprocessing | None:
        """The wrapped model's declared preprocessing (the subset changes none of it)."""
        return preprocessing_of(self.model)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).index_select(1, self.index)


def preprocessing_of(model: nn.Module) -> Preprocessing | None:
    """The preprocessing ``model`` declares in its ``preprocessing`` attribute (a
    :class:`Preprocessing` or a mapping of its fields), else None. An attribute holding an
    ``nn.Module`` is part of the network, not a declaration, and is ignored."""
    declared = getattr(model, "preprocessing", None)
    if isinstance(declared, Preprocessing):
        return declared
    if isinstance(declared, Mapping):
        return Preprocessing.from_mapping(declared, f"{type(model).__name__}.preprocessing")
    return None
