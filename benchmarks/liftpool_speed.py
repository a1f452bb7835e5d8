"""LiftDownPool forward+backward / MaxPool2d forward+backward, and / a naive reference.

Shape: a ResNet stage (default N=32, C=64, 56x56, float32, CPU). LiftDownPool is the
package's layer with its defaults (learned P/U, 3 taps, depthwise, combine "sum").

The reference is the obvious implementation written here: split with slicing, separate
P and U modules called on each band separately (the vertical step runs twice, once on
the horizontal approximation and once on the horizontal detail, instead of once on
their concatenation), regularisers computed on every forward. Its weights are copied
from the LiftDownPool and its output, regularisers and input gradient are checked with
allclose before timing, so both do the same arithmetic.

A training step is timed: forward, loss = output.sum() (+ the two lifting regularisers
for the lifting layers, as training adds them), backward into the input and parameters.
Also printed: eval-mode forward only (where LiftDownPool skips the regularisers).

ratio (headline) = LiftDownPool / MaxPool2d, forward+backward; no target is set (the
lifting layer does far more arithmetic than a max), the reference ratio is expected < 1.

    .venv/bin/python benchmarks/liftpool_speed.py [--quick]
"""
from __future__ import annotations

import sys

import _common


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--batch", type=int, default=None, help="N (default 32; quick 2)")
    arguments.add_argument("--channels", type=int, default=64)
    arguments.add_argument("--size", type=int, default=56, help="H = W (even)")
    arguments.add_argument("--inner", type=int, default=None, help="steps per timed sample (default 1)")
    args = arguments.parse_args()
    _common.setup_threads(args.threads)
    info = _common.machine()

    batch = args.batch or (2 if args.quick else 32)
    repeats = args.repeats or (2 if args.quick else 5)
    inner = args.inner or 1
    channels, size = args.channels, args.size

    import torch
    import torch.nn.functional as F
    from torch import nn

    from robustbench_lift.nn.lifting import LiftDownPool

    _common.print_header(
        "liftpool_speed",
        info,
        {
            "shape": f"N={batch}, C={channels}, {size}x{size}, float32, cpu",
            "lift": "LiftDownPool(channels) defaults: learned, kernel_size=3, depthwise, combine=sum",
            "max": "nn.MaxPool2d(2, 2)",
            "repeats": repeats,
            "steps_per_sample": inner,
        },
    )

    class ReferenceOperator(nn.Module):
        """P or U: tanh(conv1x1(relu(depthwise K-tap conv(reflect pad along the axis))))."""

        def __init__(self, horizontal: bool, kernel_size: int) -> None:
            super().__init__()
            self.horizontal = horizontal
            self.half = kernel_size // 2
            shape = (1, kernel_size) if horizontal else (kernel_size, 1)
            self.spatial = nn.Conv2d(channels, channels, shape, groups=channels)
            self.mix = nn.Conv2d(channels, channels, 1)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            pad = (self.half, self.half, 0, 0) if self.horizontal else (0, 0, self.half, self.half)
            return torch.tanh(self.mix(F.relu(self.spatial(F.pad(z, pad, mode="reflect")))))

    class ReferenceLiftDownPool(nn.Module):
        def __init__(self, kernel_size: int = 3) -> None:
            super().__init__()
            self.predict_h = ReferenceOperator(True, kernel_size)
            self.update_h = ReferenceOperator(True, kernel_size)
            self.predict_v = ReferenceOperator(False, kernel_size)
            self.update_v = ReferenceOperator(False, kernel_size)
            self.terms = None

        @staticmethod
        def lift(x, predict, update, horizontal):
            even = x[..., 0::2] if horizontal else x[..., 0::2, :]
            odd = x[..., 1::2] if horizontal else x[..., 1::2, :]
            detail = odd - predict(even)
            approximation = even + update(detail)
            return approximation, detail, even, odd

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s_h, d_h, even_h, odd_h = self.lift(x, self.predict_h, self.update_h, True)
            ll, lh, even_1, odd_1 = self.lift(s_h, self.predict_v, self.update_v, False)
            hl, hh, even_2, odd_2 = self.lift(d_h, self.predict_v, self.update_v, False)
            detail = d_h.pow(2).mean() + lh.pow(2).mean() + hh.pow(2).mean()
            approximation = (
                (s_h - (even_h + odd_h) / 2).pow(2).mean()
                + (ll - (even_1 + odd_1) / 2).pow(2).mean()
                + (hl - (even_2 + odd_2) / 2).pow(2).mean()
            )
            self.terms = (detail, approximation)
            return ll + lh + hl + hh

    torch.manual_seed(0)
    lift = LiftDownPool(channels)
    reference = ReferenceLiftDownPool(lift.kernel_size)
    reference.predict_h.load_state_dict(lift.horizontal.predict.state_dict())
    reference.update_h.load_state_dict(lift.horizontal.update.state_dict())
    reference.predict_v.load_state_dict(lift.vertical.predict.state_dict())
    reference.update_v.load_state_dict(lift.vertical.update.state_dict())
    maxpool = nn.MaxPool2d(2, 2)
    for module in (lift, reference, maxpool):
        module.train()

    x = torch.randn(batch, channels, size, size, requires_grad=True)

    def lift_loss(output):
        detail, approximation = lift.regularization_terms()
        return output.sum() + detail + approximation

    def reference_loss(output):
        detail, approximation = reference.terms
        return output.sum() + detail + approximation

    def step(module, loss_of):
        def run() -> None:
            for _ in range(inner):
                x.grad = None
                module.zero_grad(set_to_none=True)
                loss_of(module(x)).backward()

        return run

    # Fairness check: same outputs, regularisers and input gradients.
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
        and all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(lift.regularization_terms(), reference.terms))
        and torch.allclose(grad_lift, grad_reference, rtol=1e-4, atol=1e-5)
    )
    difference = float((out_lift - out_reference).detach().abs().max())
    print(f"check LiftDownPool vs reference: allclose(output, regularisers, input grad) = {same}; max |output diff| = {difference:.2e}")
    if not same:
        print("WARNING: the reference does not match LiftDownPool; the reference ratio is not a fair comparison")

    # Warm-up, then interleaved training steps.
    for module, loss in ((lift, lift_loss), (reference, reference_loss), (maxpool, lambda out: out.sum())):
        step(module, loss)()
    print("forward+backward (train mode), seconds per sample of", inner, "steps:")
    train = _common.interleaved(
        {"lift": step(lift, lift_loss), "reference": step(reference, reference_loss), "max": step(maxpool, lambda out: out.sum())}, repeats
    )

    # Eval-mode forward: LiftDownPool skips the regularisers, the reference does not.
    def forward_only(module):
        def run() -> None:
            with torch.no_grad():
                for _ in range(inner):
                    module(x)

        return run

    for module in (lift, reference, maxpool):
        module.eval()
        forward_only(module)()
    print("forward only (eval mode, no_grad), seconds per sample of", inner, "passes:")
    evaluation = _common.interleaved({"lift": forward_only(lift), "reference": forward_only(reference), "max": forward_only(maxpool)}, repeats)

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
        print(f"{name:>9}: forward+backward {per_step[name] * 1000:8.2f} ms/step   forward (eval) {per_forward[name] * 1000:8.2f} ms")
    print(f"RATIO LiftDownPool / MaxPool2d, forward+backward: {ratio_max:.2f}  (no target)")
    print(f"RATIO LiftDownPool / reference, forward+backward: {ratio_reference:.3f}  (expected < 1)")
    print(f"ratios of the fastest runs (load check): / MaxPool2d {fastest_max:.2f}, / reference {fastest_reference:.3f}, eval / reference {fastest_eval_reference:.3f}")
    print(f"eval forward: LiftDownPool / MaxPool2d {eval_ratio_max:.2f}, LiftDownPool / reference {eval_ratio_reference:.3f}")
    _common.finish(
        "liftpool_speed",
        ratio_max,
        "none",
        None,
        info,
        label="LiftDownPool / MaxPool2d (fwd+bwd)",
        min_ratio=fastest_max,
        extra_rows=[
            {"benchmark": "liftpool_speed", "label": "LiftDownPool / naive reference (fwd+bwd)", "ratio": ratio_reference, "min_ratio": fastest_reference, "target": "< 1 (expected)", "met": ratio_reference < 1 if same else None},
            {"benchmark": "liftpool_speed", "label": "LiftDownPool / naive reference (eval fwd)", "ratio": eval_ratio_reference, "min_ratio": fastest_eval_reference, "target": "< 1 (expected)", "met": eval_ratio_reference < 1 if same else None},
        ],
        reference_matches=same,
        seconds_per_step=per_step,
        seconds_per_forward=per_forward,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
