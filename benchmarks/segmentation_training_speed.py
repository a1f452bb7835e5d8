"""Training cost of the segmentation zoo: seconds per training step of segnet_small for every
pooling kind, the seconds per epoch they imply, and the whole zoo's CPU time.

One training step of the zoo recipe (robustbench_lift.training_segmentation defaults):
batch of 32 scenes of 64x64 (random pixels and labels: the cost does not depend on the
content), forward, cross-entropy, the lifting regularisers for learned lifting, backward,
AdamW step. All kinds are timed in one process, interleaved (the order rotates every
round) after a warm-up; the median of the repeats is reported, per step and per epoch of
the recipe's training scenes.

ratio (headline) = lift / max seconds per step; no target. Also printed: the zoo estimate
= sum over kinds of (epochs x seconds per epoch) x seeds, on one thread per model, and that
divided by the cores a run would use (one model per core). Validation passes are not
included (about 1 % of an epoch).

    .venv/bin/python benchmarks/segmentation_training_speed.py [--quick] [--threads 1]
"""

from __future__ import annotations

import math

import _common

KINDS = ("max", "avg", "skip", "blur", "lift", "haar")


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--kinds", nargs="+", default=list(KINDS))
    arguments.add_argument("--seeds", type=int, default=3, help="models per kind in the zoo estimate")
    arguments.add_argument("--cores", type=int, default=2, help="parallel models in the zoo estimate")
    args = arguments.parse_args()
    _common.setup_threads(args.threads or 1)
    info = _common.machine()

    import torch
    import torch.nn.functional as F

    from robustbench_lift.models.segmentation import build_segmenter
    from robustbench_lift.nn.lifting import lifting_regularization
    from robustbench_lift.training_segmentation import OPTIMIZERS, SegmentationTrainingConfig

    recipe = SegmentationTrainingConfig()
    batch = 4 if args.quick else recipe.batch_size
    size = 32 if args.quick else recipe.scene_config["size"]
    repeats = args.repeats or (1 if args.quick else 3)
    steps_per_epoch = math.ceil(recipe.train_scenes / recipe.batch_size)
    _common.print_header(
        "segmentation_training_speed",
        info,
        {
            "model": f"{recipe.architecture} widths {recipe.widths}, {recipe.convs_per_stage} conv per stage",
            "step": f"batch {batch}, {size}x{size}, cross-entropy (+ lifting regularisers for lift), {recipe.optimizer}",
            "epoch": f"{recipe.train_scenes} scenes = {steps_per_epoch} steps; {recipe.epochs} epochs",
            "repeats": repeats,
        },
    )
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 11, (batch, size, size))
    steps = {}
    for kind in args.kinds:
        model = build_segmenter(kind, 11, mean=[0.5] * 3, std=[0.25] * 3, widths=recipe.widths).train()
        optimizer = OPTIMIZERS[recipe.optimizer](model.parameters(), recipe)
        learned = kind == "lift"

        def step(model=model, optimizer=optimizer, learned=learned) -> None:
            loss = F.cross_entropy(model(x), y)
            if learned:
                detail, approximation = lifting_regularization(model)
                loss = loss + recipe.detail_weight * detail + recipe.approximation_weight * approximation
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # warm-up
        steps[kind] = step
    times = _common.interleaved(steps, repeats)
    per_step = {kind: _common.median(values) for kind, values in times.items()}
    scale = recipe.batch_size / batch  # quick mode: scale the small batch to the recipe's
    per_epoch = {kind: per_step[kind] * scale * steps_per_epoch for kind in per_step}
    for kind in per_step:
        print(
            f"{kind:>5}: {per_step[kind] * 1000:8.1f} ms/step   {per_epoch[kind]:7.1f} s/epoch   x max {per_step[kind] / per_step[args.kinds[0]]:.2f}"
        )
    zoo_seconds = sum(per_epoch.values()) * recipe.epochs * args.seeds
    print(f"zoo estimate: {zoo_seconds:.0f} s of one core ({len(per_step)} kinds x {args.seeds} seeds x {recipe.epochs} epochs); "
          f"{zoo_seconds / args.cores / 60:.0f} min on {args.cores} cores")  # fmt: skip
    ratio = per_step["lift"] / per_step["max"] if {"lift", "max"} <= set(per_step) else float("nan")
    _common.finish(
        "segmentation_training_speed",
        ratio,
        "none",
        None,
        info,
        label="segnet_small lift / max, seconds per training step",
        seconds_per_epoch={kind: round(value, 1) for kind, value in per_epoch.items()},
        zoo_minutes_on_cores=round(zoo_seconds / args.cores / 60, 1),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
