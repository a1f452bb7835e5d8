"""The corruption workers never run the caller's script again (no __main__ guard needed)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corruptions._workers import script_safe_context

REPOSITORY = Path(__file__).resolve().parents[1]

SCRIPT = """
with open({marker!r}, "a") as handle:
    handle.write("ran\\n")

import numpy as np

from corruptions.engine import corrupt_many
from corruptions.perturbations import perturb_many

images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
corrupted = corrupt_many(images, [("gaussian_noise", 1), ("glass_blur", 2), ("contrast", 3)], workers=2)
serial = corrupt_many(images, [("gaussian_noise", 1), ("glass_blur", 2), ("contrast", 3)], workers=1)
assert all((corrupted[key] == serial[key]).all() for key in serial)
frames = perturb_many(images, ["rotate", "gaussian_noise"], workers=2)
print("done", len(corrupted), len(frames))
"""


@pytest.mark.slow
def test_a_script_without_main_guard_runs_once_with_worker_processes(tmp_path: Path) -> None:
    marker = tmp_path / "executions.txt"
    script = tmp_path / "plain.py"
    script.write_text(SCRIPT.format(marker=str(marker)))
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done 3 2" in result.stdout
    assert marker.read_text().count("ran") == 1, "a worker process executed the script again"


def test_the_worker_context_spawns_fresh_interpreters() -> None:
    # Not "fork": a forked child would inherit the parent's thread pools mid-use.
    context = script_safe_context()
    assert context.get_start_method() == "spawn"
    assert issubclass(context.Process, multiprocessing.context.SpawnProcess)
