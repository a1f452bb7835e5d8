"""Corruption generation speed: the torch engine (CPU and GPU) against the numpy reference path.

At 224 px (``imagenet`` profile, scikit-image photographs) and at 32 px (``cifar``
profile, Fashion-MNIST), for every corruption at the chosen severities, images per second of:

  (a) serial    the reference, one process, OpenCV on one thread: at 224 px a plain loop of
                ``imagecorruptions.corrupt`` per image; at 32 px ``corrupt_many(workers=1)``
                (the serial ``cifar``-profile reimplementation);
  (b) many      ``corruptions.corrupt_many`` with ``--workers`` worker processes (pool
                started and warmed before timing);
  (c) torch-cpu ``corruptions.torch_engine.corrupt_batch`` on a CPU uint8 batch, torch on
                ``--threads`` threads;
  (d) torch-gpu the same on a CUDA batch of ``--gpu-batch`` images (synchronised before and
                after each timed call), when a GPU is there;
  (e) resnet50  torchvision ResNet-50 inference (random weights) at 224 px for scale: fp32
                on the CPU, fp16 channels-last on the GPU.

Per corruption the engines run interleaved (order rotating), ``--repeats`` times; the
median time counts. "suite" is all images over all corruptions divided by the summed
medians. Every engine warms up on every condition first (imports, numba, worker pool,
cached kernels and frost layers, cuDNN). The last line (``BENCHMARK_RESULT``) carries all
ratios; the line before it prints them. Results: ``benchmarks/results/corruption_engines.csv``.

    .venv/bin/python benchmarks/corruption_engines.py [--quick] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import csv
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _common
import _corruption_images
import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "corruption_engines.csv"
TARGET = 5.0  # (c) / (a) over the 224-px suite


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _timed(function: Callable[[], object], device: str = "cpu") -> float:
    _synchronize(device)
    start = time.perf_counter()
    function()
    _synchronize(device)
    return time.perf_counter() - start


def _resnet50_rate(device: str, batch: int, repeats: int) -> float:
    """ResNet-50 inference images/s (random weights; fp16 channels-last on CUDA, fp32 on CPU)."""
    import torchvision

    model = torchvision.models.resnet50(weights=None).eval().to(device)
    inputs = torch.rand(batch, 3, 224, 224, device=device)
    if device.startswith("cuda"):
        model = model.half().to(memory_format=torch.channels_last)
        inputs = inputs.half().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(inputs)
        times = [_timed(lambda: model(inputs), device) for _ in range(repeats)]
    return batch / statistics.median(times)


def _engine_runners(
    profile: str,
    images: np.ndarray,
    cpu_batch: torch.Tensor,
    gpu_batch: torch.Tensor | None,
    indices: np.ndarray,
    severities: list[int],
    workers: int,
) -> dict[str, Callable[[str], None]]:
    """One function per engine that corrupts the benchmark images with one corruption at
    every severity (engines (a)-(d) of the module docstring)."""
    import cv2
    import imagecorruptions

    import corruptions
    from corruptions import torch_engine

    default_cv2_threads = cv2.getNumThreads()
    conditions = lambda name: [(name, severity) for severity in severities]

    def serial(name: str) -> None:
        cv2.setNumThreads(1)
        try:
            if profile == "imagenet":
                for severity in severities:
                    for image in images:
                        imagecorruptions.corrupt(image, corruption_name=name, severity=severity)
            else:
                corruptions.corrupt_many(images, conditions(name), profile=profile, workers=1)
        finally:
            cv2.setNumThreads(default_cv2_threads)

    def many(name: str) -> None:
        corruptions.corrupt_many(images, conditions(name), profile=profile, seed=0, indices=indices, workers=workers)

    def torch_cpu(name: str) -> None:
        for severity in severities:
            torch_engine.corrupt_batch(cpu_batch, name, severity, profile=profile, seed=0, indices=indices)

    def torch_gpu(name: str) -> None:
        for severity in severities:
            torch_engine.corrupt_batch(gpu_batch, name, severity, profile=profile, seed=0)

    return {"serial": serial, "many": many, "torch-cpu": torch_cpu, "torch-gpu": torch_gpu}


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.set_defaults(threads=2)
    arguments.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: GPU too if there is one"
    )
    arguments.add_argument("--sizes", default="224,32", help="comma-separated: 224 (imagenet profile), 32 (cifar)")
    arguments.add_argument("--images-224", type=int, default=None, help="images at 224 px (default 8; quick 2)")
    arguments.add_argument("--images-32", type=int, default=None, help="images at 32 px (default 64; quick 8)")
    arguments.add_argument("--gpu-batch", type=int, default=None, help="GPU batch (default 128 at 224 px, 1024 at 32)")
    arguments.add_argument("--severities", default=None, help="comma-separated (default 1,2,3,4,5; quick 3)")
    arguments.add_argument("--corruptions", default=None, help="comma-separated subset (default all 19)")
    arguments.add_argument("--engines", default="serial,many,torch-cpu,torch-gpu,resnet50", help="subset to run")
    arguments.add_argument("--workers", type=int, default=2, help="worker processes of corrupt_many")
    arguments.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the loader's search)")
    arguments.add_argument("--output", default=str(RESULTS), help="CSV path")
    args = arguments.parse_args()
    _common.setup_threads(args.threads)
    info = _common.machine()

    import corruptions

    has_gpu = torch.cuda.is_available()
    if args.device == "cuda" and not has_gpu:
        raise SystemExit("--device cuda: torch sees no GPU")
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    gpu = has_gpu and args.device != "cpu" and "torch-gpu" in engines
    severities = [int(value) for value in (args.severities or ("3" if args.quick else "1,2,3,4,5")).split(",")]
    names = args.corruptions.split(",") if args.corruptions else corruptions.corruption_names("all")
    repeats = args.repeats or (1 if args.quick else 2)
    sizes = [int(value) for value in args.sizes.split(",")]
    counts = {224: args.images_224 or (2 if args.quick else 8), 32: args.images_32 or (8 if args.quick else 64)}
    gpu_batches = {
        224: args.gpu_batch or (8 if args.quick else 128),
        32: args.gpu_batch or (64 if args.quick else 1024),
    }
    fashion = _corruption_images.available_fashion_mnist(args.data_dir)
    _common.print_header(
        "corruption_engines",
        info,
        {
            "sizes": sizes,
            "images": counts,
            "gpu_batch": gpu_batches if gpu else "no GPU",
            "severities": severities,
            "corruptions": len(names),
            "engines": engines,
            "workers": args.workers,
            "repeats": repeats,
            "32px_images": "Fashion-MNIST test" if fashion else "skimage photographs (Fashion-MNIST not found)",
            "gpu": torch.cuda.get_device_name(0) if has_gpu else "none",
        },
    )

    import imagecorruptions

    rows: list[dict] = []
    summary: dict[tuple[int, str], float] = {}
    for size in sizes:
        profile = "imagenet" if size == 224 else "cifar"
        count = counts[size]
        if size == 32 and fashion:
            images = _corruption_images.fashion_mnist_images(count, 32, args.data_dir)
        else:
            images = _corruption_images.natural_images(count, size)
        cpu_batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        indices = np.arange(count)
        gpu_batch = None
        if gpu:
            repeat = -(-gpu_batches[size] // count)
            gpu_batch = cpu_batch.repeat(repeat, 1, 1, 1)[: gpu_batches[size]].to("cuda")
        work = {"serial": count, "many": count, "torch-cpu": count, "torch-gpu": gpu_batches[size]}

        runners = _engine_runners(profile, images, cpu_batch, gpu_batch, indices, severities, args.workers)
        sides = {
            engine: (runner, "cuda" if engine == "torch-gpu" else "cpu")
            for engine, runner in runners.items()
            if engine in engines and (engine != "torch-gpu" or gpu)
        }

        print(
            f"\n-- {size} px ({profile} profile): {count} images x {len(severities)} severities per corruption",
            flush=True,
        )
        # Warm-up: every engine meets every condition (imports, numba, caches, cuDNN); the
        # reference engines on two images only, the pool twice so that both workers do.
        for name in names:
            conditions = [(name, s) for s in severities]
            if "serial" in sides or "many" in sides:
                for image in images[:1]:
                    for severity in severities:
                        imagecorruptions.corrupt(image, corruption_name=name, severity=severity)
                corruptions.corrupt_many(images[:2], conditions, profile=profile, workers=1)
            if "many" in sides:
                for _ in range(2):
                    corruptions.corrupt_many(images[:2], conditions, profile=profile, workers=args.workers)
            for engine in ("torch-cpu", "torch-gpu"):
                if engine in sides:
                    sides[engine][0](name)
            _synchronize("cuda" if gpu else "cpu")
        totals = {engine: 0.0 for engine in sides}
        header = "corruption".ljust(18) + "".join(f"{engine:>14s}" for engine in sides)
        print(header + "   (images/s)", flush=True)
        for name in names:
            times: dict[str, list[float]] = {engine: [] for engine in sides}
            order = list(sides)
            for round_index in range(repeats):
                shift = round_index % len(order)
                for engine in order[shift:] + order[:shift]:
                    function, device = sides[engine]
                    times[engine].append(_timed(functools.partial(function, name), device))
            cells = []
            for engine, values in times.items():
                seconds = statistics.median(values)
                totals[engine] += seconds
                images_done = work[engine] * len(severities)
                rate = images_done / seconds
                cells.append(f"{rate:14.1f}")
                rows.append(
                    {"size": size, "profile": profile, "engine": engine, "corruption": name, "images": images_done,
                     "seconds": round(seconds, 6), "images_per_second": round(rate, 3),
                     "threads": args.threads, "repeats": repeats}
                )  # fmt: skip
            print(name.ljust(18) + "".join(cells), flush=True)
        cells = []
        for engine, seconds in totals.items():
            images_done = work[engine] * len(severities) * len(names)
            rate = images_done / seconds
            summary[(size, engine)] = rate
            cells.append(f"{rate:14.1f}")
            rows.append(
                {"size": size, "profile": profile, "engine": engine, "corruption": "suite", "images": images_done,
                 "seconds": round(seconds, 6), "images_per_second": round(rate, 3),
                 "threads": args.threads, "repeats": repeats}
            )  # fmt: skip
        print("suite".ljust(18) + "".join(cells), flush=True)

    if "resnet50" in engines and 224 in sizes:
        batch = 4 if args.quick else 16
        summary[(224, "resnet50-cpu")] = _resnet50_rate("cpu", batch, repeats)
        print(
            f"\nresnet50 fp32 CPU ({args.threads} threads, batch {batch}): {summary[(224, 'resnet50-cpu')]:.1f} images/s"
        )
        if has_gpu and args.device != "cpu":
            gpu_model_batch = 32 if args.quick else 256
            summary[(224, "resnet50-gpu")] = _resnet50_rate("cuda", gpu_model_batch, max(repeats, 3))
            print(f"resnet50 fp16 GPU (batch {gpu_model_batch}): {summary[(224, 'resnet50-gpu')]:.1f} images/s")
        else:
            print("resnet50 GPU: not measured: no GPU")
        for engine in ("resnet50-cpu", "resnet50-gpu"):
            if (224, engine) in summary:
                rows.append(
                    {"size": 224, "profile": "-", "engine": engine, "corruption": "inference",
                     "images": "", "seconds": "", "images_per_second": round(summary[(224, engine)], 3),
                     "threads": args.threads, "repeats": repeats}
                )  # fmt: skip
    if not gpu:
        print(
            "torch engine on GPU (d): not measured: no GPU" if not has_gpu else "torch engine on GPU (d): not requested"
        )

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {output}")

    def ratio(size: int, numerator: str, denominator: str) -> float:
        if (size, numerator) in summary and (size, denominator) in summary:
            return summary[(size, numerator)] / summary[(size, denominator)]
        return float("nan")

    ratios = {}
    for size in sizes:
        ratios[f"{size}px torch-cpu/serial"] = ratio(size, "torch-cpu", "serial")
        ratios[f"{size}px torch-cpu/many"] = ratio(size, "torch-cpu", "many")
        ratios[f"{size}px many/serial"] = ratio(size, "many", "serial")
        ratios[f"{size}px torch-gpu/serial"] = ratio(size, "torch-gpu", "serial")
    ratios["224px torch-gpu/resnet50-gpu"] = ratio(224, "torch-gpu", "resnet50-gpu")
    ratios["224px torch-cpu/resnet50-cpu"] = ratio(224, "torch-cpu", "resnet50-cpu")
    headline = ratios["224px torch-cpu/serial"]
    met = None if math.isnan(headline) else headline >= TARGET
    print(
        "RATIOS (suite images/s): "
        + ", ".join(f"{key} n/a" if math.isnan(value) else f"{key} {value:.2f}" for key, value in ratios.items())
        + f"  (target 224px torch-cpu/serial >= {TARGET}: {'n/a' if met is None else 'met' if met else 'NOT met'})"
    )
    _common.finish(
        "corruption_engines",
        headline,
        f">= {TARGET}",
        met,
        info,
        label=f"torch engine on CPU ({args.threads} threads) / serial reference, 224-px suite, images/s",
        ratios=ratios,
        images_per_second={f"{size}px {engine}": rate for (size, engine), rate in summary.items()},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
