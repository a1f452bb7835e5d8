"""Model resolution: one name or spec -> a loaded model, and the public ``load_model`` / ``create_model``.

A model is named by a zoo name (``small_cnn-lift-s1``; ``small_cnn-lift`` and ``lift`` mean
seed 0), a checkpoint path
(``.safetensors``, ``.pt``, ``.pth``), or a pretrained spec whose prefix is registered in
:data:`~robustbench_lift.models.pretrained.SPECS` (``torchvision:resnet18:IMAGENET1K_V1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_lift.errors import UserError
from robustbench_lift.models._registry import MODELS
from robustbench_lift.models.zoo import load_zoo_model, parse_zoo_name, zoo_model_name, zoo_names

if TYPE_CHECKING:
    from torch import nn

__all__ = ["create_model", "list_architectures", "list_models", "load_model", "resolve_model"]


def resolve_model(name: str) -> tuple[str, nn.Module, dict[str, Any]]:
    """Loads the model ``name`` refers to.

    Args:
        name: a zoo name, a checkpoint path or a pretrained spec.

    Returns:
        (display name, model in eval mode, metadata). The display name is the zoo's full
        name for zoo models (``small_cnn-lift-s0``), the file stem for checkpoints and the
        spec itself otherwise.

    Raises:
        UserError: the name matches nothing, or the weights are missing or unreadable.
    """
    # Loading needs torch; listing (below) does not, so these load here.
    from robustbench_lift.models.checkpoints import load_checkpoint
    from robustbench_lift.models.pretrained import SPECS, load_pretrained

    path = Path(name)
    if name.partition(":")[0] in SPECS:
        model, metadata = load_pretrained(name)
        return name, model, metadata
    if path.suffix in (".safetensors", ".pt", ".pth") or path.exists():
        model, metadata = load_checkpoint(path)
        return path.stem, model, metadata
    model, metadata = load_zoo_model(name)
    return zoo_model_name(*parse_zoo_name(name)), model, metadata


def load_model(spec: str) -> nn.Module:
    """The model a zoo name, checkpoint path or pretrained spec names, in eval mode.

    Args:
        spec: e.g. ``small_cnn-lift``, ``runs/model.safetensors`` or
            ``torchvision:resnet18:IMAGENET1K_V1``.

    Returns:
        The model; it takes float images in [0, 1] (normalisation inside).
    """
    return resolve_model(spec)[1]


def create_model(architecture: str, pooling: str = "max", num_classes: int = 10, **pooling_options: Any) -> nn.Module:
    """A freshly initialised ``architecture`` whose every pooling layer is ``pooling``.

    Args:
        architecture: ``robustbench-lift list architectures``.
        pooling: ``robustbench-lift list poolings``.
        num_classes: outputs of the classifier.
        pooling_options: options of the pooling kind (e.g. ``combine="LL"``).

    Returns:
        The model in training mode, without input normalisation.
    """
    from robustbench_lift.models._builder import build_model

    return build_model(architecture, pooling, num_classes, pooling_options or None)


def list_models() -> list[str]:
    """Names of the zoo models whose weights are present (what ``load_model`` takes without a path)."""
    return zoo_names()


def list_architectures() -> list[str]:
    """Names of the registered architectures (what ``create_model`` builds)."""
    if not MODELS:
        raise UserError("no architecture is registered")
    return MODELS.names()
