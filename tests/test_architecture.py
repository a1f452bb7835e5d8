"""The package's import rules: no cycles, no upward imports between layers, a model-free
corruption engine, and file-reading commands that never import torch or foolbox.

Imports are read from the source (``ast``), function-level imports included, so a lazy
import cannot hide a dependency. See ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGES = ("robustbench_lift", "corruptions")

# Layers, lowest first. A module may import modules of its own layer or of lower ones.
# Prefixes are matched longest first; every module must fall in exactly one layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("corruptions", ("corruptions",)),
    (
        "base",
        (
            "robustbench_lift._version",
            "robustbench_lift.errors",
            "robustbench_lift.registry",
            "robustbench_lift.options",
            "robustbench_lift.utils",
        ),
    ),
    ("metrics and run files", ("robustbench_lift.metrics", "robustbench_lift.results", "robustbench_lift.per_image")),
    ("nn", ("robustbench_lift.nn",)),
    ("models and data", ("robustbench_lift.models", "robustbench_lift.data")),
    ("evaluation", ("robustbench_lift.evaluation",)),
    ("training and run", ("robustbench_lift.training", "robustbench_lift.run")),
    ("reporting", ("robustbench_lift.reporting",)),
    ("api", ("robustbench_lift", "robustbench_lift._catalog")),
]
# Layers the reporting layer may use: it reads run files and must never need torch.
REPORTING_MAY_IMPORT = {"corruptions", "base", "metrics and run files", "models and data", "reporting", "api"}
# What reporting may import from "models and data": the torch-free data loaders only.
REPORTING_MAY_NOT_IMPORT = ("robustbench_lift.models",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPOSITORY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPOSITORY / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


MODULES = package_modules()


def imported_modules(name: str, path: Path) -> set[str]:
    """Modules of this repository that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from package import submodule`` imports the submodule.
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # The deepest module of this repository the import names.
            parts = target.split(".")
            while parts and ".".join(parts) not in MODULES:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def layer_of(name: str) -> int:
    best, best_length = -1, -1
    for position, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = position, len(prefix)
    assert best >= 0, f"module {name} is in no layer; add it to LAYERS"
    return best


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 40
    for name in MODULES:
        layer_of(name)


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_no_upward_imports() -> None:
    upward = []
    for name, targets in GRAPH.items():
        for target in targets:
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_corruptions_imports_nothing_from_robustbench_lift() -> None:
    offenders = {
        name: sorted(t for t in targets if t.startswith("robustbench_lift"))
        for name, targets in GRAPH.items()
        if name.startswith("corruptions")
    }
    assert not {name: targets for name, targets in offenders.items() if targets}


def test_reporting_reads_files_only() -> None:
    offenders = []
    for name, targets in GRAPH.items():
        if not name.startswith("robustbench_lift.reporting"):
            continue
        for target in targets:
            if LAYERS[layer_of(target)][0] not in REPORTING_MAY_IMPORT or target.startswith(REPORTING_MAY_NOT_IMPORT):
                offenders.append(f"{name} -> {target}")
    assert not offenders, offenders


def test_the_layer_test_sees_function_level_imports() -> None:
    # reporting.plots imports the data loaders inside a function; the graph must have it.
    assert "robustbench_lift.data.datasets" in GRAPH["robustbench_lift.reporting.plots"]


# ---------------------------------------------------------------- torch-free commands


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=_environment()
    )


def _environment() -> dict[str, str]:
    import os

    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(REPOSITORY) + os.pathsep + environment.get("PYTHONPATH", "")
    return environment


NO_HEAVY = "import sys; heavy = sorted(m for m in ('torch', 'foolbox', 'torchvision') if m in sys.modules); assert not heavy, heavy"


def test_import_and_api_listing_do_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import robustbench_lift as api\n"
        "assert api.list_poolings() and api.list_suites() and api.list_attacks() and api.list_datasets()\n"
        "assert api.list_corruptions() and api.list_perturbations() and api.list_architectures()\n"
        "api.list_models(); api.read_run\n" + NO_HEAVY
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr


LISTABLE = [
    "poolings",
    "architectures",
    "zoo",
    "segmentation-zoo",
    "corruptions",
    "perturbations",
    "attacks",
    "suites",
    "datasets",
]


def test_cli_list_does_not_import_torch(tmp_path: Path) -> None:
    # One process for every listing: each must succeed and print, none may load torch.
    code = (
        "import contextlib, io, cli\n"
        f"for what in {LISTABLE!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        assert cli.main(['list', what]) == 0, what\n"
        "    assert out.getvalue().strip(), what\n" + NO_HEAVY
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr


def write_small_run(directory: Path, name: str, shift: float) -> Path:
    """A finished run with clean, corruption and adversarial rows, written with pandas."""
    from robustbench_lift.results import write_run

    rows = []
    summary = []
    for model, pooling, error in (("small_cnn-max", "max", 0.10), ("small_cnn-lift", "lift", 0.08)):
        base = {
            "run": name,
            "model": model,
            "architecture": "small_cnn",
            "pooling": pooling,
            "dataset": "fashion_mnist",
            "status": "ok",
            "n": 200,
        }
        rows.append(
            base
            | {
                "suite": "clean",
                "condition": "clean",
                "family": "clean",
                "level": 0.0,
                "error": error,
                "error_low": error - 0.02,
                "error_high": error + 0.02,
            }
        )
        for severity in (1, 3, 5):
            value = error + 0.05 * severity + shift
            rows.append(
                base
                | {
                    "suite": "corruption",
                    "condition": f"contrast/{severity}",
                    "family": "contrast",
                    "level": float(severity),
                    "error": value,
                    "error_low": value - 0.03,
                    "error_high": value + 0.03,
                }
            )
        rows.append(
            base
            | {
                "suite": "adversarial",
                "condition": "pgd_linf/eps=0.03137",
                "family": "pgd_linf",
                "level": 8 / 255,
                "norm": "linf",
                "robust_accuracy": 0.2,
                "robust_accuracy_low": 0.15,
                "robust_accuracy_high": 0.26,
            }
        )
        summary.append(
            {
                "model": model,
                "architecture": "small_cnn",
                "pooling": pooling,
                "n": 200,
                "clean_error": error,
                "clean_error_low": error - 0.02,
                "clean_error_high": error + 0.02,
                "reference_model": "small_cnn-max",
                "mce": 1.0 if pooling == "max" else 0.9 + shift,
                "mce_low": 0.85,
                "mce_high": 1.05,
                "robust_accuracy_pgd_linf": 0.2,
                "robust_accuracy_pgd_linf_low": 0.15,
                "robust_accuracy_pgd_linf_high": 0.26,
            }
        )
    record = {
        "run_name": name,
        "config": {
            "dataset": "fashion_mnist",
            "split": "test",
            "profile": "cifar",
            "seed": 0,
            "sample_size": 200,
            "data_dir": str(directory / "no-data"),
        },
        "seed": 0,
        "sample_size": 200,
        "suites": {
            "adversarial": {"attacks": {"pgd_linf": {"label": "PGD L∞", "norm": "linf", "headline_epsilon": 8 / 255}}}
        },
    }
    return write_run(directory / name, pd.DataFrame(rows), pd.DataFrame(summary), record)


@pytest.mark.slow
def test_check_compare_report_do_not_import_torch(tmp_path: Path) -> None:
    run_a = write_small_run(tmp_path, "a", 0.0)
    run_b = write_small_run(tmp_path, "b", 0.01)
    baseline = tmp_path / "baseline.csv"
    code = (
        "import cli\n"
        f"assert cli.main(['check', {str(run_a)!r}, '--baseline', {str(baseline)!r}, '--update-baseline']) == 0\n"
        f"assert cli.main(['check', {str(run_b)!r}, '--baseline', {str(baseline)!r}]) in (0, 1)\n"
        f"assert cli.main(['compare', {str(run_a)!r}, {str(run_b)!r}]) == 0\n"
        f"assert cli.main(['report', {str(run_b)!r}]) == 0\n" + NO_HEAVY
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    page = (run_b / "index.html").read_text()
    assert "PGD L∞" in page  # the label the run recorded, read without importing the attacks
    assert np.isfinite(pd.read_csv(baseline, comment="#")["value"]).any()
