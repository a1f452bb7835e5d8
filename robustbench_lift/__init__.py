"""robustbench-lift: robustness benchmarks for ConvNets that differ only in their pooling.

The public API is below; names load lazily (PEP 562), so ``import robustbench_lift``
imports neither torch nor foolbox until a name that needs them is used::

    import robustbench_lift as rbl

    results = rbl.evaluate({"mine": my_module, "max": "max"}, suites=["corruption"], sample_size=200)
    results.summary  # clean_error, mce, ... per model; results.report_path: index.html
    model = rbl.create_model("small_cnn", pooling="lift")
    rbl.list_poolings()
    run_folder = rbl.run_benchmark(rbl.RunConfig.quick())
    results, summary, record = rbl.read_run(run_folder)

The package is layered (``docs/architecture.md``): base (``errors``, ``registry``,
``options``, ``utils``) < ``metrics``, ``results`` < ``nn`` < ``models``, ``data`` <
``evaluation`` < ``run`` < ``reporting`` < this API and the command line; each layer
imports only from layers below it, and :mod:`corruptions` from nothing here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from robustbench_lift._version import __version__

# Public name -> module that defines it. Loaded on first access.
_EXPORTS: dict[str, str] = {
    # running benchmarks and reading their results
    "evaluate": "robustbench_lift.api",
    "Results": "robustbench_lift.api",
    "RunConfig": "robustbench_lift.run.config",
    "run_benchmark": "robustbench_lift.run.runner",
    "read_run": "robustbench_lift.results",
    "write_report": "robustbench_lift.reporting.html",
    "compare_runs": "robustbench_lift.reporting.comparison",
    # models
    "load_model": "robustbench_lift.models._factory",
    "create_model": "robustbench_lift.models._factory",
    "list_models": "robustbench_lift.models._factory",
    "list_architectures": "robustbench_lift.models._factory",
    # pooling layers
    "swap_pooling": "robustbench_lift.nn.swap",
    "LiftDownPool": "robustbench_lift.nn.lifting",
    "LiftUpPool": "robustbench_lift.nn.lifting",
    "list_poolings": "robustbench_lift.nn.kinds",
    # what a run can evaluate
    "list_corruptions": "robustbench_lift._catalog",
    "list_perturbations": "robustbench_lift._catalog",
    "list_attacks": "robustbench_lift.evaluation.attacks",
    "list_suites": "robustbench_lift.evaluation.suites",
    "list_datasets": "robustbench_lift.data.datasets",
    # errors
    "UserError": "robustbench_lift.errors",
}

__all__ = [
    "LiftDownPool",
    "LiftUpPool",
    "Results",
    "RunConfig",
    "UserError",
    "__version__",
    "compare_runs",
    "create_model",
    "evaluate",
    "list_architectures",
    "list_attacks",
    "list_corruptions",
    "list_datasets",
    "list_models",
    "list_perturbations",
    "list_poolings",
    "list_suites",
    "load_model",
    "read_run",
    "run_benchmark",
    "swap_pooling",
    "write_report",
]

if TYPE_CHECKING:
    from robustbench_lift._catalog import list_corruptions, list_perturbations
    from robustbench_lift.api import Results, evaluate
    from robustbench_lift.data.datasets import list_datasets
    from robustbench_lift.errors import UserError
    from robustbench_lift.evaluation.attacks import list_attacks
    from robustbench_lift.evaluation.suites import list_suites
    from robustbench_lift.models._factory import create_model, list_architectures, list_models, load_model
    from robustbench_lift.nn.kinds import list_poolings
    from robustbench_lift.nn.lifting import LiftDownPool, LiftUpPool
    from robustbench_lift.nn.swap import swap_pooling
    from robustbench_lift.reporting.comparison import compare_runs
    from robustbench_lift.reporting.html import write_report
    from robustbench_lift.results import read_run
    from robustbench_lift.run.config import RunConfig
    from robustbench_lift.run.runner import run_benchmark


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'robustbench_lift' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
