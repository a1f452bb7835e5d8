"""Progress of a run on the terminal: which model and suite run, and an honest ETA.

Cells differ in cost by orders of magnitude (a brightness cell is one pass over the
images; a Carlini-Wagner cell is thousands of gradient steps), so "cells left x mean
seconds per cell" is useless. :class:`CostModel` estimates each pending cell from the
cells already finished, most specific first:

1. the same suite and condition on other models (all models see the same conditions),
2. else the suite's seconds per unit of expected work (the suite's a-priori
   :meth:`~robustbench_lift.evaluation.suites.Suite.expected_work`: images x frames x
   attack steps) times the cell's expected work,
3. else the seconds per unit of work over every finished cell,

each times the model's speed relative to a reference model on shared conditions (a
ResNet-50 is slower than a small CNN on every cell). Nothing is shown before the first
cell finishes.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import IO, Any

from tqdm import tqdm

__all__ = ["CellProgress", "CostModel"]

CellKey = tuple[str, str, str]  # (model, suite, condition)


class CostModel:
    """Seconds a cell will take, estimated from finished cells (see the module docstring).

    Args:
        work: expected work of a cell ``(suite, condition) -> units`` (> 0); only ratios
            within and across suites matter.
    """

    def __init__(self, work: Callable[[str, str], float]) -> None:
        self._work = work
        self._seconds: dict[CellKey, float] = {}

    def observe(self, key: CellKey, seconds: float) -> None:
        """Records that cell ``key`` took ``seconds``."""
        self._seconds[key] = max(float(seconds), 1e-6)

    def model_speeds(self) -> dict[str, float]:
        """Per model: how much slower (> 1) or faster (< 1) it ran than the reference model
        (the one with the most finished cells) on the conditions both ran (geometric mean
        of the ratios; 1 for the reference and for models sharing no condition with it)."""
        by_model: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
        for (model, suite, condition), seconds in self._seconds.items():
            by_model[model][(suite, condition)] = seconds
        if not by_model:
            return {}
        reference = max(by_model, key=lambda model: len(by_model[model]))
        speeds = {}
        for model, times in by_model.items():
            logs = [
                math.log(seconds / by_model[reference][key])
                for key, seconds in times.items()
                if key in by_model[reference]
            ]
            speeds[model] = math.exp(sum(logs) / len(logs)) if logs else 1.0
        return speeds

    def remaining(self, keys: Sequence[CellKey]) -> float | None:
        """Seconds the cells ``keys`` are expected to take in total (run one after another);
        None before any cell has finished."""
        if not self._seconds:
            return None if keys else 0.0
        speeds = self.model_speeds()
        typical: dict[tuple[str, str], list[float]] = defaultdict(list)  # seconds of a speed-1 model
        suite_seconds: dict[str, float] = defaultdict(float)
        suite_work: dict[str, float] = defaultdict(float)
        for (model, suite, condition), seconds in self._seconds.items():
            normalised = seconds / speeds[model]
            typical[(suite, condition)].append(normalised)
            suite_seconds[suite] += normalised
            suite_work[suite] += self._work(suite, condition)
        overall = sum(suite_seconds.values()) / max(sum(suite_work.values()), 1e-12)
        total = 0.0
        for key in keys:
            if key in self._seconds:
                total += self._seconds[key]
                continue
            model, suite, condition = key
            same = typical.get((suite, condition))
            if same:
                base = sum(same) / len(same)
            else:
                rate = suite_seconds[suite] / suite_work[suite] if suite_work.get(suite) else overall
                base = rate * self._work(suite, condition)
            total += base * speeds.get(model, 1.0)
        return total

    def estimate(self, key: CellKey) -> float | None:
        """Seconds cell ``key`` is expected to take; None before any cell has finished."""
        return self.remaining([key])


class CellProgress:
    """The terminal progress bar over a run's pending cells.

    Shows the model and suite of the next cell (cells run model by model, in plan order,
    on the local executor) and the :class:`CostModel` ETA. Writes to stderr.

    Args:
        cells: the pending cells as (model, suite, condition), in the order they run.
        work: expected work of a cell, see :class:`CostModel`.
        stream: where the bar goes (default stderr).
        disable: no bar at all (None: tqdm's default, a bar also without a terminal).
        parallelism: cells evaluated at once (the local executor's model processes); the
            ETA is the pending cells' expected seconds divided by it.
    """

    def __init__(
        self,
        cells: Sequence[CellKey],
        work: Callable[[str, str], float],
        stream: IO[str] | None = None,
        disable: bool | None = False,
        parallelism: int = 1,
    ) -> None:
        self._pending: list[CellKey] = list(cells)
        self._parallelism = max(1, int(parallelism))
        self.costs = CostModel(work)
        self._bar = tqdm(
            total=len(self._pending),
            desc=self._description(),
            unit="cell",
            file=stream or sys.stderr,
            disable=disable,
            bar_format="{desc} {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} cells [{elapsed}{postfix}]",
            dynamic_ncols=True,
        )

    def _description(self) -> str:
        if not self._pending:
            return "done"
        model, suite, _ = self._pending[0]
        return f"{model} / {suite}"

    def _describe(self) -> None:
        self._bar.set_description_str(self._description(), refresh=False)

    def eta_seconds(self) -> float | None:
        """Wall seconds the pending cells are expected to take (None: no estimate yet)."""
        remaining = self.costs.remaining(self._pending)
        return None if remaining is None else remaining / self._parallelism

    def finished(self, key: CellKey, seconds: float) -> None:
        """Cell ``key`` finished after ``seconds`` (its own evaluation time)."""
        self.costs.observe(key, seconds)
        if key in self._pending:
            self._pending.remove(key)
        self._describe()
        eta = self.eta_seconds()
        self._bar.set_postfix_str(
            "" if eta is None or not self._pending else f"ETA {tqdm.format_interval(eta)}", refresh=False
        )
        self._bar.update()

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> CellProgress:
        return self

    def __exit__(self, *exception: Any) -> None:
        self.close()
