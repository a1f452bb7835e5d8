"""The command line on bad input: exit status 2, one line on stderr, no traceback, no files.

Each case runs the real CLI in a subprocess (``python -m cli``) from an empty working
folder, so anything it wrote by mistake would show up there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_lift.nn.pooling import DEPRECATED_KINDS, POOLINGS

REPOSITORY = Path(__file__).resolve().parents[1]
PREFIX = "robustbench-lift: error:"

# Every test here starts the command line in a subprocess: the slow tier.
pytestmark = pytest.mark.slow


def run_cli(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    # This checkout's cli.py and packages, whatever the venv's editable install points at.
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
    environment["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "cli", *arguments], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    stderr = result.stderr
    assert result.returncode == 2, (result.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(PREFIX), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, stderr)
    return lines[0]


@pytest.fixture
def workdir(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A valid small_cnn (max pooling) checkpoint outside the working folder."""
    import torch

    from robustbench_lift.models import build_model
    from robustbench_lift.models.checkpoints import save_checkpoint

    mean, std = [0.29, 0.29, 0.29], [0.33, 0.33, 0.33]
    torch.manual_seed(0)
    model = build_model("small_cnn", "max", mean=mean, std=std)
    path = tmp_path / "inputs" / "small_cnn-max.safetensors"
    metadata = {
        "architecture": "small_cnn",
        "pooling": "max",
        "pooling_options": {},
        "num_classes": 10,
        "dataset": "fashion_mnist",
        "preprocessing": {"mean": mean, "std": std},
    }
    save_checkpoint(model, metadata, path)
    return path


def test_unknown_pooling(workdir) -> None:
    result = run_cli(["train", "--pooling", "nope", "--output", "out/x.safetensors"], workdir)
    line = assert_one_line_error(result, "'nope'")
    assert "lift" in line  # names the known kinds
    assert files_under(workdir) == []


def test_unknown_pooling_option(workdir) -> None:
    result = run_cli(
        ["train", "--pooling", "lift", "--pooling-option", "bogus=1", "--output", "out/x.safetensors"], workdir
    )
    assert_one_line_error(result, "'bogus'")
    assert files_under(workdir) == []


def test_unknown_corruption(workdir) -> None:
    result = run_cli(["run", "--corruptions", "nope", "--output-dir", "out"], workdir)
    assert_one_line_error(result, "unknown corruption 'nope'")
    assert files_under(workdir) == []


def test_missing_data_folder(workdir, checkpoint) -> None:
    result = run_cli(
        [
            "run", "--models", str(checkpoint), "--data-dir", "/nonexistent", "--suites", "corruption",
            "--corruptions", "gaussian_noise", "--severities", "1", "--sample-size", "8", "--output-dir", "out",
        ],
        workdir,
    )  # fmt: skip
    assert_one_line_error(result, "/nonexistent")
    assert files_under(workdir) == []


def test_truncated_checkpoint(workdir, checkpoint) -> None:
    truncated = checkpoint.with_name("truncated.safetensors")
    data = checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = run_cli(["run", "--models", str(truncated), "--output-dir", "out"], workdir)
    assert_one_line_error(result, "truncated.safetensors")
    assert files_under(workdir) == []


def test_missing_checkpoint(workdir) -> None:
    result = run_cli(["run", "--models", "absent.safetensors", "--output-dir", "out"], workdir)
    assert_one_line_error(result, "absent.safetensors", "does not exist")
    assert files_under(workdir) == []


def test_malformed_yaml_config(workdir, tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("models: [a\nseverities: [1,\n")
    result = run_cli(["run", "--config", str(config), "--output-dir", "out"], workdir)
    assert_one_line_error(result, "bad.yaml", "not valid YAML")
    assert files_under(workdir) == []


def test_list_poolings(workdir) -> None:
    result = run_cli(["list", "poolings"], workdir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]
    assert sorted(listed) == sorted([*POOLINGS, *DEPRECATED_KINDS])
    kinds = {"max", "avg", "skip", "blur", "lift", "haar_sum", "haar_ll", "cdf53_sum", "cdf53_ll"}
    assert set(listed) == kinds | {"haar", "lift53"}  # the deprecated names are listed as such
    assert files_under(workdir) == []
