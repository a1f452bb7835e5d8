"""foolbox LinfPGD (through robustbench_lift.evaluation.attacks) / a plain torch PGD loop, same work.

Left: ``robustbench_lift.evaluation.attacks.evaluate_attack(model, images, labels, spec, [epsilon])``
with the registered ``pgd_linf`` spec (20 steps of 0.125 * epsilon, uniform random
start), i.e. the harness's clean pass, foolbox's PyTorchModel/eagerpy wrapping, the
attack and foolbox's final adversarial check. Right: a plain torch loop with the same
steps: uniform random start in [-eps, eps], clamp to [0, 1], ``steps`` signed-gradient
ascent steps on the summed cross-entropy of size rel_stepsize * eps, projection onto the
eps-ball, clamp to [0, 1]; one clean pass before and one evaluation pass after, model in
eval mode with parameter gradients off. Same zoo model ("max"), same Fashion-MNIST test
images, same batch size, one epsilon (8/255).

ratio = median(foolbox) / median(plain), interleaved repeats after a warm-up; target
<= 1.2. Both robust accuracies are printed (random starts differ, so they are close,
not equal).

    .venv/bin/python benchmarks/pgd_overhead.py [--quick]
"""

from __future__ import annotations

import sys

import _common

TARGET = 1.2


def main() -> int:
    arguments = _common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--images", type=int, default=None, help="test images (default 256; quick 64)")
    arguments.add_argument(
        "--batch-size", type=int, default=None, help="attack batch (default: all images in one batch)"
    )
    arguments.add_argument("--epsilon", type=float, default=8 / 255)
    arguments.add_argument(
        "--steps", type=int, default=None, help="PGD steps (default: the pgd_linf spec's 20; quick 10)"
    )
    arguments.add_argument("--model", default="max")
    args = arguments.parse_args()
    _common.setup_threads(args.threads)
    info = _common.machine()

    import dataclasses
    import math

    import torch
    import torch.nn.functional as F

    from robustbench_lift.data.datasets import load_dataset
    from robustbench_lift.evaluation.attacks import ATTACKS, evaluate_attack
    from robustbench_lift.evaluation.inference import to_tensor
    from robustbench_lift.models.zoo import load_zoo_model, zoo_model_name

    count = args.images or (64 if args.quick else 256)
    batch_size = args.batch_size or count
    repeats = args.repeats or (1 if args.quick else 3)
    registered = ATTACKS.get("pgd_linf")
    steps = args.steps or (10 if args.quick else registered.steps)
    spec = dataclasses.replace(registered, steps=steps)
    epsilon = args.epsilon
    stepsize = spec.rel_stepsize * epsilon

    _common.print_header(
        "pgd_overhead",
        info,
        {
            "model": zoo_model_name(args.model),
            "images": f"{count} (Fashion-MNIST test, first {count})",
            "batch_size": batch_size,
            "epsilon": f"{epsilon:.6g} (linf)",
            "steps": steps,
            "stepsize": f"{stepsize:.6g} (rel_stepsize {spec.rel_stepsize})",
            "random_start": spec.random_start,
            "repeats": repeats,
        },
    )

    model, _ = load_zoo_model(args.model)
    model.eval()
    dataset = load_dataset("fashion_mnist", "test")
    images = to_tensor(dataset.images[:count])
    labels = torch.from_numpy(dataset.labels[:count])

    def foolbox_side(x=images, y=labels, attack=spec):
        rows = evaluate_attack(model, x, y, attack, [epsilon], batch_size=batch_size, seed=0)
        return rows[0]["robust_accuracy"]

    def plain_side(x_all=images, y_all=labels, n_steps=steps):
        generator = torch.Generator().manual_seed(0)
        frozen = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
        for parameter, _ in frozen:
            parameter.requires_grad_(False)
        robust = 0
        try:
            for start in range(0, len(x_all), batch_size):
                x = x_all[start : start + batch_size]
                y = y_all[start : start + batch_size]
                with torch.no_grad():
                    clean = model(x).argmax(1) == y
                adversarial = (x + torch.empty_like(x).uniform_(-epsilon, epsilon, generator=generator)).clamp(0, 1)
                for _ in range(n_steps):
                    adversarial.requires_grad_(True)
                    loss = F.cross_entropy(model(adversarial), y, reduction="sum")
                    (gradient,) = torch.autograd.grad(loss, adversarial)
                    with torch.no_grad():
                        adversarial = adversarial + stepsize * gradient.sign()
                        adversarial = torch.min(torch.max(adversarial, x - epsilon), x + epsilon).clamp(0, 1)
                with torch.no_grad():
                    robust += int((clean & (model(adversarial).argmax(1) == y)).sum())
        finally:
            for parameter, flag in frozen:
                parameter.requires_grad_(flag)
        return robust / len(x_all)

    # Warm-up on a slice with two steps (imports, foolbox/eagerpy set-up, kernels).
    foolbox_side(images[:16], labels[:16], dataclasses.replace(spec, steps=2))
    plain_side(images[:16], labels[:16], 2)

    results = {}

    def run(name, function):
        def timed_side():
            results[name] = function()

        return timed_side

    times = _common.interleaved({"foolbox": run("foolbox", foolbox_side), "plain": run("plain", plain_side)}, repeats)
    foolbox_seconds = _common.median(times["foolbox"])
    plain_seconds = _common.median(times["plain"])
    ratio = foolbox_seconds / plain_seconds
    fastest = _common.min_ratio(times["foolbox"], times["plain"])
    with torch.no_grad():
        clean_accuracy = float((model(images).argmax(1) == labels).float().mean())
    print(
        f"foolbox LinfPGD via evaluate_attack: {_common.describe(times['foolbox'])} -> {foolbox_seconds / steps * 1000:.1f} ms per step"
    )
    print(
        f"plain torch PGD:                     {_common.describe(times['plain'])} -> {plain_seconds / steps * 1000:.1f} ms per step"
    )
    print(f"per-step overhead of the foolbox path: {(foolbox_seconds - plain_seconds) / steps * 1000:.1f} ms")
    print(
        f"clean accuracy {clean_accuracy:.4f}; robust accuracy at eps {epsilon:.4g}: foolbox {results['foolbox']:.4f}, plain {results['plain']:.4f} (difference {abs(results['foolbox'] - results['plain']):.4f}; 1/n = {1 / count:.4f})"
    )
    print(f"ratio of the fastest runs (load check): {fastest:.3f}")
    print(f"RATIO foolbox / plain: {ratio:.3f}  (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})")
    _common.finish(
        "pgd_overhead",
        ratio,
        f"<= {TARGET}",
        ratio <= TARGET,
        info,
        label=f"foolbox LinfPGD (evaluate_attack) / plain torch PGD, {steps} steps",
        min_ratio=fastest,
        foolbox_seconds=foolbox_seconds,
        plain_seconds=plain_seconds,
        robust_accuracy_foolbox=results["foolbox"],
        robust_accuracy_plain=results["plain"],
        clean_accuracy=clean_accuracy if math.isfinite(clean_accuracy) else None,
        steps=steps,
        images=count,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
