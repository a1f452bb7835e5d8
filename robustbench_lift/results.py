"""The files of a finished run: ``results.csv``, ``summary.csv`` and ``run.json``.

Reading and writing them needs pandas only (never torch), so ``check``, ``compare``,
``report`` and ``list`` work from these files alone. A run folder is written into a
hidden staging folder and swapped into place, so it is never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_lift.errors import UserError
from robustbench_lift.utils.io import make_temporary_folder

__all__ = [
    "KEY_COLUMNS",
    "RESULT_COLUMNS",
    "RUN_FILES",
    "TABLES_KEY",
    "check_run_tables",
    "failed_cells",
    "read_run",
    "write_run",
]

# Leading columns of results.csv; suites add their own metric columns after these.
RESULT_COLUMNS = [
    "run",
    "model",
    "architecture",
    "pooling",
    "dataset",
    "suite",
    "condition",
    "family",
    "level",
    "status",
    "n",
]
#: The files every finished run holds.
RUN_FILES = ("results.csv", "summary.csv", "run.json")
#: Columns every results.csv row fills in; a row without one was cut off.
KEY_COLUMNS = ("model", "suite", "condition", "status")
#: The run.json entry holding the row count of each CSV file.
TABLES_KEY = "tables"


def write_run(
    directory: Path,
    results: pd.DataFrame,
    summary: pd.DataFrame,
    record: dict[str, Any],
    extra: Callable[[Path], None] | None = None,
    keep_previous: bool = False,
) -> Path:
    """Writes the three result files (and whatever ``extra(staging)`` adds, such as the
    store) into a temporary folder, then swaps it into place.

    run.json gains a ``tables`` entry with the row count of each CSV file, which
    :func:`read_run` checks, so a truncated or cut-down file is never read as a whole run.

    Args:
        directory: the run folder.
        results: results.csv; summary: summary.csv; record: run.json.
        extra: called with the staging folder to add files.
        keep_previous: carry whatever a folder already at ``directory`` holds besides what
            this call writes (the report, plots, gate results, the user's own files) into
            the new folder; for a rerun of the same config. Without it, the old folder is
            replaced whole.

    Returns:
        ``directory``. The folder and files follow the umask.
    """
    directory = Path(directory)
    record = {**record, TABLES_KEY: {"results.csv": {"rows": len(results)}, "summary.csv": {"rows": len(summary)}}}
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = make_temporary_folder(directory.parent, f".{directory.name}.staging-")
    try:
        results.to_csv(staging / "results.csv", index=False)
        summary.to_csv(staging / "summary.csv", index=False)
        (staging / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        if extra is not None:
            extra(staging)
        if keep_previous and directory.is_dir():
            _carry_over(directory, staging)
        if directory.exists():
            retired = make_temporary_folder(directory.parent, f".{directory.name}.old-")
            os.replace(directory, retired / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def _link_or_copy(source: str, target: str) -> None:
    # A hard link is instant and leaves the old folder intact until it is swapped out.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _carry_over(previous: Path, staging: Path) -> None:
    """Copies the entries of ``previous`` that ``staging`` does not have into it."""
    for entry in previous.iterdir():
        target = staging / entry.name
        if target.exists() or target.is_symlink():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        else:
            _link_or_copy(str(entry), str(target))


def read_run(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Reads (results, summary, run record) of a finished run.

    Args:
        directory: the run folder.

    Returns:
        results.csv and summary.csv as data frames, run.json as a mapping.

    Raises:
        UserError: one line when the folder holds no finished run or a file is malformed
            or incomplete: unparsable, cut off mid-line, missing the columns every run
            writes, with rows missing their key fields, or with fewer or more rows than
            run.json records (see :func:`check_run_tables`).
    """
    directory = Path(directory)
    files = [directory / name for name in RUN_FILES]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise UserError(f"{directory} holds no finished run (missing {', '.join(missing)})")
    tables = []
    for path in files[:2]:
        try:
            text = path.read_bytes()
            if text and not text.endswith(b"\n"):
                raise UserError(f"{path} ends mid-line: the file is truncated")
            tables.append(pd.read_csv(path))
        except (
            ValueError,
            UnicodeDecodeError,
            pd.errors.ParserError,
            OSError,
        ) as error:  # EmptyDataError is a ValueError
            raise UserError(f"{path} is malformed: {' '.join(str(error).split())}") from None
    try:
        record = json.loads(files[2].read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as error:
        raise UserError(f"{files[2]} is malformed: {' '.join(str(error).split())}") from None
    if not isinstance(record, dict):
        raise UserError(f"{files[2]} must hold a mapping, found {type(record).__name__}")
    results, summary = tables
    check_run_tables(directory, results, summary, record)
    return results, summary, record


def check_run_tables(
    directory: str | Path, results: pd.DataFrame, summary: pd.DataFrame, record: dict[str, Any]
) -> None:
    """Checks that the tables of a run are complete; one-line UserError naming the problem.

    * results.csv has the :data:`RESULT_COLUMNS` and summary.csv a ``model`` column;
    * no results row lacks its model, suite, condition or status (a cut-off row);
    * each file has the row count run.json records under ``tables`` (runs written
      before that entry existed skip this check);
    * every model run.json lists has rows in both files.

    Args:
        directory: the run folder (for the message).
        results: results.csv as read.
        summary: summary.csv as read.
        record: run.json as read.
    """
    absent = [column for column in RESULT_COLUMNS if column not in results.columns]
    if absent:
        raise UserError(
            f"{directory}/results.csv lacks the columns {', '.join(absent)}: truncated, or not written by robustbench-lift"
        )
    if "model" not in summary.columns:
        raise UserError(
            f"{directory}/summary.csv lacks the column 'model': truncated, or not written by robustbench-lift"
        )
    incomplete = results[list(KEY_COLUMNS)].isna().any(axis=1)
    if incomplete.any():
        line = int(incomplete.to_numpy().nonzero()[0][0]) + 2  # 1-based, after the header
        raise UserError(
            f"{directory}/results.csv line {line} lacks its {'/'.join(KEY_COLUMNS)}: the file is truncated or damaged"
        )
    counts = record.get(TABLES_KEY)
    if isinstance(counts, dict):
        for name, table in (("results.csv", results), ("summary.csv", summary)):
            expected = (counts.get(name) or {}).get("rows") if isinstance(counts.get(name), dict) else None
            if isinstance(expected, int) and expected != len(table):
                raise UserError(
                    f"{directory}/{name} has {len(table)} rows but run.json records {expected}: the file is truncated or was edited"
                )
    models = record.get("models")
    if isinstance(models, dict):
        for name, table in (("results.csv", results), ("summary.csv", summary)):
            present = set(table["model"].astype(str))
            lacking = [str(model) for model in models if str(model) not in present]
            if lacking:
                raise UserError(
                    f"{directory}/{name} has no rows for model {lacking[0]!r} that run.json lists: the file is truncated"
                )


def failed_cells(directory: str | Path) -> list[str]:
    """``model/suite/condition`` of every cell of a finished run whose status is failed."""
    results, _, _ = read_run(directory)
    failed = results[results["status"] == "failed"]
    return [f"{row.model}/{row.suite}/{row.condition}" for row in failed.itertuples()]
