"""The architectures of the benchmark and the wrapper that puts input normalisation inside a model.

Inputs of every model this package hands out are float images in [0, 1]; the
normalisation lives in :class:`NormalizedModel` (a
:class:`~robustbench_lift.models.preprocessing.PreprocessedModel`) so attacks and
corruptions work in pixel space. Each architecture takes ``num_classes``, ``pooling`` and ``pooling_options`` and
builds every downsampling layer with :func:`~robustbench_lift.nn.pooling.make_pooling`;
:mod:`robustbench_lift.models._registry` files them by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robustbench_lift.models.preprocessing import PreprocessedModel, Preprocessing
from robustbench_lift.nn.pooling import PoolGeometry, make_pooling

__all__ = ["BasicBlock", "CifarResNet18", "CifarVGG13", "NormalizedModel", "SmallCNN"]


class NormalizedModel(PreprocessedModel):
    """Standardises [0, 1] inputs with fixed per-channel mean/std, then runs ``model``
    (a :class:`PreprocessedModel` that declares only normalisation)."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(model, Preprocessing(mean=tuple(mean), std=tuple(std)))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """The built-in benchmark's network for 32-px inputs: three conv-BN-ReLU stages, each
    followed by one pooling layer (32 -> 16 -> 8 -> 4), then global average pooling and a
    linear classifier. The pooling layers are the only thing that differs across the zoo.

    One convolution per stage keeps a zoo of seven models trainable on two CPU cores in
    minutes; deeper backbones are ``resnet18_cifar`` and ``vgg13_cifar``."""

    def __init__(
        self,
        num_classes: int = 10,
        pooling: str = "max",
        pooling_options: dict[str, Any] | None = None,
        widths: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            layers += [_conv_bn_relu(in_channels, width), make_pooling(pooling, width, **(pooling_options or {}))]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """CIFAR ResNet basic block; a downsampling block pools instead of striding.

    As in the LiftPool paper's CIFAR ResNets, a stride-2 convolution becomes a stride-1
    convolution followed by the pooling under test, on both the main path and the
    shortcut, so the pooling is the only downsampling operator.
    """

    def __init__(
        self, in_channels: int, out_channels: int, downsample: bool, pooling: str, pooling_options: dict[str, Any]
    ) -> None:
        super().__init__()
        main: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]
        if downsample:
            main.append(make_pooling(pooling, out_channels, **pooling_options))
        main += [
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.main = nn.Sequential(*main)
        shortcut: list[nn.Module] = []
        if downsample:
            shortcut.append(make_pooling(pooling, in_channels, **pooling_options))
        if downsample or in_channels != out_channels:
            shortcut += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.main(x) + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 for 32-px inputs (3x3 stem, no stem pooling, stages 64-128-256-512)."""

    def __init__(
        self, num_classes: int = 10, pooling: str = "max", pooling_options: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        options = dict(pooling_options or {})
        self.stem = _conv_bn_relu(3, 64)
        blocks: list[nn.Module] = []
        in_channels = 64
        for stage, width in enumerate((64, 128, 256, 512)):
            for index in range(2):
                blocks.append(
                    BasicBlock(
                        in_channels,
                        width,
                        downsample=stage > 0 and index == 0,
                        pooling=pooling,
                        pooling_options=options,
                    )
                )
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


VGG13_LAYOUT = (64, 64, "pool", 128, 128, "pool", 256, 256, "pool", 512, 512, "pool", 512, 512, "pool")


class CifarVGG13(nn.Module):
    """VGG-13 with batch norm for 32-px inputs: five pooling stages down to 1x1."""

    def __init__(
        self, num_classes: int = 10, pooling: str = "max", pooling_options: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in VGG13_LAYOUT:
            if item == "pool":
                layers.append(make_pooling(pooling, in_channels, PoolGeometry(2, 2, 0), **(pooling_options or {})))
            else:
                layers.append(_conv_bn_relu(in_channels, int(item)))
                in_channels = int(item)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
