"""Corruption-suite evaluation wall time / bare model inference time, same inputs.

The corrupted inputs are generated once with ``corruptions.corrupt_many`` (the call the
suite's ``prepare`` makes) and that cold generation time is reported on its own. Then,
interleaved and repeated after a warm-up, we time

(a) what the runner does per model for the corruption suite: ``model.to(device).eval()``,
    ``CorruptionSuite.evaluate`` (every cell -- clean and each condition: uint8 -> float
    conversion, batched ``predict_logits``, finite check, error + Wilson interval,
    per-image arrays -- then the per-model completion, flip shares) and the runner's
    decoration of every row with model metadata. (The runner's own per-cell bookkeeping,
    e.g. a results store for resuming, is not included: it is being refactored.)
(b) bare ``model(batch)`` forward passes under ``torch.inference_mode`` over exactly the
    same images (clean + every condition), pre-converted to float tensors, same batch size.

ratio = median(a) / median(b); target <= 1.3. Also printed: the cold ratio
(generation + evaluation) / inference, and ``summarize`` (per run, bootstrap mCE) separately.

    .venv/bin/python benchmarks/corruption_suite_overhead.py [--quick]
"""

from __future__ import annotations

import sys
from typing import Any

import _common

TARGET = 1.3


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--images", type=int, default=None, help="test images sampled (default 250; quick 100)")
    arguments.add_argument("--severities", default=None, help="comma-separated severities (default 1,3,5; quick 3)")
    arguments.add_argument("--corruptions", default="all", help="all, common, extra or comma-separated names")
    arguments.add_argument("--profile", default="cifar", choices=("cifar", "imagenet"))
    arguments.add_argument("--batch-size", type=int, default=500, help="inference batch (the runner's default 500)")
    arguments.add_argument("--workers", type=int, default=2, help="generation processes (the runner's default 2)")
    arguments.add_argument("--model", default="max", help="zoo model (default max)")
    arguments.add_argument("--device", default="cpu", help="torch device for both sides (default cpu)")
    args = arguments.parse_args()
    _common.setup_threads(args.threads)
    info = _common.machine()

    images_count = args.images or (100 if args.quick else 250)
    severities = [int(s) for s in (args.severities or ("3" if args.quick else "1,3,5")).split(",")]
    repeats = args.repeats or (2 if args.quick else 3)

    import numpy as np
    import pandas as pd
    import torch

    import corruptions
    from robustbench_lift.data.datasets import load_dataset
    from robustbench_lift.evaluation.inference import to_tensor
    from robustbench_lift.evaluation.suites import SUITES, ModelEntry, RunContext
    from robustbench_lift.models.zoo import load_zoo_model, zoo_model_name
    from robustbench_lift.run.config import RunConfig, selected_corruptions

    names: Any = args.corruptions if args.corruptions in ("all", "common", "extra") else args.corruptions.split(",")
    config = RunConfig(
        models=[args.model],
        sample_size=images_count,
        suites=["corruption"],
        corruptions=names,
        severities=severities,
        profile=args.profile,
        workers=args.workers,
        batch_size=args.batch_size,
        device=args.device,
        run_name="benchmark",
    )
    conditions: list[tuple[str, int]] = [
        (name, severity) for name in selected_corruptions(config) for severity in config.severities
    ]
    _common.print_header(
        "corruption_suite_overhead",
        info,
        {
            "model": zoo_model_name(args.model),
            "dataset": "fashion_mnist/test",
            "images": images_count,
            "conditions": f"{len(conditions)} corruption x severity + clean",
            "severities": severities,
            "profile": args.profile,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "device": args.device,
            "repeats": repeats,
        },
    )

    model, metadata = load_zoo_model(args.model)
    full = load_dataset("fashion_mnist", "test")
    dataset, indices = full.sample(config.sample_size, config.seed)
    context = RunContext(config, dataset, indices)
    # Newer RunContext resolves the device itself (config "auto" -> cpu/cuda).
    device = getattr(context, "device", None) or config.device
    suite = SUITES.get("corruption")
    entry = ModelEntry(zoo_model_name(args.model), model, metadata)

    # Cold: generate every condition once, exactly as CorruptionSuite.prepare does.
    generation_seconds, prepared = _common.timed(
        lambda: corruptions.corrupt_many(
            dataset.images,
            conditions,
            profile=config.profile,
            seed=config.seed,
            indices=indices,
            workers=config.workers,
        )
    )
    total_images = len(dataset) * (len(conditions) + 1)
    print(
        f"cold generation (corrupt_many, workers={config.workers}): {generation_seconds:.3f} s for {len(dataset) * len(conditions)} images"
    )

    # (b)'s inputs: every array the suite sees, converted once, in the suite's batches.
    arrays = [dataset.images] + [prepared[condition] for condition in conditions]
    batches = [
        to_tensor(array[start : start + config.batch_size]).to(device)
        for array in arrays
        for start in range(0, len(array), config.batch_size)
    ]

    def per_model_evaluation(prepared_inputs: dict[tuple[str, int], np.ndarray]) -> tuple[list[dict[str, Any]], Any]:
        # The runner's per-model work for one suite: every cell (clean + each condition:
        # conversion, predictions, finite check, error + interval, per-image arrays), the
        # suite's per-model completion (flip shares) and the row decoration. Suite.evaluate
        # is the suite's public "all cells of one model, in this process" entry point.
        entry.model.to(device).eval()
        output = suite.evaluate(entry, prepared_inputs, context)
        rows = [
            {
                "run": config.run_name,
                "model": entry.name,
                "architecture": entry.architecture,
                "pooling": entry.pooling,
                "dataset": config.dataset,
            }
            | row
            for row in output.rows
        ]
        return rows, output

    def bare_inference() -> None:
        with torch.inference_mode():
            for batch in batches:
                model(batch)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    # Warm-up on a slice of the work (allocator, oneDNN kernels, first-call imports).
    first = conditions[0]
    per_model_evaluation({first: prepared[first]})
    with torch.inference_mode():
        for batch in batches[:2]:
            model(batch)

    times = _common.interleaved({"suite": lambda: per_model_evaluation(prepared), "inference": bare_inference}, repeats)
    rows, output = per_model_evaluation(prepared)
    ok = sum(1 for row in rows if row.get("status") == "ok")
    print(f"suite rows: {len(rows)} ({ok} ok); expected {len(conditions) + 1}")

    summarize_seconds = float("nan")
    try:
        results = pd.DataFrame(rows)
        summarize_seconds, _ = _common.timed(
            lambda: suite.summarize(results, {entry.name: output.per_image}, [entry], context)
        )
    except Exception as error:  # the suites API is being refactored; this figure is optional
        print(f"summarize not timed: {type(error).__name__}: {error}")

    suite_seconds = _common.median(times["suite"])
    inference_seconds = _common.median(times["inference"])
    ratio = suite_seconds / inference_seconds
    cold_ratio = (generation_seconds + suite_seconds) / inference_seconds
    fastest = _common.min_ratio(times["suite"], times["inference"])
    print(f"(a) suite evaluation per model: {_common.describe(times['suite'])}")
    print(f"(b) bare inference:             {_common.describe(times['inference'])}")
    print(
        f"throughput: suite {total_images / suite_seconds:.0f} images/s, bare inference {total_images / inference_seconds:.0f} images/s ({total_images} images)"
    )
    print(f"summarize (per run, bootstrap, not in the ratio): {summarize_seconds:.3f} s")
    print(
        f"RATIO suite / inference (inputs cached): {ratio:.3f}  (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})"
    )
    print(f"ratio of the fastest runs (load check): {fastest:.3f}")
    print(f"cold ratio (generation + evaluation) / inference: {cold_ratio:.3f}")
    _common.finish(
        "corruption_suite_overhead",
        ratio,
        f"<= {TARGET}",
        ratio <= TARGET,
        info,
        label="suite evaluation / bare inference (inputs cached)",
        min_ratio=fastest,
        extra_rows=[
            {
                "benchmark": "corruption_suite_overhead",
                "label": "cold: (generation + evaluation) / bare inference",
                "ratio": cold_ratio,
                "target": "none",
                "met": None,
            }
        ],
        cold_ratio=cold_ratio,
        generation_seconds=generation_seconds,
        suite_seconds=suite_seconds,
        inference_seconds=inference_seconds,
        summarize_seconds=summarize_seconds,
        images=total_images,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
