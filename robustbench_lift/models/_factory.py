"""Model resolution: one name or spec -> a loaded model, and the public ``load_model`` / ``create_model``.

A model is named by a zoo name (``small_cnn-lift-s1``; ``small_cnn-lift`` and ``lift`` mean
seed 0), a checkpoint path
(``.safetensors``, ``.pt``, ``.pth``), a pretrained spec whose prefix is registered in
:data:`~robustbench_lift.models.pretrained.SPECS` (``torchvision:resnet18:IMAGENET1K_V1``),
or a ``python:`` spec naming a builder in the user's own code
(:mod:`robustbench_lift.models.python_spec`). Any of them may carry a name for the results:
``NAME=SPEC`` (e.g. ``mine=python:mypkg.nets:build@runs/mine.safetensors``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_lift.errors import CheckpointError, UserError
from robustbench_lift.models._registry import MODELS
from robustbench_lift.models.segmentation_zoo import (
    is_segmentation_zoo_name,
    load_segmentation_zoo_model,
    parse_segmentation_zoo_name,
    segmentation_zoo_model_name,
)
from robustbench_lift.models.zoo import load_zoo_model, parse_zoo_name, zoo_model_name, zoo_names

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "create_model",
    "list_architectures",
    "list_models",
    "load_model",
    "model_spec_table",
    "resolve_model",
    "split_name",
]

# NAME in NAME=SPEC: a plain name (no ':' or '/', so no spec or path prefix is mistaken for one).
_NAMED = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.+-]*)=(.+)", re.DOTALL)


def split_name(text: str) -> tuple[str | None, str]:
    """Splits ``NAME=SPEC`` into (NAME, SPEC); (None, text) when ``text`` carries no name.

    An existing file is always a path, even when its name contains '='.
    """
    match = _NAMED.fullmatch(text)
    if match is None or Path(text).exists():
        return None, text
    return match.group(1), match.group(2)


def resolve_model(name: str) -> tuple[str, nn.Module, dict[str, Any]]:
    """Loads the model ``name`` refers to.

    Args:
        name: a zoo name, a checkpoint path, a pretrained spec or a ``python:`` spec,
            optionally prefixed ``NAME=``.

    Returns:
        (display name, model in eval mode, metadata). The display name is ``NAME`` when
        given, else the zoo's full name for zoo models (``small_cnn-lift-s0``), the file stem for checkpoints and
        the spec itself otherwise.

    Raises:
        UserError: the name matches nothing, the weights are missing or unreadable, or
            the user's code for a ``python:`` spec cannot be found or used.
    """
    # Loading needs torch; listing (below) does not, so these load here.
    from robustbench_lift.models.checkpoints import load_checkpoint
    from robustbench_lift.models.pretrained import SPECS, load_pretrained
    from robustbench_lift.models.python_spec import is_python_spec, load_python_model

    given, name = split_name(name)
    if given is not None:
        _, model, metadata = resolve_model(name)
        return given, model, metadata
    path = Path(name)
    if is_python_spec(name):
        model, metadata = load_python_model(name)
        return name, model, metadata
    if name.partition(":")[0] in SPECS:
        model, metadata = load_pretrained(name)
        return name, model, metadata
    if path.suffix in (".safetensors", ".pt", ".pth") or path.exists():
        if _is_segmentation_checkpoint(path):
            from robustbench_lift.models.segmentation import load_segmenter

            model, metadata = load_segmenter(path)
        else:
            model, metadata = load_checkpoint(path)
        return path.stem, model, metadata
    if is_segmentation_zoo_name(name):
        model, metadata = load_segmentation_zoo_model(name)
        return segmentation_zoo_model_name(*parse_segmentation_zoo_name(name)), model, metadata
    model, metadata = load_zoo_model(name)
    return zoo_model_name(*parse_zoo_name(name)), model, metadata


def _is_segmentation_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a safetensors checkpoint written by the segmentation training."""
    from robustbench_lift.models._format import read_safetensors_metadata

    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        return read_safetensors_metadata(path).get("task") == "segmentation"
    except CheckpointError:  # an unreadable header: load_checkpoint reports it in its own words
        return False


def load_model(spec: str) -> nn.Module:
    """The model a zoo name, checkpoint path, pretrained or ``python:`` spec names, in eval mode.

    Args:
        spec: e.g. ``small_cnn-lift``, ``runs/model.safetensors``,
            ``torchvision:resnet18:IMAGENET1K_V1`` or ``python:mypkg.nets:build:width=32``.

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


def model_spec_table() -> list[dict[str, str]]:
    """The ways to name a model (``--models``, YAML ``models``, ``evaluate``), one row each.

    Returns:
        Rows of kind, syntax, example and description (imports torch, for the spec sources).
    """
    from robustbench_lift.models.pretrained import SPEC_SYNTAX, spec_table
    from robustbench_lift.models.python_spec import PYTHON_SPEC_EXAMPLE, PYTHON_SPEC_SYNTAX

    rows = [
        {
            "kind": "zoo",
            "syntax": "small_cnn-<pooling> or <pooling>",
            "example": "small_cnn-lift",
            "description": "a shipped Fashion-MNIST model ('list zoo')",
        },
        {
            "kind": "checkpoint file",
            "syntax": "<path>.safetensors|.pt|.pth",
            "example": "runs/mine.safetensors",
            "description": "a checkpoint written by 'train' (its metadata names the architecture)",
        },
    ]
    for row in spec_table():
        rows.append(
            {
                "kind": f"{row['source']}:",
                "syntax": SPEC_SYNTAX.replace("<source>", row["source"]),
                "example": row["example"],
                "description": row["description"],
            }
        )
    rows.append(
        {
            "kind": "python:",
            "syntax": PYTHON_SPEC_SYNTAX,
            "example": PYTHON_SPEC_EXAMPLE,
            "description": "your own code: a function or class returning an nn.Module, weights optional (README)",
        }
    )
    rows.append(
        {
            "kind": "named",
            "syntax": "NAME=<any of the above>",
            "example": "mine=python:mypkg.nets:build",
            "description": "the same model under the name NAME in the results",
        }
    )
    return rows
