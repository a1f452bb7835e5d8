"""Reporting on finished runs: tables, plots, the HTML report, run comparison and the gate.

Reads run files only (:mod:`robustbench_lift.results`). May import the base layer,
metrics, results, data (torch-free loaders, for the example image) and :mod:`corruptions`;
never torch, and nothing from nn, models, evaluation or run.
"""
