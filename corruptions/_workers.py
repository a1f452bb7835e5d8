"""Worker processes that never run the caller's script again.

multiprocessing's ``spawn`` and ``forkserver`` start methods both import the parent's
main module in every child (as ``__mp_main__``) so that functions defined there can be
unpickled. A user's script without an ``if __name__ == "__main__":`` guard is therefore
executed again in each worker: it trains its model again, calls the benchmark again and
ends in ``BrokenProcessPool``. ``fork`` would not import it, but a forked child inherits
the parent's thread pools mid-use (we saw a child hang in OpenCV after the parent had
used OpenCV's threads; torch's OpenMP pool has the same problem), and the pool is often
first needed after the caller trained or ran a model.

The workers here only run functions of this package, so they never need the caller's
main module: :func:`script_safe_context` is a ``spawn`` context (a fresh interpreter per
worker, no inherited threads, the same on every platform) whose processes are launched
while ``sys.modules["__main__"]`` is a bare stand-in, so the launch data carries neither
the main module's path nor its name and the child starts like ``python -c``. Only the
launch itself (pickling the worker's arguments and starting the interpreter) sees the
stand-in; the real module object is left untouched and put back right after.
"""

from __future__ import annotations

import multiprocessing.context
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["script_safe_context"]

_LAUNCH_LOCK = threading.Lock()
# What the child is told about the parent's main module: nothing (no __file__, no __spec__).
_STAND_IN = types.ModuleType("__main__")


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """``sys.modules["__main__"]`` is a bare module inside the block."""
    with _LAUNCH_LOCK:  # two pools starting workers at once must restore the real module
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = _STAND_IN
        try:
            yield
        finally:
            if main is None:
                sys.modules.pop("__main__", None)
            else:
                sys.modules["__main__"] = main


class _ScriptSafeProcess(multiprocessing.context.SpawnProcess):
    """A spawned process whose launch data names no main module to import."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # noqa: N802 (multiprocessing's name)
        with _main_module_hidden():
            return multiprocessing.context.SpawnProcess._Popen(process_obj)


class _ScriptSafeContext(multiprocessing.context.SpawnContext):
    Process = _ScriptSafeProcess


_CONTEXT = _ScriptSafeContext()


def script_safe_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context of the corruption and perturbation workers.

    Returns:
        A ``spawn`` context whose children do not import the parent's ``__main__``; pass
        it as ``mp_context`` to :class:`concurrent.futures.ProcessPoolExecutor`. Work sent
        to these workers must be picklable by reference to an importable module (never
        to a function defined in the caller's script).
    """
    return _CONTEXT
