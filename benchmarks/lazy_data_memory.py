"""Peak memory of a sampled ImageNet-layout folder: decode the sample only vs the whole folder.

A synthetic ImageNet-layout folder (default 50,000 random-texture 64 x 64 JPEGs in 1000
wnid folders, written by ``scripts/make_imagenet_folder.py`` when missing) is read at
ImageNet's evaluation size (resize 256, centre crop 224). Each side runs in a fresh
Python process, which reports its own peak resident set size (``VmHWM``):

(a) ``sample``: ``load_dataset("imagenet")`` lists the folder, then ``sample(N, seed)``
    decodes only the N sampled files (default 5,000);
(b) ``whole``: the whole folder decoded, what the loader did before it was lazy
    (``ImageFiles.images``; the old loader also held a list of every image while
    stacking, about twice this);
(c) ``run``: ``run_benchmark`` of the corruption suite on the same sample (default
    gaussian_noise, shot_noise, contrast, brightness at severity 3, ``imagenet`` profile,
    2 workers, batch 100; the runner prepares two of them at a time for this sample) with
    a minimal 1000-way network (one 8 x 8 stride-8 convolution, random weights), so the
    peak is the data's and the corrupted inputs', not a large network's activations.

Besides each process's own peak (VmHWM), the summed RSS of the process and its children
(the corruption workers) is polled every 0.2 s; it counts shared pages once per process,
so it is an upper bound.

ratio = peak(a) / peak(b). Memory, not time: the load average barely matters, but the
times printed beside the peaks do depend on it.

    .venv/bin/python benchmarks/lazy_data_memory.py [--quick] [--folder DIR] [--images 50000] [--sample 5000]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads(1)


def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


from robustbench_lift.data.datasets import load_dataset

mode, folder, sample, out = {mode!r}, {folder!r}, {sample!r}, {out!r}
start = time.perf_counter()
baseline = peak_mib()
data = load_dataset("imagenet", "test", folder)
listed = peak_mib()
result = {{"mode": mode, "files": len(data), "baseline_mib": baseline, "after_listing_mib": listed}}
if mode == "sample":
    images, _ = data.sample(sample, seed=0)
    result["array_mib"] = images.images.nbytes / 2**20
elif mode == "whole":
    result["array_mib"] = data.images.nbytes / 2**20
else:
    from torch import nn

    from robustbench_lift.evaluation.suites import ModelEntry
    from robustbench_lift.run import runner
    from robustbench_lift.run.config import RunConfig

    # A minimal 1000-way network: the run's memory is the data's, not a network's activations.
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000))
    runner.resolve_models = lambda names: [ModelEntry("minimal", network.eval(), {{"num_classes": 1000, "architecture": "minimal"}})]
    run_benchmark = runner.run_benchmark
    config = RunConfig(models=["minimal"], dataset="imagenet", data_dir=folder, sample_size=sample, suites=["corruption"],
                       corruptions={corruptions!r}, severities=[3], profile="imagenet", workers=2, batch_size=100,
                       device="cpu", threads=1, output_dir=out, run_name="memory")
    run_benchmark(config)
result["peak_mib"] = peak_mib()
result["seconds"] = time.perf_counter() - start
print("CHILD_RESULT " + json.dumps(result))
"""


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(parents.get(pid, []))
    return found


def measure(mode: str, folder: Path, sample: int, out: Path, corruption_names: list[str]) -> dict:
    """Runs one side in a fresh process; its own VmHWM, plus the peak of the summed RSS of
    it and its descendants (corruption workers), polled every 0.2 s: an upper bound, as
    pages shared between processes count once per process."""
    code = CHILD.format(
        root=str(_common.ROOT), mode=mode, folder=str(folder), sample=sample, out=str(out), corruptions=corruption_names
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=_common.ROOT
    )
    tree_peak = 0.0
    while process.poll() is None:
        tree_peak = max(tree_peak, sum(_rss_mib(pid) for pid in _tree(process.pid)))
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("CHILD_RESULT ")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"{mode} failed:\n{stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("CHILD_RESULT "))
    result["tree_peak_mib"] = tree_peak
    print(
        f"  {mode}: peak {result['peak_mib']:.0f} MiB (process tree {tree_peak:.0f} MiB) in {result['seconds']:.1f} s  {json.dumps(result)}"
    )
    sys.stdout.flush()
    return result


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.add_argument(
        "--folder", default=None, help="ImageNet-layout folder (default: a temporary one, generated)"
    )
    arguments.add_argument(
        "--images", type=int, default=None, help="images in the generated folder (default 50000; quick 2000)"
    )
    arguments.add_argument("--sample", type=int, default=None, help="images sampled (default 5000; quick 200)")
    arguments.add_argument("--sides", default="sample,whole,run", help="which of sample, whole, run to measure")
    arguments.add_argument(
        "--corruptions", default="gaussian_noise,shot_noise,contrast,brightness", help="corruptions of the run (c)"
    )
    args = arguments.parse_args()
    info = _common.machine()
    images = args.images or (2000 if args.quick else 50000)
    sample = args.sample or (200 if args.quick else 5000)
    classes = min(1000, images)
    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="imagenet-synthetic-"))
    _common.print_header(
        "lazy_data_memory",
        info,
        {"folder": folder, "images": images, "sample": sample, "eval_size": "resize 256, crop 224"},
    )

    tick = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(_common.ROOT / "scripts" / "make_imagenet_folder.py"),
            str(folder),
            "--classes",
            str(classes),
            "--per-class",
            str(images // classes),
        ],
        check=True,
    )
    print(f"folder ready in {time.perf_counter() - tick:.1f} s")

    sides = args.sides.split(",")
    corruption_names = args.corruptions.split(",")
    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for side in ("sample", "whole", "run"):
            if side in sides:
                found[side] = measure(side, folder / "val", sample, Path(scratch), corruption_names)
    lazy, whole, run = found.get("sample"), found.get("whole"), found.get("run")
    ratio = lazy["peak_mib"] / whole["peak_mib"] if lazy and whole else float("nan")
    if lazy:
        print(
            f"sample of {sample} from {lazy['files']} files: peak {lazy['peak_mib']:.0f} MiB (array {lazy['array_mib']:.0f} MiB)"
        )
    if whole:
        print(
            f"whole folder of {whole['files']} files: peak {whole['peak_mib']:.0f} MiB (array {whole['array_mib']:.0f} MiB)"
        )
    if run is not None:
        print(
            f"corruption-suite run on the sample ({len(corruption_names)} corruptions): peak {run['peak_mib']:.0f} MiB "
            f"(with its corruption workers: {run['tree_peak_mib']:.0f} MiB)"
        )
    _common.finish(
        "lazy_data_memory",
        ratio,
        "sample peak far below whole-folder peak",
        None,
        info,
        sample_peak_mib=None if lazy is None else round(lazy["peak_mib"]),
        whole_peak_mib=None if whole is None else round(whole["peak_mib"]),
        run_peak_mib=None if run is None else round(run["peak_mib"]),
        run_tree_peak_mib=None if run is None else round(run["tree_peak_mib"]),
        files=next(iter(found.values()))["files"] if found else None,
        sample=sample,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
