"""Shared helpers of the speed benchmarks: machine report, timing, result line.

Benchmarks are not tests: they measure, print and exit 0. Every script prints a
``BENCHMARK_RESULT {json}`` line last, which ``run_all.py`` collects into its table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Running `python benchmarks/x.py` puts benchmarks/ first on sys.path, not the repo.
    sys.path.insert(1, str(ROOT))

RESULT_PREFIX = "BENCHMARK_RESULT "


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--quick", action="store_true", help="tiny sizes, < 30 s: checks that the script works")
    result.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    result.add_argument("--repeats", type=int, default=None, help="timed repeats per side (median reported)")
    return result


def setup_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def machine() -> dict[str, Any]:
    """Platform, CPU count, torch threads and the load average (call it at start)."""
    import torch

    try:
        load = tuple(round(value, 2) for value in os.getloadavg())
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15min_at_start": load,
    }


def command() -> str:
    """The exact command line that ran this script (with the working directory)."""
    return f"(cd {shlex.quote(os.getcwd())} && {shlex.join([sys.executable, *sys.argv])})"


def print_header(name: str, info: dict[str, Any], parameters: dict[str, Any]) -> None:
    print(f"== benchmark: {name}")
    print(f"command: {command()}")
    for key, value in info.items():
        print(f"machine.{key}: {value}")
    for key, value in parameters.items():
        print(f"param.{key}: {value}")
    sys.stdout.flush()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def interleaved(sides: dict[str, Callable[[], Any]], repeats: int, log: bool = True) -> dict[str, list[float]]:
    """Times every side ``repeats`` times, interleaved; the order rotates every round so
    that neither side always runs first (drift and cache effects spread evenly)."""
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            seconds, _ = timed(sides[name])
            times[name].append(seconds)
        if log:
            print(
                f"  round {round_index + 1}/{repeats}: "
                + ", ".join(f"{name} {times[name][-1]:.3f} s" for name in names)
            )
            sys.stdout.flush()
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def min_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Ratio of the fastest runs: load on a shared machine only ever adds time, so under
    heavy load this is a steadier (if optimistic) indicator than the ratio of medians."""
    return min(numerator) / min(denominator)


def describe(values: list[float]) -> str:
    return f"median {median(values):.4f} s (min {min(values):.4f}, max {max(values):.4f}, n={len(values)})"


def finish(name: str, ratio: float, target: str, met: bool | None, info: dict[str, Any], **extra: Any) -> None:
    """Prints the result line run_all.py parses; ``met`` None means no target applies."""
    record = {
        "benchmark": name,
        "ratio": ratio,
        "target": target,
        "met": met,
        "machine": info,
        "command": command(),
    } | extra
    print(RESULT_PREFIX + json.dumps(record, default=str))
    sys.stdout.flush()
