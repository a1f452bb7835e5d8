"""Executors: where the cells of a run are evaluated.

An executor takes the pending cells (model x suite x condition), the models, the prepared
inputs of every suite (built once, in the driver) and the run context, and yields one
:class:`CellResult` per cell as each finishes, in any order; the runner commits each to
the store as it arrives. Every executor evaluates a cell with :func:`evaluate_cell`, so
results do not depend on the executor.

``local``  this machine, model by model (the model moves to the device once per model). On
           the CPU the models are spread over ``model_processes`` forked processes of one
           thread each (default: one per core): a small ConvNet keeps one core busy far
           better than it splits one batch over two, so two processes on two cores
           evaluate the zoo about 1.5x faster than one process with two threads. Forked
           workers read the prepared inputs without copying them and die with the run.
``ray``    one Ray task per cell, on an existing cluster (``ray_address``) or a local one
           started here. Prepared inputs, the context and each model are put in the
           object store once and shared by reference; a task asks for one GPU where the
           cluster has GPUs (and the device is not ``cpu``) and picks its device itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from robustbench_lift.errors import USER_ERRORS, UserError
from robustbench_lift.evaluation.suites import SUITES, ModelEntry, RunContext
from robustbench_lift.options import ConfigView, Option
from robustbench_lift.registry import Registry
from robustbench_lift.run.ray_probe import check_ray_address

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One unit of evaluation."""

    model: str
    suite: str
    condition: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.suite, self.condition)


@dataclass
class CellResult:
    """What evaluating a cell gives: the suite's output, its wall time and device."""

    cell: Cell
    rows: list[dict[str, Any]]
    per_image: dict[str, Any]
    seconds: float
    device: str


def evaluate_cell(cell: Cell, entry: ModelEntry, prepared: Any, context: RunContext) -> CellResult:
    """Evaluates one cell in this process; the model must be on ``context.device``."""
    tick = time.perf_counter()
    output = SUITES.get(cell.suite).evaluate_condition(entry, cell.condition, prepared, context)
    return CellResult(cell, output.rows, output.per_image, time.perf_counter() - tick, str(context.device))


class Executor:
    """Base of the executors; use as a context manager (``start`` / ``close``).

    ``options`` are the run-config keys the executor owns; :meth:`validate` checks their
    values when the executor is selected.
    """

    name = ""
    options: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, config: ConfigView) -> None:
        self.config = config

    @classmethod
    def validate(cls, config: ConfigView) -> None:
        """Checks this executor's options beyond their types; one-line UserError."""

    def check(self) -> None:
        """Quick checks of what :meth:`start` will need (a reachable cluster), run before
        models and data load, so a doomed run fails in seconds; one-line UserError."""

    def start(self) -> None:
        """Connects or starts workers; a one-line UserError when that is impossible."""

    def close(self) -> None:
        """Releases what ``start`` acquired."""

    def context_device(self) -> str:
        """The device recorded in the driver's run context."""
        from robustbench_lift.evaluation.inference import resolve_device

        return resolve_device(self.config.device)

    def run(
        self, cells: Sequence[Cell], models: Mapping[str, ModelEntry], prepared: Mapping[str, Any], context: RunContext
    ) -> Iterator[CellResult]:
        raise NotImplementedError

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exception: Any) -> None:
        self.close()


EXECUTORS: Registry[type[Executor]] = Registry("executor")


# What forked evaluation processes read: set in the driver just before the pool forks, so
# the children inherit the models and the prepared inputs without pickling them.
_FORKED: dict[str, Any] = {}


def _forked_init(main_pid: int) -> None:
    import torch

    from corruptions._lifeline import die_with

    die_with(main_pid)
    # One thread per process; also keeps the child clear of the parent's OpenMP pool,
    # which GNU OpenMP does not carry across fork.
    torch.set_num_threads(1)


def _forked_cell(cell: Cell) -> CellResult:
    entry = _FORKED["models"][cell.model]
    return evaluate_cell(cell, entry, _FORKED["prepared"][cell.suite], _FORKED["context"])


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Cells on this machine, grouped by model; on the CPU, models in parallel processes."""

    name = "local"
    options: ClassVar[Mapping[str, Option]] = {
        "model_processes": Option(
            int | None,
            None,
            "processes evaluating models in parallel on the CPU, one thread each "
            "(null: one per CPU core, at most one per model; 1: all in this process)",
        ),
    }

    @classmethod
    def validate(cls, config: ConfigView) -> None:
        processes = config.model_processes
        if processes is not None and processes < 1:
            raise UserError(f"model_processes must be at least 1 (or null for one per core), got {processes}")

    def processes(self, models: int, device: str) -> int:
        """How many processes evaluate ``models`` models on ``device``."""
        if not device.startswith("cpu") or models < 2 or not hasattr(os, "fork") or sys.platform != "linux":
            return 1  # one GPU is shared better by one process; fork is safe on Linux only
        wanted = self.config.model_processes
        if wanted is None:
            wanted = self.config.threads or _cpu_cores()
        return max(1, min(wanted, models))

    def run(
        self, cells: Sequence[Cell], models: Mapping[str, ModelEntry], prepared: Mapping[str, Any], context: RunContext
    ) -> Iterator[CellResult]:
        by_model: dict[str, list[Cell]] = {}
        for cell in cells:
            by_model.setdefault(cell.model, []).append(cell)
        processes = self.processes(len(by_model), str(context.device))
        if processes > 1:
            yield from self._run_forked(by_model, models, prepared, context, processes)
            return
        for name, model_cells in by_model.items():
            entry = models[name]
            entry.model.to(context.device).eval()
            try:
                for cell in model_cells:
                    yield evaluate_cell(cell, entry, prepared[cell.suite], context)
            finally:
                entry.model.cpu()

    def _run_forked(
        self,
        by_model: Mapping[str, list[Cell]],
        models: Mapping[str, ModelEntry],
        prepared: Mapping[str, Any],
        context: RunContext,
        processes: int,
    ) -> Iterator[CellResult]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        from corruptions._lifeline import terminate_pool

        for name in by_model:
            models[name].model.cpu().eval()
        _FORKED.update(models=models, prepared=prepared, context=context)
        # Models in order, each model's cells in order: a worker takes the next cell, so
        # the processes move through the models together and finish at about the same time.
        order = [cell for model_cells in by_model.values() for cell in model_cells]
        pool = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("fork"), initializer=_forked_init, initargs=(os.getpid(),)
        )
        try:
            pending = {pool.submit(_forked_cell, cell) for cell in order}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BaseException:
            terminate_pool(pool)
            raise
        finally:
            _FORKED.clear()
            pool.shutdown(wait=True, cancel_futures=True)


def _ray_cell(cell: Cell, entry: ModelEntry, prepared: Any, context: RunContext, threads: int | None) -> CellResult:
    """The body of a Ray task: resolve the device here (the worker's GPUs), then evaluate."""
    import torch

    from robustbench_lift.evaluation.inference import resolve_device

    if threads:
        torch.set_num_threads(threads)
    context = dataclasses.replace(context, device=resolve_device(context.config.device))
    entry.model.to(context.device).eval()
    return evaluate_cell(cell, entry, prepared, context)


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Sends file descriptor 2 to a temporary file for the block: Ray's C++ core prints
    a warning line per connection retry there, which Python's logging cannot silence.
    What it caught is logged at debug level (``-v``)."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            caught = capture.read().decode("utf-8", "replace").strip()
            if caught:
                log.debug("Ray printed while starting:\n%s", caught)


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """One Ray task per cell; a local Ray instance unless ``ray_address`` names a cluster."""

    name = "ray"
    options: ClassVar[Mapping[str, Option]] = {
        "ray_address": Option(
            str | None, None, "the Ray cluster to attach to, host:port or auto (null: start a local one)"
        ),
    }

    def __init__(self, config: ConfigView) -> None:
        super().__init__(config)
        self._owns_ray = False
        self._remote: Any = None
        self._gpus = 0.0

    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UserError("the ray executor needs Ray: pip install 'robustbench-lift[distributed]'")
        address = self.config.ray_address
        if address and address != "auto":
            check_ray_address(address)

    def start(self) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("the ray executor needs Ray: pip install 'robustbench-lift[distributed]'") from None
        logging.getLogger("ray").setLevel(logging.ERROR)
        address = self.config.ray_address
        if ray.is_initialized():
            log.info("using the Ray instance this process already has")
        else:
            if address and address != "auto":
                check_ray_address(address)
            options: dict[str, Any] = {"logging_level": logging.ERROR, "include_dashboard": False}
            if not address:
                options["num_cpus"] = max(1, self.config.workers)
            try:
                with _quiet_stderr():
                    ray.init(address=address, **options)
            except (Exception, SystemExit) as error:  # Ray exits the process when it gives up on a cluster
                message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise UserError(
                    f"cannot attach to the Ray cluster at {address or 'a new local instance'}: {message}"
                ) from None
            self._owns_ray = True
        resources = ray.cluster_resources()
        self._gpus = 1.0 if self.config.device != "cpu" and resources.get("GPU", 0) > 0 else 0.0
        self._remote = ray.remote(_ray_cell)
        log.info(
            "Ray cluster: %s CPUs, %s GPUs; %s GPU per task",
            resources.get("CPU", 0),
            resources.get("GPU", 0),
            self._gpus,
        )

    def close(self) -> None:
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False

    def context_device(self) -> str:
        # Tasks resolve the device on their worker; the driver only checks the name.
        return "cpu" if self.config.device == "auto" else self.config.device

    def run(
        self, cells: Sequence[Cell], models: Mapping[str, ModelEntry], prepared: Mapping[str, Any], context: RunContext
    ) -> Iterator[CellResult]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        if not cells:
            return
        context_ref = ray.put(context)
        prepared_refs = {suite: ray.put(prepared[suite]) for suite in dict.fromkeys(cell.suite for cell in cells)}
        model_refs = {name: ray.put(models[name]) for name in dict.fromkeys(cell.model for cell in cells)}
        task = self._remote.options(num_gpus=self._gpus, max_retries=0)
        pending = {
            task.remote(cell, model_refs[cell.model], prepared_refs[cell.suite], context_ref, self.config.threads): cell
            for cell in cells
        }
        cluster_lost = False
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except RayTaskError as error:
                    cause = getattr(error, "cause", None)
                    if isinstance(cause, USER_ERRORS):
                        raise UserError(str(cause)) from None
                    if isinstance(cause, BaseException):
                        raise cause from None
                    raise
                except RayError as error:
                    cluster_lost = True
                    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    raise UserError(f"Ray failed on cell {'/'.join(cell.key)}: {first}") from None
                yield result
        finally:
            if not cluster_lost:  # cancelling on a lost cluster only waits for it
                for ref in pending:
                    try:
                        ray.cancel(ref, force=True)
                    except Exception:  # best effort: the run is ending anyway
                        pass
