"""Models: architectures, checkpoints, the shipped zoo, pretrained specs and model resolution.

May import the base layer, :mod:`robustbench_lift.nn` and torch; nothing from data,
evaluation, run or reporting.
"""
