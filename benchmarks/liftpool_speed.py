"""LiftDownPool training step / MaxPool2d, and / a straightforward reference implementation.

Shape: a ResNet stage (default N=32, C=64, 56x56, float32, CPU). LiftDownPool is the zoo's
configuration (learned P/U, 3 taps, depthwise, combine "sum", ``--share all``: one P/U
pair for the three lifts, as in the paper; ``--share per_direction`` for the variant).

The reference is the obvious implementation written here: split with strided slicing,
P and U as modules (reflect pad, depthwise conv, relu, 1x1 conv, tanh) called on each band
separately (the vertical step runs twice, once on the horizontal approximation and once
on the horizontal detail), regularisers with pow/mean on every training forward. Its
weights are the LiftDownPool's (shared mode: the same taps, transposed for the vertical
lifts), and its output, regularisers and input gradient are checked against the layer's
to 1e-5 before timing.

Timed, interleaved, one process: a training step (forward, loss = output.sum() plus the
two lifting regularisers for the lifting layers, backward into input and parameters, an
SGD step on the lifting parameters) for LiftDownPool, the reference and MaxPool2d(2, 2)
(which has no parameters and no regularisers); and an eval-mode forward (no_grad, where
LiftDownPool skips the regularisers).

Ratios (medians; the fastest-run ratios are printed too, steadier on a loaded machine):
  LiftDownPool / MaxPool2d, training step (forward+backward): target <= 7
  LiftDownPool / reference, training step: target <= 1

    .venv/bin/python benchmarks/liftpool_speed.py [--quick] [--threads 2] [--share all]
"""

from __future__ import annotations

import sys

import _common

TARGET_MAX = 7.0
TARGET_REFERENCE = 1.0


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--batch", type=int, default=None, help="N (default 32; quick 2)")
    arguments.add_argument("--channels", type=int, default=64)
    arguments.add_argument("--size", type=int, default=56, help="H = W (even)")
    arguments.add_argument("--inner", type=int, default=None, help="steps per timed sample (default 1)")
    arguments.add_argument("--share", default="all", choices=("all", "per_direction"), help="P/U sharing (zoo: all)")
    arguments.add_argument("--device", default="cpu", help="cpu or cuda")
    args = arguments.parse_args()
    _common.setup_threads(args.threads)
    info = _common.machine()

    batch = args.batch or (2 if args.quick else 32)
    repeats = args.repeats or (2 if args.quick else 7)
    inner = args.inner or 1
    channels, size = args.channels, args.size

    import torch
    import torch.nn.functional as F
    from torch import nn

    from robustbench_lift.nn.lifting import HORIZONTAL, VERTICAL, LiftDownPool

    device = torch.device(args.device)
    _common.print_header(
        "liftpool_speed",
        info,
        {
            "shape": f"N={batch}, C={channels}, {size}x{size}, float32, {device}",
            "lift": f"LiftDownPool(channels, share={args.share!r}): learned, kernel_size=3, depthwise, combine=sum",
            "max": "nn.MaxPool2d(2, 2)",
            "repeats": repeats,
            "steps_per_sample": inner,
        },
    )

    class ReferenceOperator(nn.Module):
        """P or U: tanh(conv1x1(relu(depthwise K-tap conv(reflect pad along the axis)))).

        The taps are stored for the horizontal axis and transposed for the vertical one,
        so one operator can serve both (the shared pair)."""

        def __init__(self, kernel_size: int) -> None:
            super().__init__()
            self.half = kernel_size // 2
            self.spatial = nn.Conv2d(channels, channels, (1, kernel_size), groups=channels)
            self.mix = nn.Conv2d(channels, channels, 1)

        def forward(self, z: torch.Tensor, horizontal: bool) -> torch.Tensor:
            pad = (self.half, self.half, 0, 0) if horizontal else (0, 0, self.half, self.half)
            weight = self.spatial.weight if horizontal else self.spatial.weight.transpose(-1, -2)
            hidden = F.conv2d(F.pad(z, pad, mode="reflect"), weight, self.spatial.bias, groups=channels)
            return torch.tanh(self.mix(F.relu(hidden)))

    class ReferenceLiftDownPool(nn.Module):
        def __init__(self, kernel_size: int, shared: bool) -> None:
            super().__init__()
            self.predict_h = ReferenceOperator(kernel_size)
            self.update_h = ReferenceOperator(kernel_size)
            self.predict_v = self.predict_h if shared else ReferenceOperator(kernel_size)
            self.update_v = self.update_h if shared else ReferenceOperator(kernel_size)
            self.terms = None

        @staticmethod
        def lift(x, predict, update, horizontal):
            even = x[..., 0::2] if horizontal else x[..., 0::2, :]
            odd = x[..., 1::2] if horizontal else x[..., 1::2, :]
            detail = odd - predict(even, horizontal)
            approximation = even + update(detail, horizontal)
            return approximation, detail, even, odd

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s_h, d_h, even_h, odd_h = self.lift(x, self.predict_h, self.update_h, True)
            ll, lh, even_1, odd_1 = self.lift(s_h, self.predict_v, self.update_v, False)
            hl, hh, even_2, odd_2 = self.lift(d_h, self.predict_v, self.update_v, False)
            if self.training:
                detail = d_h.pow(2).mean() + lh.pow(2).mean() + hh.pow(2).mean()
                approximation = (
                    (s_h - (even_h + odd_h) / 2).pow(2).mean()
                    + (ll - (even_1 + odd_1) / 2).pow(2).mean()
                    + (hl - (even_2 + odd_2) / 2).pow(2).mean()
                )
                self.terms = (detail, approximation)
            return ll + lh + hl + hh

    def copy_operator(target: ReferenceOperator, source: nn.Module, axis: int) -> None:
        with torch.no_grad():
            weight = source.spatial.weight
            target.spatial.weight.copy_(weight if axis == HORIZONTAL else weight.transpose(-1, -2))
            target.spatial.bias.copy_(source.spatial.bias)
            target.mix.load_state_dict(source.mix.state_dict())

    torch.manual_seed(0)
    lift = LiftDownPool(channels, share=args.share)
    reference = ReferenceLiftDownPool(lift.kernel_size, shared=args.share == "all")
    for axis, (predict, update) in (
        (HORIZONTAL, (reference.predict_h, reference.update_h)),
        (VERTICAL, (reference.predict_v, reference.update_v)),
    ):
        lift_predict, lift_update = lift.operators(axis)
        copy_operator(predict, lift_predict, lift_predict.axis)
        copy_operator(update, lift_update, lift_update.axis)
    maxpool = nn.MaxPool2d(2, 2)
    for module in (lift, reference, maxpool):
        module.to(device).train()
    optimizers = {
        name: torch.optim.SGD(module.parameters(), lr=1e-6)
        for name, module in (("lift", lift), ("reference", reference))
    }

    x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)

    def lift_loss(output):
        detail, approximation = lift.regularisation_terms()
        return output.sum() + detail + approximation

    def reference_loss(output):
        detail, approximation = reference.terms
        return output.sum() + detail + approximation

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(name, module, loss_of):
        optimizer = optimizers.get(name)

        def run() -> None:
            for _ in range(inner):
                x.grad = None
                module.zero_grad(set_to_none=True)
                loss_of(module(x)).backward()
                if optimizer is not None:
                    optimizer.step()
            synchronize()

        return run

    # Fairness check (before any optimizer step): same outputs, regularisers and input gradients.
    x.grad = None
    out_lift = lift(x)
    lift_loss(out_lift).backward()
    grad_lift = x.grad.clone()
    x.grad = None
    out_reference = reference(x)
    reference_loss(out_reference).backward()
    grad_reference = x.grad.clone()
    same = (
        torch.allclose(out_lift, out_reference, rtol=1e-5, atol=1e-5)
        and all(
            torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(lift.regularisation_terms(), reference.terms)
        )
        and torch.allclose(grad_lift, grad_reference, rtol=1e-4, atol=1e-5)
    )
    difference = float((out_lift - out_reference).detach().abs().max())
    print(
        f"check LiftDownPool vs reference: allclose(output, regularisers, input grad) = {same}; "
        f"max |output diff| = {difference:.2e}"
    )
    if not same:
        print("WARNING: the reference does not match LiftDownPool; the reference ratio is not a fair comparison")

    sides = {
        "lift": step("lift", lift, lift_loss),
        "reference": step("reference", reference, reference_loss),
        "max": step("max", maxpool, lambda out: out.sum()),
    }
    for run in sides.values():  # warm-up
        run()
    print("training step (forward+backward+SGD, train mode), seconds per sample of", inner, "steps:")
    train = _common.interleaved(sides, repeats)

    def forward_only(module):
        def run() -> None:
            with torch.no_grad():
                for _ in range(inner):
                    module(x)
            synchronize()

        return run

    for module in (lift, reference, maxpool):
        module.eval()
        forward_only(module)()
    print("forward only (eval mode, no_grad), seconds per sample of", inner, "passes:")
    evaluation = _common.interleaved(
        {"lift": forward_only(lift), "reference": forward_only(reference), "max": forward_only(maxpool)}, repeats
    )

    per_step = {name: _common.median(values) / inner for name, values in train.items()}
    per_forward = {name: _common.median(values) / inner for name, values in evaluation.items()}
    ratio_max = per_step["lift"] / per_step["max"]
    ratio_reference = per_step["lift"] / per_step["reference"]
    eval_ratio_max = per_forward["lift"] / per_forward["max"]
    eval_ratio_reference = per_forward["lift"] / per_forward["reference"]
    fastest_max = _common.min_ratio(train["lift"], train["max"])
    fastest_reference = _common.min_ratio(train["lift"], train["reference"])
    fastest_eval_reference = _common.min_ratio(evaluation["lift"], evaluation["reference"])
    for name in ("lift", "reference", "max"):
        print(
            f"{name:>9}: training step {per_step[name] * 1000:8.2f} ms   "
            f"forward (eval) {per_forward[name] * 1000:8.2f} ms"
        )
    print(
        f"eval forward: LiftDownPool / MaxPool2d {eval_ratio_max:.2f}, "
        f"LiftDownPool / reference {eval_ratio_reference:.3f}"
    )
    print(
        f"ratios of the fastest runs (load check): / MaxPool2d {fastest_max:.2f}, / reference {fastest_reference:.3f}, "
        f"eval / reference {fastest_eval_reference:.3f}"
    )
    print(f"RATIO LiftDownPool / MaxPool2d, training step (fwd+bwd): {ratio_max:.2f}  (target <= {TARGET_MAX:g})")
    print(f"RATIO LiftDownPool / reference, training step: {ratio_reference:.3f}  (target <= {TARGET_REFERENCE:g})")
    _common.finish(
        "liftpool_speed",
        ratio_max,
        f"<= {TARGET_MAX:g}",
        ratio_max <= TARGET_MAX,
        info,
        label=f"LiftDownPool(share={args.share}) / MaxPool2d (training step)",
        min_ratio=fastest_max,
        extra_rows=[
            {
                "benchmark": "liftpool_speed",
                "label": f"LiftDownPool(share={args.share}) / reference (training step)",
                "ratio": ratio_reference,
                "min_ratio": fastest_reference,
                "target": f"<= {TARGET_REFERENCE:g}",
                "met": ratio_reference <= TARGET_REFERENCE if same else None,
            },
            {
                "benchmark": "liftpool_speed",
                "label": f"LiftDownPool(share={args.share}) / reference (eval forward)",
                "ratio": eval_ratio_reference,
                "min_ratio": fastest_eval_reference,
                "target": "none",
                "met": None,
            },
        ],
        reference_matches=same,
        seconds_per_step=per_step,
        seconds_per_forward=per_forward,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
