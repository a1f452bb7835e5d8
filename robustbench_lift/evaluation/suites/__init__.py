"""Evaluation suites, one module each, filed in :data:`SUITES` below.

Each suite owns its config keys and their validation (``Suite.options``,
``Suite.validate``). To add a suite: write its module (a :class:`Suite` subclass) and add
one ``SUITES.add`` line below. Importing the suites does not import torch.
"""

from __future__ import annotations

from robustbench_lift.evaluation.suites.adversarial import AdversarialSuite
from robustbench_lift.evaluation.suites.base import (
    SUITES,
    ModelEntry,
    RunContext,
    Suite,
    SuiteOutput,
    list_suites,
)
from robustbench_lift.evaluation.suites.corruption import CorruptionSuite
from robustbench_lift.evaluation.suites.perturbation import PerturbationSuite
from robustbench_lift.evaluation.suites.segmentation import SegmentationSuite
from robustbench_lift.evaluation.suites.shift import ShiftSuite

__all__ = [
    "SUITES",
    "AdversarialSuite",
    "CorruptionSuite",
    "ModelEntry",
    "PerturbationSuite",
    "RunContext",
    "SegmentationSuite",
    "ShiftSuite",
    "Suite",
    "SuiteOutput",
    "list_suites",
]

# The registry: name -> suite. Its order is that of ``list suites`` and of the default suite list.
SUITES.add("corruption", CorruptionSuite())
SUITES.add("perturbation", PerturbationSuite())
SUITES.add("shift", ShiftSuite())
SUITES.add("adversarial", AdversarialSuite())
# Runs alone, on segmentation data (robustbench-lift run --task segmentation).
SUITES.add("segmentation", SegmentationSuite())
