"""The suite interface, the run context every suite sees, and the suite registry.

A suite is a small class over :class:`Suite`. The unit of evaluation is a *cell*: one
model x suite x condition. ``conditions`` names a suite's cells (from the config alone,
so a resumed run knows what is left before preparing anything); ``prepare`` builds what
all models share for some conditions (corrupted images, perturbation frames);
``evaluate_condition`` turns one model's predictions on one condition into result rows
and per-image arrays; ``finalize`` completes one model's rows once all its cells exist
(values that compare cells, such as flips against the clean predictions);
``summarize`` turns the run's rows into per-model columns of ``summary.csv``. Cells are
independent, so any executor may run them in any order, and the runner knows nothing
suite-specific.

A suite owns its config keys (``options``) and their validation. To add a suite, write
its module and add one import line to :mod:`robustbench_lift.evaluation.suites`.
Importing the suites does not import torch; evaluating does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from robustbench_lift.data.base import ImageDataset
from robustbench_lift.options import ConfigView, Option
from robustbench_lift.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "SUITES",
    "ModelEntry",
    "RunContext",
    "Suite",
    "SuiteOutput",
    "failed_row",
    "finite_predictions",
    "first_images",
    "list_suites",
    "logits",
    "predict",
    "reference_model",
]


@dataclass
class RunContext:
    """What every suite of a run sees: the config, the sampled clean data and the device."""

    config: ConfigView
    dataset: ImageDataset
    indices: np.ndarray  # positions of the sampled images in the full split; they seed corruptions
    device: str = ""  # torch device for inference; empty = resolved from config.device

    def __post_init__(self) -> None:
        if not self.device:
            from robustbench_lift.evaluation.inference import resolve_device

            self.device = resolve_device(self.config.device)


@dataclass
class ModelEntry:
    """A model under evaluation with its name and metadata."""

    name: str
    model: nn.Module
    metadata: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("architecture", "unknown"))

    @property
    def pooling(self) -> str:
        return str(self.metadata.get("pooling", "unknown"))


@dataclass
class SuiteOutput:
    """Rows of one cell (or of a whole suite for one model), plus per-image arrays kept for
    bootstrap summaries (keys are unique across a suite's cells)."""

    rows: list[dict[str, Any]]
    per_image: dict[str, np.ndarray] = field(default_factory=dict)


class Suite:
    """Base of every suite; subclasses set ``name`` and implement the steps.

    ``options`` are the run-config keys the suite owns (key -> :class:`Option`);
    :meth:`validate` checks their values when the suite is selected, and :meth:`record`
    adds what readers of the finished run need to ``run.json``.
    """

    name: str = ""
    description: str = ""
    options: ClassVar[Mapping[str, Option]] = {}

    #: True when :meth:`prepare` of one condition needs nothing prepared for another, so an
    #: executor may prepare each condition apart (the Ray executor: in its workers).
    inputs_per_condition: ClassVar[bool] = False

    def validate(self, config: ConfigView) -> None:
        """Checks this suite's options beyond their types (ranges, names); one-line UserError."""

    def pinned_options(self, config: ConfigView) -> dict[str, Any]:
        """This suite's options whose value depends on the machine (``auto``), resolved on
        this one, so that workers on other machines decide as the run's driver did; empty
        by default."""
        return {}

    def portable(self, prepared: Any) -> Any:
        """``prepared`` readable by another process (device tensors moved to host memory);
        unchanged by default."""
        return prepared

    def record(self, config: ConfigView, context: RunContext | None = None) -> dict[str, Any]:
        """Facts about this suite's conditions for ``run.json`` (e.g. attack labels and protocols),
        given the run's ``context`` when the runner has one; empty by default."""
        return {}

    def per_image_record(self, models: list[ModelEntry], context: RunContext) -> dict[str, Any]:
        """What a paired comparison needs besides the per-image arrays to recompute this
        suite's summary metrics (kept in ``per_image.npz``); empty by default."""
        return {}

    def conditions(self, context: RunContext) -> list[str]:
        """Names of this suite's cells for one model, in result order."""
        raise NotImplementedError

    def prepare(self, context: RunContext, conditions: Sequence[str] | None = None) -> Any:
        """Inputs every model shares, for ``conditions`` (None: all of them)."""
        return None

    def expected_work(self, condition: str, context: RunContext) -> float:
        """A-priori cost of one cell in model passes over one image (forward or backward),
        for the progress bar's ETA before cells of this suite have been timed; only
        ratios matter. Default: one forward pass per image of the sample."""
        return float(len(context.dataset))

    def evaluate_condition(self, entry: ModelEntry, condition: str, prepared: Any, context: RunContext) -> SuiteOutput:
        """One cell: ``entry`` on ``condition`` (the model is already on ``context.device``)."""
        raise NotImplementedError

    def finalize(
        self, model: str, rows: list[dict[str, Any]], per_image: dict[str, np.ndarray], context: RunContext
    ) -> list[dict[str, Any]]:
        """One model's rows of all its cells, completed where a value needs several cells."""
        return rows

    def prepared_conditions(self, prepared: Any, context: RunContext) -> list[str]:
        """The conditions ``prepared`` holds inputs for (``evaluate``'s default)."""
        return self.conditions(context)

    def evaluate(
        self, entry: ModelEntry, prepared: Any, context: RunContext, conditions: Sequence[str] | None = None
    ) -> SuiteOutput:
        """Cells of one model in this process, finalized (``conditions`` default: all that
        ``prepared`` covers). The runner goes cell by cell instead; this is for scripts."""
        rows: list[dict[str, Any]] = []
        per_image: dict[str, np.ndarray] = {}
        for condition in self.prepared_conditions(prepared, context) if conditions is None else conditions:
            output = self.evaluate_condition(entry, condition, prepared, context)
            rows += output.rows
            per_image.update(output.per_image)
        return SuiteOutput(self.finalize(entry.name, rows, per_image, context), per_image)

    def summarize(
        self,
        results: pd.DataFrame,
        per_image: dict[str, dict[str, np.ndarray]],
        models: list[ModelEntry],
        context: RunContext,
    ) -> pd.DataFrame:
        """Per-model summary columns (index: model name)."""
        return pd.DataFrame(index=[entry.name for entry in models])


SUITES: Registry[Suite] = Registry("suite")


def finite_predictions(logits: torch.Tensor) -> np.ndarray | None:
    """Top-1 predictions, or None when the model produced NaN/inf (the cell then fails)."""
    if not bool(logits.isfinite().all()):
        return None
    predictions: np.ndarray = logits.argmax(1).numpy()
    return predictions


def logits(entry: ModelEntry, images: np.ndarray | torch.Tensor, context: RunContext) -> torch.Tensor:
    """fp32 logits of ``entry`` on uint8 ``images`` (N x H x W x 3 arrays, or N x 3 x H x W
    tensors), in the run's precision and memory format."""
    from robustbench_lift.evaluation.inference import predict_logits
    from robustbench_lift.evaluation.precision import channels_last_for

    config = context.config
    device_type = str(context.device).split(":")[0]
    return predict_logits(
        entry.model,
        images,
        config.batch_size,
        context.device,
        precision=getattr(config, "precision", "fp32"),
        channels_last=channels_last_for(getattr(config, "channels_last", None), device_type),
    )


def predict(entry: ModelEntry, images: np.ndarray | torch.Tensor, context: RunContext) -> np.ndarray | None:
    """Top-1 predictions of ``entry`` on uint8 ``images`` (None when it returned NaN/inf)."""
    return finite_predictions(logits(entry, images, context))


def failed_row(condition: str, family: str, level: float, n: int) -> dict[str, Any]:
    """The row of a cell whose model returned NaN or inf."""
    return {
        "condition": condition,
        "family": family,
        "level": level,
        "n": n,
        "status": "failed",
        "message": "model returned NaN or inf",
    }


def list_suites() -> list[str]:
    """Names of the registered suites."""
    return SUITES.names()


def first_images(context: RunContext, size: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``size`` images of the run's sample (images, labels, dataset indices)."""
    count = len(context.dataset) if size is None else min(size, len(context.dataset))
    return context.dataset.images[:count], context.dataset.labels[:count], context.indices[:count]


def reference_model(entry: ModelEntry, models: list[ModelEntry], config: ConfigView) -> str | None:
    """The model (or the AlexNet table, ``alexnet``) that normalises ``entry``'s CE and mFR:
    ``reference_model`` of the config, else the max-pooling model of the same architecture,
    else the run's first max-pooling model (so a user's own module, whose architecture
    no other model shares, is normalised by the zoo's max model it runs beside)."""
    if config.reference_model:
        return str(config.reference_model)
    for candidate in models:
        if candidate.architecture == entry.architecture and candidate.pooling == "max":
            return candidate.name
    for candidate in models:
        if candidate.pooling == "max":
            return candidate.name
    return None
