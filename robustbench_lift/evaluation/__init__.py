"""Evaluation: inference, the suites (corruption, perturbation, shift, adversarial) and the attacks.

May import the base layer, metrics, :mod:`corruptions`, nn, models and data; nothing from
run or reporting.
"""
