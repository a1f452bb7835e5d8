"""Adversarial attacks over foolbox 3; see :mod:`robustbench_lift.evaluation.attacks.base`."""
