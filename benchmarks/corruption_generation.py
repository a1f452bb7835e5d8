"""Corruption generation throughput: corrupt_many(..., workers=2) / a serial imagecorruptions loop.

Both sides do the same work: the ``imagenet`` profile of ``corruptions.corrupt_many``
calls ``imagecorruptions.corrupt`` once per image (plus its per-image seeding), and the
serial side calls ``imagecorruptions.corrupt(image, corruption_name=..., severity=...)``
in a plain loop over the same images and the same conditions (all 19 corruptions at the
chosen severities), writing into a preallocated array.

Serial means one core: the loop runs with OpenCV limited to one thread, as the engine's
workers are (``cv2.setNumThreads(1)`` in their initializer); left at OpenCV's default,
several corruptions already use both cores inside one process. That variant is timed
too and reported as a second, informational ratio.

Warm-up: the serial side runs every corruption once first (imports, numba JIT of
glass_blur in this process); the parallel side runs every condition on a few images
first, which starts the engine's long-lived worker pool and compiles in its workers (a
run pays that once, not per call).

ratio = serial time / parallel time (= parallel images/s / serial images/s); target >= 1.8.

    .venv/bin/python benchmarks/corruption_generation.py [--quick]
"""

from __future__ import annotations

import sys

import _common

TARGET = 1.8


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--images", type=int, default=None, help="images (default 96; quick 8)")
    arguments.add_argument("--size", type=int, default=None, help="image side, a multiple of 32 (default 96; quick 64)")
    arguments.add_argument("--severities", default="3", help="comma-separated severities (default 3)")
    arguments.add_argument("--workers", type=int, default=2)
    arguments.add_argument(
        "--no-threaded-serial",
        action="store_true",
        help="skip the serial loop with OpenCV's default threads (skipped with --quick)",
    )
    args = arguments.parse_args()
    _common.setup_threads(args.threads)
    info = _common.machine()

    count = args.images or (8 if args.quick else 96)
    size = args.size or (64 if args.quick else 96)
    if size % 32:
        raise SystemExit("--size must be a multiple of 32 (Fashion-MNIST's 32 px, upscaled by repetition)")
    severities = [int(s) for s in args.severities.split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    threaded_serial = not (args.quick or args.no_threaded_serial)

    import cv2
    import numpy as np

    import corruptions
    from robustbench_lift.data.datasets import load_dataset

    cv2_default_threads = cv2.getNumThreads()
    names = corruptions.corruption_names("all")
    conditions = [(name, severity) for name in names for severity in severities]
    _common.print_header(
        "corruption_generation",
        info,
        {
            "profile": "imagenet (imagecorruptions per image)",
            "images": count,
            "image_size": f"{size}x{size}x3 uint8 (Fashion-MNIST test, nearest-neighbour upscaled)",
            "conditions": f"{len(conditions)} ({len(names)} corruptions x severities {severities})",
            "workers": args.workers,
            "serial": f"one process, cv2 threads 1 (default here: {cv2_default_threads})",
            "repeats": repeats,
        },
    )

    factor = size // 32
    images = np.ascontiguousarray(
        np.repeat(np.repeat(load_dataset("fashion_mnist", "test").images[:count], factor, axis=1), factor, axis=2)
    )
    work = count * len(conditions)

    import imagecorruptions

    def loop() -> np.ndarray:
        output = np.empty((len(conditions),) + images.shape, dtype=np.uint8)
        for position, (name, severity) in enumerate(conditions):
            for index, image in enumerate(images):
                output[position, index] = imagecorruptions.corrupt(image, corruption_name=name, severity=severity)
        return output

    def serial() -> np.ndarray:
        cv2.setNumThreads(1)
        try:
            return loop()
        finally:
            cv2.setNumThreads(cv2_default_threads)

    def parallel() -> dict:
        return corruptions.corrupt_many(images, conditions, profile="imagenet", seed=0, workers=args.workers)

    # Warm-up: every corruption once here (imports, numba JIT); start the forkserver.
    for name in names:
        imagecorruptions.corrupt(images[0], corruption_name=name, severity=severities[0])
    for _ in range(2):  # twice, so both workers meet every condition once
        corruptions.corrupt_many(images[:8], conditions, profile="imagenet", workers=args.workers)

    sides = {"serial": serial, "parallel": parallel}
    if threaded_serial:
        sides["serial_cv2_threads"] = loop
    times = _common.interleaved(sides, repeats)
    serial_seconds = _common.median(times["serial"])
    parallel_seconds = _common.median(times["parallel"])
    ratio = serial_seconds / parallel_seconds
    fastest = _common.min_ratio(times["serial"], times["parallel"])
    print(
        f"serial imagecorruptions loop (cv2 1 thread): {_common.describe(times['serial'])} -> {work / serial_seconds:.1f} images/s"
    )
    threaded_ratio = float("nan")
    if threaded_serial:
        threaded_seconds = _common.median(times["serial_cv2_threads"])
        threaded_ratio = threaded_seconds / parallel_seconds
        print(
            f"same loop, cv2 default {cv2_default_threads} threads:   {_common.describe(times['serial_cv2_threads'])} -> {work / threaded_seconds:.1f} images/s"
        )
    print(
        f"corrupt_many workers={args.workers}:                {_common.describe(times['parallel'])} -> {work / parallel_seconds:.1f} images/s"
    )
    if threaded_serial:
        print(f"ratio against the loop with cv2's default threads: {threaded_ratio:.3f}")
    print(f"ratio of the fastest runs (load check): {fastest:.3f}")
    print(
        f"RATIO parallel / serial throughput: {ratio:.3f}  (target >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'})"
    )
    extra = []
    if threaded_serial:
        extra.append(
            {
                "benchmark": "corruption_generation",
                "label": f"corrupt_many / serial loop with cv2's default {cv2_default_threads} threads",
                "ratio": threaded_ratio,
                "target": "none",
                "met": None,
            }
        )
    _common.finish(
        "corruption_generation",
        ratio,
        f">= {TARGET}",
        ratio >= TARGET,
        info,
        label=f"corrupt_many(workers={args.workers}) / serial imagecorruptions loop (1 core), throughput",
        min_ratio=fastest,
        extra_rows=extra,
        serial_seconds=serial_seconds,
        parallel_seconds=parallel_seconds,
        serial_images_per_second=work / serial_seconds,
        parallel_images_per_second=work / parallel_seconds,
        threaded_serial_ratio=threaded_ratio,
        images=work,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
