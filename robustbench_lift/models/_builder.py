"""Builds a registered architecture with a pooling kind, optionally wrapped in its normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from robustbench_lift.models._registry import MODELS
from robustbench_lift.models.classifiers import NormalizedModel

__all__ = ["build_model"]


def build_model(
    architecture: str,
    pooling: str = "max",
    num_classes: int = 10,
    pooling_options: dict[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """Builds ``architecture`` with every pooling layer of kind ``pooling``.

    Args:
        architecture: a name of :data:`~robustbench_lift.models._registry.MODELS`.
        pooling: a pooling kind (``robustbench-lift list poolings``).
        num_classes: outputs of the classifier.
        pooling_options: keyword options of the pooling kind.
        mean: per-channel input mean; with ``std`` the network is wrapped in
            :class:`NormalizedModel` and takes [0, 1] inputs.
        std: per-channel input standard deviation.

    Returns:
        The model (in training mode).
    """
    network = MODELS.get(architecture).builder()(
        num_classes=num_classes, pooling=pooling, pooling_options=pooling_options
    )
    if mean is not None and std is not None:
        return NormalizedModel(network, mean, std)
    return network
