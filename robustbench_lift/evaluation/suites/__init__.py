"""Evaluation suites; see :mod:`robustbench_lift.evaluation.suites.base`."""
