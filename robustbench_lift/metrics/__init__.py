"""Placeholder."""
from robustbench_lift.metrics.classification import *  # noqa: F401,F403
from robustbench_lift.metrics.classification import ALEXNET_IMAGENET_C_ERRORS, wilson_interval  # noqa: F401
