"""Corruption-suite throughput per precision and memory format, and where the time goes.

On whatever device is present (CUDA if torch sees it, else the CPU), for each model:

* torchvision ``resnet50`` (random weights, no download) at 224 px on natural photographs
  (scikit-image's samples, ``imagenet`` corruption profile);
* the zoo model ``small_cnn-max-s0`` at 32 px on Fashion-MNIST test images (``cifar``
  profile; a synthetic set is never substituted: without the data this part is skipped),

it times the three stages of the corruption suite separately, per image:

1. **generation**: ``corruptions.corrupt_many`` over ``--corruptions`` at severity 3
   (``--workers`` processes, as the runner's ``workers``);
2. **transfer**: uint8 -> float conversion and host -> device copy (synchronised);
3. **inference**: ``predict_logits``' model call under each ``--precision`` (autocast),
   channels-last off and on (synchronised, after a warm-up batch).

Generation does not depend on precision, so it is timed once per model. The final table
gives images/s per stage and end to end (one image through all three stages, stages not
overlapped, as the runner does them) and each stage's share of the time. fp16 is skipped
on the CPU (refused there, see docs/precision.md). Nothing here asserts on speed.

    .venv/bin/python benchmarks/gpu_inference.py [--quick] [--images N] [--batch-size N]
"""

from __future__ import annotations

import sys

import _common

PRECISIONS = ("fp32", "bf16", "fp16")


def _synchronise(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_stage(function, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``function()`` over ``repeats`` runs (after the caller's warm-up)."""
    times = [_common.timed(function)[0] for _ in range(repeats)]
    return _common.median(times)


def measure(
    name: str,
    model,  # type: ignore[no-untyped-def]
    images,  # type: ignore[no-untyped-def]
    profile: str,
    corruptions: list[str],
    device: str,
    batch_size: int,
    repeats: int,
    workers: int,
) -> list[dict]:
    """Rows of the final table for one model: one per precision x channels-last setting."""
    import copy

    import torch

    import corruptions as engine
    from robustbench_lift.evaluation.inference import to_tensor
    from robustbench_lift.evaluation.precision import autocast, to_channels_last

    count = len(images)
    conditions = [(corruption, 3) for corruption in corruptions]
    seconds, generated = _common.timed(
        lambda: engine.corrupt_many(images, conditions, profile=profile, seed=0, workers=workers)
    )
    generated_images = count * len(conditions)
    generation = seconds / generated_images
    corrupted = next(iter(generated.values()))
    print(f"{name}: generation {generated_images} images in {seconds:.2f} s ({1 / generation:.1f} images/s)")

    def transfer() -> torch.Tensor:
        batches = [to_tensor(corrupted[start : start + batch_size]).to(device) for start in range(0, count, batch_size)]
        _synchronise(device)
        return batches[-1]

    transfer()
    transfer_time = _time_stage(transfer, repeats) / count
    inputs = [to_tensor(corrupted[start : start + batch_size]).to(device) for start in range(0, count, batch_size)]
    device_type = device.split(":")[0]
    rows = []
    for channels_last in (False, True):
        candidate = copy.deepcopy(model).to(device).eval()
        batches = inputs
        if channels_last:
            to_channels_last(candidate)
            batches = [batch.contiguous(memory_format=torch.channels_last) for batch in inputs]
        for precision in PRECISIONS:
            if precision == "fp16" and device_type == "cpu":
                print(f"{name}: fp16 skipped on the CPU (refused there; use bf16)")
                continue

            def infer(candidate=candidate, batches=batches, precision=precision) -> None:  # type: ignore[no-untyped-def]
                with torch.inference_mode(), autocast(precision, device_type):
                    for batch in batches:
                        candidate(batch).float()
                _synchronise(device)

            infer()  # warm-up (cuDNN autotuning, autocast caches)
            inference = _time_stage(infer, repeats) / count
            total = generation + transfer_time + inference
            row = {
                "model": name,
                "px": int(images.shape[1]),
                "precision": precision,
                "channels_last": channels_last,
                "generation_img_s": 1 / generation,
                "transfer_img_s": 1 / transfer_time,
                "inference_img_s": 1 / inference,
                "end_to_end_img_s": 1 / total,
                "share_generation": generation / total,
                "share_transfer": transfer_time / total,
                "share_inference": inference / total,
            }
            print(
                f"{name} {precision} channels_last={channels_last}: inference {row['inference_img_s']:.1f} images/s, "
                f"end to end {row['end_to_end_img_s']:.1f} images/s"
            )
            sys.stdout.flush()
            rows.append(row)
    return rows


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--images", type=int, default=None, help="images per model (default 256; quick 4)")
    arguments.add_argument("--batch-size", type=int, default=None, help="inference batch (default 128; quick 4)")
    arguments.add_argument("--workers", type=int, default=None, help="generation processes (default 2; quick 1)")
    arguments.add_argument(
        "--corruptions", nargs="+", default=None, help="corruptions at severity 3 (default: 4 common; quick 1)"
    )
    arguments.add_argument("--device", default=None, help="default: cuda if torch sees a GPU, else cpu")
    args = arguments.parse_args()
    _common.setup_threads(args.threads)

    import torch
    import torchvision
    from _corruption_images import available_fashion_mnist, fashion_mnist_images, natural_images

    from robustbench_lift import load_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    images = args.images or (4 if args.quick else 256)
    batch_size = args.batch_size or (4 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    workers = args.workers or (1 if args.quick else 2)
    corruptions = args.corruptions or (
        ["gaussian_noise"] if args.quick else ["gaussian_noise", "defocus_blur", "fog", "jpeg_compression"]
    )
    info = _common.machine()
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    _common.print_header(
        "gpu_inference",
        info,
        {
            "device": device,
            "images": images,
            "batch_size": batch_size,
            "repeats": repeats,
            "corruptions": corruptions,
            "workers": workers,
        },
    )

    rows = []
    torch.manual_seed(0)  # resnet50's random weights
    resnet = torchvision.models.resnet50(weights=None)
    rows += measure(
        "resnet50",
        resnet,
        natural_images(images, 224),
        "imagenet",
        corruptions,
        device,
        batch_size,
        repeats,
        workers,
    )
    if available_fashion_mnist():
        zoo = load_model("small_cnn-max-s0")
        rows += measure(
            "small_cnn-max-s0",
            zoo,
            fashion_mnist_images(images, 32),
            "cifar",
            corruptions,
            device,
            batch_size,
            repeats,
            workers,
        )
    else:
        print("small_cnn-max-s0 skipped: Fashion-MNIST is not installed")

    print()
    print(f"device: {device}" + (f" ({info['gpu']})" if "gpu" in info else "") + "; images/s (higher is better)")
    header = (
        "| model | px | precision | channels-last | generation | transfer | inference | end to end |"
        " time: generation / transfer / inference |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['px']} | {row['precision']} | {'on' if row['channels_last'] else 'off'} | "
            f"{row['generation_img_s']:.1f} | {row['transfer_img_s']:.1f} | {row['inference_img_s']:.1f} | "
            f"{row['end_to_end_img_s']:.1f} | {100 * row['share_generation']:.0f} % / "
            f"{100 * row['share_transfer']:.0f} % / {100 * row['share_inference']:.0f} % |"
        )
    # The headline ratio: resnet50's best inference setting over its fp32, channels-last-off speed.
    first = [row for row in rows if row["model"] == "resnet50"]
    fastest = max(first, key=lambda row: row["inference_img_s"]) if first else None
    baseline = next((row for row in first if row["precision"] == "fp32" and not row["channels_last"]), None)
    ratio = fastest["inference_img_s"] / baseline["inference_img_s"] if fastest and baseline else float("nan")
    target = "none (resnet50: best inference setting / fp32 with channels-last off)"
    _common.finish("gpu_inference", ratio, target, None, info, rows=rows, device=device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
