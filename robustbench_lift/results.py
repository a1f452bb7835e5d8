"""The files of a finished run: ``results.csv``, ``summary.csv`` and ``run.json``.

Reading and writing them needs pandas only (never torch), so ``check``, ``compare``,
``report`` and ``list`` work from these files alone. A run folder is written into a
hidden staging folder and swapped into place, so it is never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_lift.errors import UserError

__all__ = ["RESULT_COLUMNS", "RUN_FILES", "failed_cells", "read_run", "write_run"]

# Leading columns of results.csv; suites add their own metric columns after these.
RESULT_COLUMNS = ["run", "model", "architecture", "pooling", "dataset", "suite", "condition", "family", "level", "status", "n"]
#: The files every finished run holds.
RUN_FILES = ("results.csv", "summary.csv", "run.json")


def write_run(directory: Path, results: pd.DataFrame, summary: pd.DataFrame, record: dict[str, Any], extra: Callable[[Path], None] | None = None) -> Path:
    """Writes the three result files (and whatever ``extra(staging)`` adds, such as the
    store) into a temporary folder, then swaps it into place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.staging-", dir=directory.parent))
    try:
        results.to_csv(staging / "results.csv", index=False)
        summary.to_csv(staging / "summary.csv", index=False)
        (staging / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        if extra is not None:
            extra(staging)
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, retired / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_run(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Reads (results, summary, run record) of a finished run; UserError when incomplete."""
    directory = Path(directory)
    files = [directory / name for name in RUN_FILES]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise UserError(f"{directory} holds no finished run (missing {', '.join(missing)})")
    try:
        return pd.read_csv(files[0]), pd.read_csv(files[1]), json.loads(files[2].read_text())
    except (ValueError, pd.errors.ParserError) as error:
        raise UserError(f"{directory} has malformed result files: {error}") from None


def failed_cells(directory: str | Path) -> list[str]:
    """``model/suite/condition`` of every cell of a finished run whose status is failed."""
    results, _, _ = read_run(directory)
    failed = results[results["status"] == "failed"]
    return [f"{row.model}/{row.suite}/{row.condition}" for row in failed.itertuples()]
