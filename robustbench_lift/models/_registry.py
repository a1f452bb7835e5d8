"""The architecture registry: name -> where its builder lives, readable without torch.

A builder is a class or function ``(num_classes, pooling, pooling_options) -> nn.Module``;
it is imported when the first model is built. To add an architecture, write its module
and add one ``MODELS.add`` line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustbench_lift.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS", "Architecture", "ModelBuilder"]

ModelBuilder = Callable[..., "nn.Module"]


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: a description and its builder, as ``module:attribute``."""

    description: str
    builder_path: str

    def builder(self) -> ModelBuilder:
        """The builder (imports its module, and torch with it)."""
        module, _, attribute = self.builder_path.partition(":")
        builder: ModelBuilder = getattr(importlib.import_module(module), attribute)
        return builder


_CLASSIFIERS = "robustbench_lift.models.classifiers"

MODELS: Registry[Architecture] = Registry("architecture")
MODELS.add(
    "small_cnn", Architecture("3 conv-BN-ReLU stages, each pooled, for 32-px inputs", f"{_CLASSIFIERS}:SmallCNN")
)
MODELS.add(
    "resnet18_cifar",
    Architecture("ResNet-18 for 32-px inputs, downsampling by pooling", f"{_CLASSIFIERS}:CifarResNet18"),
)
MODELS.add(
    "vgg13_cifar",
    Architecture("VGG-13 with batch norm for 32-px inputs, 5 pooling stages", f"{_CLASSIFIERS}:CifarVGG13"),
)
