"""The results store: one SQLite file per run, committing every evaluated cell as it finishes.

A *cell* is one model x suite x condition (see :mod:`robustbench_lift.evaluation.suites.base`). Each
finished cell is one transaction: its result rows (JSON) and its per-image arrays (numpy
``.npy`` bytes), which the summaries bootstrap over. SQLite runs in WAL mode with full
sync, so a process killed at any moment (SIGKILL included) leaves every committed cell
intact and no half-written one.

Where the store lives
    While a run is in progress: ``<output_dir>/.<run_name>.inprogress/store.sqlite``
    (hidden, beside the run folder, with a lock file so two processes never run the same
    run name at once). When the run finishes, the runner copies the store into the
    staging folder with ``results.csv``, ``summary.csv`` and ``run.json`` and renames
    that folder into place (the finished folder appears atomically, store included),
    then deletes the in-progress folder.

Resume rule (:meth:`RunStore.open`)
    The store records a hash of the run's config (:func:`config_hash`: every key except
    those that only say where or how to compute, :data:`EXECUTION_KEYS`) plus the
    package version and the sampled data. Rerunning with the same hash resumes: from the
    in-progress store if there is one, else from the finished run's ``store.sqlite``
    (copied, so the finished folder is never touched until the new one replaces it).
    Cells already in the store are skipped, provided the model's weights still have
    the fingerprint recorded with the cell (a retrained model's cells are recomputed).
    A different hash starts fresh: a partial store of another config is deleted (with a
    warning). A *finished* run of another config is never replaced silently: the run is
    refused with one line naming the first differing keys, unless ``overwrite`` is set
    (``--overwrite``), which replaces it at the end. A rerun of the same config keeps
    everything else the finished folder holds (the report, plots, gate results).

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)        -- schema_version, config_hash, config, ...
    cells(model, suite, condition, fingerprint, rows_json, device, seconds, finished_at,
          PRIMARY KEY (model, suite, condition))
    arrays(model, suite, condition, name, npy BLOB,
           PRIMARY KEY (model, suite, condition, name))
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from robustbench_lift.errors import UserError
from robustbench_lift.utils.io import acquire_lock, release_lock

log = logging.getLogger(__name__)

STORE_NAME = "store.sqlite"
SCHEMA_VERSION = 1
LOCK_NAME = "lock"
# Keys that change where or how cells are computed, never their numbers (CUDA vs CPU
# floats aside, which each cell records), or only the summaries (recomputed from the
# store at the end): changing them keeps a run resumable.
EXECUTION_KEYS = frozenset(
    {
        "output_dir",
        "run_name",
        "workers",
        "threads",
        "device",
        "executor",
        "ray_address",
        "cache_dir",
        "download",
        "reference_model",
    }
)

CellKey = tuple[str, str, str]  # (model, suite, condition)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    model TEXT NOT NULL, suite TEXT NOT NULL, condition TEXT NOT NULL,
    fingerprint TEXT NOT NULL, rows_json TEXT NOT NULL, device TEXT NOT NULL,
    seconds REAL NOT NULL, finished_at REAL NOT NULL,
    PRIMARY KEY (model, suite, condition)
);
CREATE TABLE IF NOT EXISTS arrays (
    model TEXT NOT NULL, suite TEXT NOT NULL, condition TEXT NOT NULL, name TEXT NOT NULL, npy BLOB NOT NULL,
    PRIMARY KEY (model, suite, condition, name)
);
"""


@dataclass
class CellRecord:
    """One stored cell."""

    rows: list[dict[str, Any]]
    per_image: dict[str, np.ndarray]
    fingerprint: str
    device: str
    seconds: float


def _json_default(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a result row")


def encode_array(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_array(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def config_hash(config: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """Hash of the keys of ``config`` that change numbers, plus ``extra`` (version, data)."""
    material = {key: value for key, value in config.items() if key not in EXECUTION_KEYS}
    material["__extra__"] = extra or {}
    material["__schema__"] = SCHEMA_VERSION
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def model_fingerprint(model: Any, metadata: dict[str, Any]) -> str:
    """Hash of a model's weights and buffers (and metadata): who computed a cell."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}|{array.dtype}|{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data.cast("B"))
    return digest.hexdigest()


class Store:
    """The SQLite store of one run (thread-unsafe; one writer process)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise UserError(f"{self.path} is not a results store ({error})") from None
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    # ------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def config_hash(self) -> str | None:
        return self.get_meta("config_hash")

    # ------------------------------------------------------------ cells

    def finished(self) -> dict[CellKey, str]:
        """Every stored cell -> the model fingerprint it was computed with."""
        return {
            (model, suite, condition): fingerprint
            for model, suite, condition, fingerprint in self._db.execute(
                "SELECT model, suite, condition, fingerprint FROM cells"
            )
        }

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM cells").fetchone()[0])

    def commit_cell(
        self,
        key: CellKey,
        fingerprint: str,
        rows: list[dict[str, Any]],
        per_image: dict[str, np.ndarray],
        device: str,
        seconds: float,
    ) -> None:
        """Stores one finished cell (rows and arrays) in one transaction."""
        rows_json = json.dumps(rows, default=_json_default, allow_nan=True)
        blobs = [(*key, name, encode_array(array)) for name, array in per_image.items()]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM arrays WHERE model = ? AND suite = ? AND condition = ?", key)
            self._db.execute(
                "INSERT OR REPLACE INTO cells (model, suite, condition, fingerprint, rows_json, device, seconds, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, fingerprint, rows_json, device, float(seconds), time.time()),
            )
            self._db.executemany(
                "INSERT INTO arrays (model, suite, condition, name, npy) VALUES (?, ?, ?, ?, ?)", blobs
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def discard(self, keys: Iterable[CellKey]) -> None:
        """Deletes cells (and their arrays) in one transaction."""
        keys = list(keys)
        if not keys:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("DELETE FROM arrays WHERE model = ? AND suite = ? AND condition = ?", keys)
            self._db.executemany("DELETE FROM cells WHERE model = ? AND suite = ? AND condition = ?", keys)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def load(self, keys: Iterable[CellKey]) -> dict[CellKey, CellRecord]:
        """The stored cells among ``keys``, with their rows and per-image arrays."""
        records: dict[CellKey, CellRecord] = {}
        for key in keys:
            row = self._db.execute(
                "SELECT rows_json, fingerprint, device, seconds FROM cells WHERE model = ? AND suite = ? AND condition = ?",
                key,
            ).fetchone()
            if row is None:
                continue
            arrays = {
                name: decode_array(blob)
                for name, blob in self._db.execute(
                    "SELECT name, npy FROM arrays WHERE model = ? AND suite = ? AND condition = ? ORDER BY rowid", key
                )
            }
            records[key] = CellRecord(json.loads(row[0]), arrays, row[1], row[2], row[3])
        return records

    # ------------------------------------------------------------ files

    def copy_to(self, target: str | Path) -> None:
        """A consistent single-file copy (rollback journal, no -wal/-shm companions)."""
        target = Path(target)
        destination = sqlite3.connect(str(target))
        try:
            self._db.backup(destination)
            destination.execute("PRAGMA journal_mode=DELETE")
        finally:
            destination.close()

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass
        self._db.close()


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            candidate.unlink()


def in_progress_folder(run_directory: str | Path) -> Path:
    run_directory = Path(run_directory)
    return run_directory.parent / f".{run_directory.name}.inprogress"


def _staging_pattern(name: str) -> re.Pattern:
    # What write_run leaves when killed mid-swap: .<name>.staging-XXXXXXXX, .<name>.old-XXXXXXXX
    return re.compile(rf"^\.{re.escape(name)}\.(staging|old)-[a-z0-9_]+$")


class RunStore:
    """The store of one run while it is in progress: locked, resumed or fresh.

    Use :meth:`open` in a ``with`` block. Leaving it by an exception keeps the store (and
    its cells) for a rerun to resume, or removes the in-progress folder if it holds no
    cell; :meth:`finished` (after the run folder is in place) removes it.
    """

    def __init__(
        self,
        folder: Path,
        store: Store,
        lock: Any,
        resumed_from: str,
        created_parent: bool = False,
        same_config_finished: bool = False,
    ) -> None:
        self.folder = folder
        self.store = store
        self._lock = lock
        self.resumed_from = resumed_from  # "", "in-progress store" or "finished run"
        self._created_parent = created_parent
        # A finished run of this same config is in the run folder: keep its other files.
        self.same_config_finished = same_config_finished
        self._done = False

    @classmethod
    def open(
        cls,
        run_directory: str | Path,
        hash_value: str,
        config: dict[str, Any],
        extra: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> RunStore:
        """Locks the run, checks what the run folder holds, and resumes or starts its store.

        Args:
            run_directory: ``<output_dir>/<run_name>``.
            hash_value: :func:`config_hash` of ``config`` and ``extra``.
            config: the run's config (recorded, and compared with a finished run's).
            extra: what the hash covers besides the config (package version, sample digest).
            overwrite: allow replacing a finished run of another config.

        Raises:
            UserError: the run folder holds a finished run of another config (or is not a
                run folder) and ``overwrite`` is not set; another process runs this run.
        """
        run_directory = Path(run_directory)
        folder = in_progress_folder(run_directory)
        created_parent = not run_directory.parent.exists()
        created_folder = not folder.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot write to {run_directory.parent}: {error.strerror or error}") from None
        lock = _lock(folder, run_directory)
        try:
            same_config_finished = _check_finished_run(run_directory, hash_value, config, extra or {}, overwrite)
            _remove_stale_staging(run_directory)
            path = folder / STORE_NAME
            resumed_from = ""
            if path.exists():
                store = _open_existing(path)
                if store is not None and store.config_hash == hash_value:
                    resumed_from = "in-progress store"
                else:
                    if store is not None:
                        log.warning(
                            "discarding the unfinished run in %s: it was started with another config (%d cells)",
                            folder,
                            store.count(),
                        )
                        store.close()
                    _remove_database(path)
            finished = run_directory / STORE_NAME
            if not resumed_from and finished.is_file():
                previous = _open_existing(finished, read_only=True)
                if previous is not None and previous.config_hash == hash_value:
                    previous.copy_to(path)
                    resumed_from = "finished run"
                if previous is not None:
                    previous.close()
            store = Store(path)
            if not resumed_from:
                store.set_meta("config_hash", hash_value)
                store.set_meta("config", json.dumps(config, sort_keys=True, default=str))
                store.set_meta("hash_extra", json.dumps(extra or {}, sort_keys=True, default=str))
                store.set_meta("created", str(time.time()))
            return cls(folder, store, lock, resumed_from, created_parent, same_config_finished)
        except BaseException:
            _unlock(lock)
            if created_folder and not (folder / STORE_NAME).exists():  # refused: leave nothing behind
                shutil.rmtree(folder, ignore_errors=True)
                if created_parent:
                    try:
                        folder.parent.rmdir()
                    except OSError:
                        pass
            raise

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if self._done:
            return
        count = self.store.count()
        self.store.close()
        if count == 0:
            shutil.rmtree(self.folder, ignore_errors=True)
            if self._created_parent:  # leave no empty output folder behind either
                try:
                    self.folder.parent.rmdir()
                except OSError:
                    pass
        else:
            log.info("%d finished cells kept in %s; rerun the same command to resume", count, self.folder / STORE_NAME)
        _unlock(self._lock)

    def finished(self) -> None:
        """The run folder holds a copy of the store now: drop the in-progress folder."""
        self.store.close()
        _unlock(self._lock)
        shutil.rmtree(self.folder, ignore_errors=True)
        self._done = True


def _finished_run_identity(run_directory: Path) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
    """(config hash, config, hash extra) of the finished run in ``run_directory``, from its
    store, else from its ``run.json``; (None, None, None) when neither is readable."""
    store_path = run_directory / STORE_NAME
    if store_path.is_file():
        previous = _open_existing(store_path, read_only=True)
        if previous is not None:
            try:
                config, extra = previous.get_meta("config"), previous.get_meta("hash_extra")
                return (
                    previous.config_hash,
                    json.loads(config) if config else None,
                    json.loads(extra) if extra else None,
                )
            finally:
                previous.close()
    record_path = run_directory / "run.json"
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return None, None, None
        if isinstance(record, dict):
            config = record.get("config")
            return record.get("config_hash"), config if isinstance(config, dict) else None, None
    return None, None, None


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_difference(
    previous: dict[str, Any] | None,
    current: dict[str, Any],
    previous_extra: dict[str, Any] | None,
    current_extra: dict[str, Any],
    limit: int = 3,
) -> str:
    """What differs between two runs' configs, for one line: ``key: old -> new`` for the
    first ``limit`` differing keys (those that change numbers), else the version or data."""
    current = json.loads(json.dumps(current, default=str))  # compare as the store recorded it
    if previous is not None:
        keys = [
            key
            for key in [*current, *(key for key in previous if key not in current)]
            if key not in EXECUTION_KEYS and previous.get(key) != current.get(key)
        ]
        if keys:
            parts = [f"{key}: {_short(previous.get(key))} -> {_short(current.get(key))}" for key in keys[:limit]]
            more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
            return ", ".join(parts) + more
    if previous_extra:
        current_extra = json.loads(json.dumps(current_extra, default=str))
        if previous_extra.get("version") != current_extra.get("version"):
            return f"package version: {_short(previous_extra.get('version'))} -> {_short(current_extra.get('version'))}"
        if previous_extra.get("sample") != current_extra.get("sample"):
            return "the same keys, but the sampled images differ (the data set's files changed)"
    return "the same keys, but another package version or other data"


def _check_finished_run(
    run_directory: Path, hash_value: str, config: dict[str, Any], extra: dict[str, Any], overwrite: bool
) -> bool:
    """Refuses to replace a finished run of another config (unless ``overwrite``); True when
    the run folder holds a finished run of this same config."""
    if not run_directory.exists():
        return False
    previous_hash, previous_config, previous_extra = _finished_run_identity(run_directory)
    if previous_hash == hash_value:
        return True
    choices = "pass --overwrite (evaluate: overwrite=True) to replace it, or choose another --run-name (run_name=)"
    if previous_hash is None:
        if not run_directory.is_dir() or any(run_directory.iterdir()):
            if not overwrite:
                raise UserError(f"{run_directory} exists and holds no finished run; {choices}")
            log.warning("replacing %s, which holds no finished run (--overwrite)", run_directory)
        return False
    difference = config_difference(previous_config, config, previous_extra, extra)
    if not overwrite:
        raise UserError(f"{run_directory} holds a finished run of another config ({difference}); {choices}")
    log.warning(
        "replacing the finished run in %s at the end (--overwrite; it had another config: %s)",
        run_directory,
        difference,
    )
    return False


def _open_existing(path: Path, read_only: bool = False) -> Store | None:
    """An existing store, or None (with a warning) when the file is not one."""
    try:
        if read_only:
            store = Store.__new__(Store)
            store.path = path
            store._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            _ = store.config_hash  # reads the schema: fails on a non-store file
            return store
        return Store(path)
    except (UserError, sqlite3.DatabaseError) as error:
        log.warning("ignoring %s: not a readable results store (%s)", path, error)
        return None


def _lock(folder: Path, run_directory: Path) -> IO[str] | None:
    """Locks the run so two processes never run the same run name at once; records our pid."""
    handle = acquire_lock(
        folder / LOCK_NAME,
        f"another process is running {run_directory} right now (lock in {folder}); wait for it or use another --run-name",
    )
    if handle is not None:
        handle.write(str(os.getpid()))
        handle.flush()
    return handle


def _unlock(handle: IO[str] | None) -> None:
    release_lock(handle)


def _remove_stale_staging(run_directory: Path) -> None:
    """Deletes staging folders a killed write_run left (we hold the run's lock)."""
    pattern = _staging_pattern(run_directory.name)
    if not run_directory.parent.is_dir():
        return
    for entry in os.scandir(run_directory.parent):
        if pattern.match(entry.name) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
