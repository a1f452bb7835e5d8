"""Atomic file writes and exclusive file locks: the one copy every module uses.

A write goes to ``<name>.partial`` beside the target, is flushed and fsynced, and is
renamed into place (``os.replace`` is atomic on one file system), so the target either
holds the old content or the whole new one, even when the process is killed.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from robustbench_lift.errors import UserError

__all__ = [
    "PARTIAL",
    "acquire_lock",
    "atomic_save_npy",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_location",
    "current_umask",
    "exclusive_lock",
    "fsync_file",
    "make_temporary_folder",
    "partial_name",
    "release_lock",
]

#: Marker in the names of files that are being written (never read them).
PARTIAL = ".partial"


def partial_name(path: Path) -> Path:
    """The temporary name ``path`` is written under before it is renamed into place."""
    return path.with_name(path.name + PARTIAL)


def fsync_file(path: Path) -> None:
    """Flushes a written file to disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], *, temporary: Path | None = None) -> Path:
    """Writes ``path`` atomically: ``write(handle)`` fills a temporary file that is then renamed.

    Args:
        path: the target file.
        write: called with a binary handle open on the temporary file.
        temporary: the temporary file (default ``<path>.partial``); put the process id in
            it when several processes may write the same target.

    Returns:
        ``path``.
    """
    path = Path(path)
    temporary = temporary or partial_name(path)
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, temporary: Path | None = None) -> Path:
    """Writes ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data), temporary=temporary)


def atomic_write_text(path: str | Path, text: str, *, temporary: Path | None = None) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), temporary=temporary)


def atomic_save_npy(path: str | Path, array: np.ndarray, *, temporary: Path | None = None) -> Path:
    """Saves ``array`` as ``.npy`` at ``path`` atomically (never pickled)."""
    # A handle, because np.save(path) would append ".npy" to the temporary name.
    return atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False), temporary=temporary)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask (the permission bits new files and folders do not get)."""
    try:  # Linux says it without changing it
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere the only way to read it is to set it (and set it back)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_temporary_folder(parent: str | Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent`` with the permissions ``mkdir`` would give.

    ``tempfile.mkdtemp`` creates its folder mode 0700 whatever the umask; a folder that
    becomes a user's result folder must follow the umask like every other file instead.

    Args:
        parent: where to create it.
        prefix: the start of its name.

    Returns:
        The folder.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, 0o777 & ~current_umask())
    return folder


def acquire_lock(path: str | Path, busy_message: str) -> IO[str] | None:
    """Takes an exclusive, non-blocking lock on the file ``path`` (created if needed).

    Args:
        path: the lock file.
        busy_message: the one-line UserError raised when another process holds the lock.

    Returns:
        The open handle (keep it; :func:`release_lock` or closing it releases the lock),
        or None on systems without ``fcntl``, where one writer at a time is up to the user.
    """
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(busy_message) from None
    return handle


def release_lock(handle: IO[str] | None) -> None:
    """Releases a lock taken by :func:`acquire_lock` (closing the file releases the flock)."""
    if handle is not None:
        handle.close()


@contextmanager
def exclusive_lock(path: str | Path, busy_message: str) -> Iterator[None]:
    """Holds :func:`acquire_lock` on ``path`` for the ``with`` block."""
    handle = acquire_lock(path, busy_message)
    try:
        yield
    finally:
        release_lock(handle)


def check_output_location(path: str | Path, what: str, *, folder: bool = False) -> Path:
    """Refuses, in one line and before anything is written, an output that cannot be created.

    Refused: a file target that is a folder, a folder target that is a file, and a
    target whose nearest existing ancestor is a file or is not writable. Creates nothing.

    Args:
        path: the file (or, with ``folder``, the folder) that will be written.
        what: how the user named it, for the message (e.g. ``--junit``).
        folder: ``path`` is a folder to create, not a file.

    Returns:
        ``path`` as a Path.

    Raises:
        UserError: naming ``what``, the path and the reason.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"cannot write {what} {path}: it is a file, not a folder")
    if not folder and path.is_dir():
        raise UserError(f"cannot write {what} {path}: it is a folder, not a file")
    ancestor = path if folder else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot write {what} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: {ancestor} is not writable")
    return path
