"""Runs the four speed benchmarks, each in its own process, and prints a markdown table.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...]

Each benchmark's full output is streamed as it runs; the table at the end (benchmark,
ratio, target, met?) can be pasted into the project README together with the machine
line printed under it. Benchmarks are measurements, not tests: this exits 0 even when
a target is missed (and reports a benchmark that crashed as "failed").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("corruption_suite_overhead", "corruption_generation", "liftpool_speed", "pgd_overhead")


def load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def run_one(name: str, quick: bool) -> tuple[list[dict[str, Any]], float]:
    command = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if quick else [])
    print(f"\n$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    record = None
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(_common.RESULT_PREFIX):
            record = json.loads(line[len(_common.RESULT_PREFIX) :])
            continue  # the table carries it; keep the streamed log readable
        print(line, end="", flush=True)
    code = process.wait()
    seconds = time.perf_counter() - started
    if code != 0 or record is None:
        return [
            {"benchmark": name, "label": f"{name} (failed, exit {code})", "ratio": math.nan, "target": "-", "met": None}
        ], seconds
    rows = [record | {"label": record.get("label", name)}] + list(record.get("extra_rows", []))
    return rows, seconds


def fmt_ratio(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3g}"


def fmt_met(value: Any) -> str:
    return {True: "yes", False: "**no**"}.get(value, "n/a")


def main() -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (smoke test)")
    arguments.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = arguments.parse_args()
    info = _common.machine()
    print(f"command: {_common.command()}")
    print(f"machine: {info}")
    load_at_start = load()

    rows: list[dict[str, Any]] = []
    durations: dict[str, float] = {}
    for name in args.only or BENCHMARKS:
        found, durations[name] = run_one(name, args.quick)
        rows += found

    print("\n## Speed benchmarks" + (" (--quick: smoke test, not a measurement)" if args.quick else ""))
    print()
    print("| benchmark | ratio | target | met? | fastest-run ratio |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['benchmark']}: {row['label']} | {fmt_ratio(row.get('ratio'))} | {row.get('target', '-')} | {fmt_met(row.get('met'))} | {fmt_ratio(row.get('min_ratio'))} |"
        )
    print()
    print(
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} with {info['torch_threads']} threads; "
        f"load average (1/5/15 min) {load_at_start} at start, {load()} at end."
    )
    print(
        "ratio: median over interleaved repeats (the measured figure; met? judges it). fastest-run ratio: ratio of the minimum times, a load check."
    )
    print(
        "Durations: "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations.items())
        + f". Command: `{_common.command()}`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
