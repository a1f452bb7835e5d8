"""Models: architectures, checkpoints, the shipped zoo, pretrained specs and model resolution.

May import the base layer, :mod:`robustbench_lift.nn` and torch; nothing from data,
evaluation, run or reporting. Names load lazily (PEP 562): the registries and the zoo
listing work without torch.

- :mod:`._registry`: the architecture registry (name -> builder); :mod:`._builder`: ``build_model``.
- :mod:`.classifiers`: the architectures and ``NormalizedModel``.
- :mod:`.checkpoints`: safetensors checkpoints with a metadata record (:mod:`._format`).
- :mod:`.zoo`: the shipped Fashion-MNIST models; :mod:`.pretrained`: public weights by spec.
- :mod:`._factory`: ``load_model`` / ``create_model`` / ``list_models``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustbench_lift.models._builder import build_model
    from robustbench_lift.models._factory import (
        create_model,
        list_architectures,
        list_models,
        load_model,
        resolve_model,
    )
    from robustbench_lift.models._registry import MODELS
    from robustbench_lift.models.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
    from robustbench_lift.models.classifiers import CifarResNet18, CifarVGG13, NormalizedModel, SmallCNN
    from robustbench_lift.models.pretrained import load_pretrained

_EXPORTS = {
    "MODELS": "_registry",
    "build_model": "_builder",
    "create_model": "_factory",
    "list_architectures": "_factory",
    "list_models": "_factory",
    "load_model": "_factory",
    "resolve_model": "_factory",
    "load_checkpoint": "checkpoints",
    "read_checkpoint": "checkpoints",
    "save_checkpoint": "checkpoints",
    "CifarResNet18": "classifiers",
    "CifarVGG13": "classifiers",
    "NormalizedModel": "classifiers",
    "SmallCNN": "classifiers",
    "load_pretrained": "pretrained",
}

__all__ = [
    "MODELS",
    "CifarResNet18",
    "CifarVGG13",
    "NormalizedModel",
    "SmallCNN",
    "build_model",
    "create_model",
    "list_architectures",
    "list_models",
    "load_checkpoint",
    "load_model",
    "load_pretrained",
    "read_checkpoint",
    "resolve_model",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
