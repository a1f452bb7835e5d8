"""The one-call API and what a run guarantees a user: evaluate() from a plain script,
python: specs on the command line, no finished run lost, umask, the short answer."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import cli
import robustbench_lift as rbl
from robustbench_lift.errors import UserError
from robustbench_lift.results import write_run
from robustbench_lift.run.config import check_run_name, config_from_mapping
from robustbench_lift.run.store import config_difference

REPOSITORY = Path(__file__).resolve().parents[1]
# A small corruption-only run: seconds, not minutes.
SMALL = {"suites": ["corruption"], "corruptions": ["contrast"], "severities": [1], "sample_size": 20, "workers": 1}
SMALL_FLAGS = [
    "--suites",
    "corruption",
    "--corruptions",
    "contrast",
    "--severities",
    "1",
    "--sample-size",
    "20",
    "--workers",
    "1",
]


def environment(*paths: Path) -> dict[str, str]:
    values = dict(os.environ)
    values["PYTHONPATH"] = os.pathsep.join([*(str(path) for path in paths), str(REPOSITORY)])
    values["OMP_NUM_THREADS"] = "1"
    return values


def readme_example() -> str:
    """The README's one-call example: the block that evaluates ``{"mine": ..., "max": "max"}``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPOSITORY / "README.md").read_text(), re.DOTALL)
    examples = [block for block in blocks if 'rbl.evaluate({"mine": mine, "max": "max"}' in block]
    assert len(examples) == 1, "the README should hold one evaluate() example of the zoo's max model beside 'mine'"
    return examples[0]


class Smoothed(nn.Module):
    """A zoo model behind a 3x3 mean filter (the README's example module)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.base(nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ------------------------------------------------------------------ evaluate()


@pytest.mark.slow
@pytest.mark.needs_data
def test_readme_example_runs_once_from_a_plain_script(tmp_path: Path) -> None:
    """The README example saved as a script without a __main__ guard: the corruption
    workers (2 processes) must not execute it again."""
    example = readme_example()
    assert "__main__" not in example
    marker = tmp_path / "executions.txt"
    script = tmp_path / "example.py"
    script.write_text(f"with open({str(marker)!r}, 'a') as _marker:\n    _marker.write('ran\\n')\n" + example)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert marker.read_text().count("ran") == 1, "the script ran again in a worker process"
    run = tmp_path / "reports" / "evaluate"
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["model"]) == ["mine", "max"]
    assert summary[["clean_error", "mce"]].notna().all().all()
    assert json.loads((run / "run.json").read_text())["config"]["workers"] == 2
    assert (run / "index.html").is_file() and any((run / "plots").iterdir())
    # The script printed the short answer and the report's path.
    assert "mine" in result.stdout and str(Path("reports") / "evaluate" / "index.html") in result.stdout


@pytest.mark.slow
@pytest.mark.needs_data
def test_evaluate_returns_the_run_and_resumes_by_weights(tmp_path: Path) -> None:
    module = Smoothed(rbl.load_model("small_cnn-lift")).train()
    options = dict(SMALL, output_dir=str(tmp_path), report=False, show=False)
    results = rbl.evaluate({"mine": module, "max": "max"}, **options)
    assert results.path == tmp_path / "evaluate" and results.report_path is None
    expected_summary = pd.read_csv(results.path / "summary.csv").astype({"model": str})
    pd.testing.assert_frame_equal(results.summary, expected_summary)
    pd.testing.assert_frame_equal(results.results, pd.read_csv(results.path / "results.csv").astype({"model": str}))
    assert results.summary.set_index("model").loc[["mine", "max"], ["clean_error", "mce"]].notna().all().all()
    assert "mine" in repr(results) and "clean error" in repr(results)
    assert module.training, "evaluate() must give the caller's module back in its mode"
    assert results.record["models"]["mine"]["architecture"].endswith("Smoothed")
    cells = results.record["cells"]["total"]

    # Same modules, same options: every cell is reused (the in-memory module's fingerprint is stable).
    again = rbl.evaluate({"mine": module, "max": "max"}, **options)
    assert again.record["cells"]["computed"] == 0
    # Changed weights: only that model's cells are computed again.
    with torch.no_grad():
        next(module.parameters()).mul_(0.5)
    changed = rbl.evaluate({"mine": module, "max": "max"}, **options)
    assert changed.record["cells"]["computed"] == cells // 2
    assert changed.record["models"]["mine"]["fingerprint"] != results.record["models"]["mine"]["fingerprint"]


def test_evaluate_refuses_unknown_options_and_bad_models() -> None:
    module = nn.Linear(2, 2)
    with pytest.raises(UserError, match=r"unknown option 'sample_sise' of evaluate\(\); known: .*sample_size") as error:
        rbl.evaluate(module, sample_sise=10)
    assert "\n" not in str(error.value)
    for models, message in [
        (5, "models must be a dict"),
        ({}, "models is empty"),
        ({"": module}, "non-empty strings"),
        ({"a": 3}, "must be an nn.Module or a spec"),
    ]:
        with pytest.raises(UserError, match=message):
            rbl.evaluate(models)
    with pytest.raises(UserError, match="report must be True or False"):
        rbl.evaluate(module, report="no")
    with pytest.raises(UserError, match="first argument"):
        rbl.evaluate(module, models=["max"])


def test_results_of_a_folder_without_a_run_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no finished run"):
        rbl.Results(tmp_path)


# ------------------------------------------------------------------ python: specs on the command line

NETS = """
from torch import nn


def build(width=8, classes=10):
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes),
    )
"""


@pytest.mark.slow
@pytest.mark.needs_data
def test_cli_runs_a_python_spec_from_pythonpath(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "userpkg").mkdir(parents=True)
    (code / "userpkg" / "__init__.py").write_text("")
    (code / "userpkg" / "nets.py").write_text(textwrap.dedent(NETS))
    work = tmp_path / "work"
    work.mkdir()
    arguments = [
        "run",
        "--models",
        "mine=python:userpkg.nets:build:width=6",
        "max",
        *SMALL_FLAGS,
        "--output-dir",
        str(work / "out"),
        "--run-name",
        "py",
        "--no-report",
    ]
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "cli.py"), *arguments],
        cwd=work,
        env=environment(code),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = pd.read_csv(work / "out" / "py" / "summary.csv")
    assert list(summary["model"]) == ["mine", "small_cnn-max-s0"]
    assert summary[["clean_error", "mce"]].notna().all().all()
    assert summary.set_index("model").loc["mine", "architecture"] == "userpkg.nets:build"
    assert result.stdout.splitlines()[0].startswith("model") and "mine" in result.stdout

    # The user's mistakes end with one line and exit 2.
    for spec, message in [
        ("python:userpkg.nets:bild", "has no attribute 'bild'"),
        ("python:usrpkg.nets:build", "no module named 'usrpkg'"),
        ("python:userpkg.nets:build:depth=3", "cannot be called with"),
    ]:
        failed = subprocess.run(
            [sys.executable, str(REPOSITORY / "cli.py"), "run", "--models", spec, "--output-dir", str(work / "out")],
            cwd=work,
            env=environment(code),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert failed.returncode == 2, failed.stderr
        assert message in failed.stderr and len(failed.stderr.strip().splitlines()) == 1, failed.stderr


def test_list_models_names_every_kind_of_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "models"]) == 0
    listed = capsys.readouterr().out
    for kind in ("zoo", "checkpoint:", "torchvision:", "python:", "NAME="):
        assert kind in listed


# ------------------------------------------------------------------ nothing lost silently


@pytest.mark.slow
@pytest.mark.needs_data
def test_a_finished_run_is_not_replaced_by_another_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = ["run", "--models", "max", *SMALL_FLAGS, "--output-dir", str(tmp_path), "--run-name", "kept"]
    assert cli.main(first) == 0
    folder = tmp_path / "kept"
    before = snapshot(folder)
    assert "index.html" in before and any(name.startswith("plots") for name in before)
    capsys.readouterr()

    other = [argument if argument != "20" else "30" for argument in first]
    assert cli.main(other) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert "sample_size: 20 -> 30" in message and "--overwrite" in message and "--run-name" in message
    assert snapshot(folder) == before, "the refused run changed the finished run's files"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept"], "the refused run left files behind"

    # The same config again (no report this time) computes nothing and keeps the report.
    assert cli.main([*first, "--no-report"]) == 0
    after = snapshot(folder)
    assert {name: data for name, data in after.items() if name != "run.json" and name != "store.sqlite"} == {
        name: data for name, data in before.items() if name != "run.json" and name != "store.sqlite"
    }
    assert json.loads((folder / "run.json").read_text())["cells"]["computed"] == 0

    # --overwrite replaces it.
    assert cli.main([*other, "--overwrite", "--no-report"]) == 0
    assert json.loads((folder / "run.json").read_text())["config"]["sample_size"] == 30
    assert not (folder / "index.html").exists(), "an overwritten run must not keep the old config's report"


def test_config_difference_names_the_first_differing_keys() -> None:
    previous = {"models": ["max"], "sample_size": 20, "suites": ["corruption"], "run_name": "a", "workers": 1}
    current = {"models": ["max"], "sample_size": 30, "suites": ["corruption", "shift"], "run_name": "b", "workers": 2}
    text = config_difference(previous, current, None, {})
    assert (
        text == 'sample_size: 20 -> 30, suites: ["corruption"] -> ["corruption", "shift"]'
    )  # run_name, workers change no number
    assert (
        config_difference(previous, previous, {"version": "0.1.0", "sample": "x"}, {"version": "0.2.0", "sample": "x"})
        == 'package version: "0.1.0" -> "0.2.0"'
    )


@pytest.mark.parametrize("mask", [0o027, 0o002])
def test_run_folders_and_files_follow_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        folder = write_run(tmp_path / "run", pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [2]}), {"run_name": "run"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
    for name in ("results.csv", "summary.csv", "run.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("name", ["two\nlines", "a/b", "a\\b", "..", ".hidden", "", "tab\there", "bell\x07"])
def test_run_names_that_are_not_plain_folder_names_are_refused(name: str) -> None:
    with pytest.raises(UserError, match="run_name") as error:
        check_run_name(name)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError):
        config_from_mapping({"run_name": name})
    assert check_run_name("resnet-lift_2") == "resnet-lift_2"


# ------------------------------------------------------------------ the short answer


def test_leaderboard_text_is_the_short_answer(tmp_path: Path) -> None:
    from robustbench_lift.reporting.tables import leaderboard_text

    summary = pd.DataFrame(
        [
            {
                "model": "small_cnn-max",
                "architecture": "small_cnn",
                "pooling": "max",
                "clean_error": 0.1,
                "clean_error_low": 0.08,
                "clean_error_high": 0.12,
                "reference_model": "small_cnn-max",
                "mce": 1.0,
                "mce_low": 1.0,
                "mce_high": 1.0,
                "robust_accuracy_fgsm": 0.3,
                "robust_accuracy_pgd_linf": 0.2,
                "robust_accuracy_pgd_linf_low": 0.15,
                "robust_accuracy_pgd_linf_high": 0.26,
            },
            {
                "model": "mine",
                "architecture": "x",
                "pooling": "unknown",
                "clean_error": 0.2,
                "clean_error_low": 0.17,
                "clean_error_high": 0.23,
                "reference_model": "small_cnn-max",
                "mce": 0.9,
                "mce_low": 0.85,
                "mce_high": 0.95,
                "robust_accuracy_fgsm": 0.1,
                "robust_accuracy_pgd_linf": 0.05,
                "robust_accuracy_pgd_linf_low": 0.02,
                "robust_accuracy_pgd_linf_high": 0.09,
            },
        ]
    )
    results = pd.DataFrame(
        [
            {
                "run": "run",
                "model": name,
                "architecture": "small_cnn",
                "pooling": "max",
                "dataset": "fashion_mnist",
                "suite": "clean",
                "condition": "clean",
                "family": "clean",
                "level": 0.0,
                "status": "ok",
                "n": 100,
            }
            for name in summary["model"]
        ]
    )
    record = {
        "suites": {
            "adversarial": {"attacks": {"pgd_linf": {"label": "PGD L∞", "norm": "linf", "headline_epsilon": 8 / 255}}}
        }
    }
    folder = write_run(tmp_path / "run", results, summary, record)
    lines = leaderboard_text(folder).splitlines()
    assert lines[0].split("  ")[0] == "model" and "clean error (%)" in lines[0] and "mCE (%)" in lines[0]
    assert "PGD L∞ @ ε=8/255" in lines[0] and "fgsm" not in lines[0]  # one attack on the terminal
    assert (
        lines[2].startswith("mine")
        and "20.00 [17.0, 23.0]" in lines[2]
        and "90.00 [85.0, 95.0]" in lines[2]
        and "5.00 [2.0, 9.0]" in lines[2]
    )
    assert "reference model small_cnn-max" in lines[-1] and "1 more attack in the report" in lines[-1]


def test_deepfool_candidates_notice_does_not_reach_the_user(caplog: pytest.LogCaptureFixture) -> None:
    from robustbench_lift.evaluation.attacks import ATTACKS

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 20)).eval()  # 20 classes > 10 candidates
    attack = ATTACKS.get("deepfool_l2").build()
    import foolbox

    with caplog.at_level(logging.INFO):
        attack(
            foolbox.PyTorchModel(model, bounds=(0, 1)),
            torch.rand(4, 3, 2, 2),
            torch.zeros(4, dtype=torch.long),
            epsilons=[0.5],
        )
        logging.getLogger().info("Only testing the top-10 classes")  # the same words from elsewhere pass
    assert [record.getMessage() for record in caplog.records if "Only testing" in record.getMessage()] == [
        "Only testing the top-10 classes"
    ]
    assert all(not record.pathname.endswith("deepfool.py") for record in caplog.records)
