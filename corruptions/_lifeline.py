"""Worker processes that die with the process that started them.

A process pool's workers block on a queue whose write end they hold themselves, so when
the main process is killed (SIGKILL, out-of-memory killer) they never see end-of-file
and keep running, or keep computing a task nobody will collect. Two guards, both set up
by :func:`die_with` in the worker's initializer:

* Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker when its
  parent exits. The parent is the forkserver (which exits when the main process does,
  as it reads end-of-file on its lifeline pipe) or, with ``spawn``, the main process.
* Everywhere: a daemon thread that checks twice a second whether the main process
  still exists and whether the worker's parent changed (it was re-parented because its
  parent died), and ends the worker with ``os._exit`` if either happens.

:func:`terminate_pool` ends a pool's workers at once (for SIGINT/SIGTERM in the main
process), instead of letting them finish their current task.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["POLL_SECONDS", "die_with", "terminate_pool"]

#: How often the watchdog thread checks on the main process.
POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1
# Exit status of a worker that ended because the main process is gone.
_ORPHANED = 3


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (the pid was reused)
        return True
    return True


def _watch(main_pid: int, parent: int) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if os.getppid() != parent or not _exists(main_pid):
            os._exit(_ORPHANED)


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: the watchdog thread remains
        pass


def die_with(main_pid: int) -> None:
    """Makes this (worker) process exit when the process ``main_pid`` is gone.

    Args:
        main_pid: the process id of the main process, taken there (``os.getpid()``)
            and passed to the pool's initializer.
    """
    parent = os.getppid()
    _set_parent_death_signal()
    # The parent may have died before prctl took effect: check once now.
    if not _exists(main_pid):
        os._exit(_ORPHANED)
    threading.Thread(target=_watch, args=(main_pid, parent), name="lifeline", daemon=True).start()


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Kills a pool's worker processes now and shuts the pool down without waiting."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    # Before 3.14 the pool exposes its processes only through this attribute.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, ValueError):  # already gone
            pass
    pool.shutdown(wait=False, cancel_futures=True)
