"""Running a benchmark: configuration, the runner, executors (local, Ray) and the cell store.

May import everything below it (base, metrics, results, nn, models, data, evaluation);
nothing from reporting.
"""
