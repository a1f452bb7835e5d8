"""Running an attack on a model: robust accuracy per epsilon, with Wilson intervals.

Epsilon 0 is not run through the attack: foolbox would clip any perturbation to nothing
and ask the model again, which is exactly one more clean forward pass, so that is what
we do, at no attack cost. Because it is a second, separate pass, a model whose
predictions are not deterministic still shows up in :func:`sanity_warnings`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import foolbox
import numpy as np
import torch

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.attacks.base import ATTACKS, AttackSpec, validate_epsilons
from robustbench_lift.evaluation.precision import autocast, check_precision
from robustbench_lift.metrics import wilson_interval

__all__ = ["evaluate_attack"]


def evaluate_attack(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str | AttackSpec,
    epsilons: Sequence[float] | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    seed: int = 0,
    robust_correct: dict[float, np.ndarray] | None = None,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """Attack ``model`` on ``images`` (N, C, H, W in [0, 1]) and return one row per epsilon.

    ``attack`` is a registered name or an :class:`AttackSpec` instance; ``epsilons``
    default to the spec's grid. Rows carry the keys of :data:`ROW_KEYS`: counts, robust
    accuracy with its 95 % Wilson interval, foolbox's success rate over all inputs, the
    share of originally correct inputs that flip and, for minimisation attacks, the
    median norm of the smallest adversarial over originally correct inputs it fooled.

    The model runs in eval mode with its parameters' gradients switched off (restored on
    return) and is moved to ``device``. Random starts are drawn inside a forked
    generator, seeded per (``seed``, epsilon, batch): results repeat for the same seed
    and batch_size, a row does not depend on the other epsilons of the grid, and the
    caller's random state is untouched. Non-finite logits give rows with status
    "failed" and a warning instead of an exception. A minimisation attack that fails on
    some correct inputs says so in ``warning`` (its median covers the others only).
    A dict passed as ``robust_correct`` receives, per epsilon, a bool per input: True where
    the prediction is right and stays right under the attack (what a paired comparison of
    two models on the same inputs needs).
    ``precision`` (``fp32``, ``bf16``, ``fp16``) runs the model's forward passes under
    autocast during the attack; the default fp32 keeps attack gradients in full precision.
    """
    spec = attack if isinstance(attack, AttackSpec) else ATTACKS.get(attack)
    _check_data(images, labels)
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    input_shape = tuple(images.shape[1:])
    grid = tuple(float(epsilon) for epsilon in (spec.epsilons_for(input_shape) if epsilons is None else epsilons))
    validate_epsilons(spec.norm, grid, input_shape=input_shape)
    device = torch.device(device)
    check_precision(precision, device.type, "attack_precision")

    watched = _FiniteLogitsWatch(model, precision, device.type).eval()
    with _frozen_for_evaluation(model), _forked_generator(device):
        fmodel = foolbox.PyTorchModel(watched, bounds=(0, 1), device=device)
        try:
            outcome = _run_batches(spec, fmodel, images, labels, grid, batch_size, device, seed, watched)
        except Exception:
            # NaN logits can make foolbox's internals fail; that is the model's
            # fault and reported as such, anything else is a bug and propagates.
            if not watched.non_finite_seen:
                raise
            outcome = None
    if outcome is None:
        return _failed_rows(spec, grid, len(images), watched.describe())
    clean_correct, success, smallest = outcome
    if robust_correct is not None:
        robust_correct.update(
            {epsilon: (clean_correct & ~success[index]).numpy() for index, epsilon in enumerate(grid)}
        )
    return [_row(spec, epsilon, clean_correct, success[index], smallest) for index, epsilon in enumerate(grid)]


class _FiniteLogitsWatch(torch.nn.Module):
    """Passes logits through and remembers whether any was NaN or infinite."""

    def __init__(self, model: torch.nn.Module, precision: str = "fp32", device_type: str = "cpu") -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.device_type = device_type
        self.non_finite_seen = False
        self.non_finite_during: list[str] = []
        self.phase = "clean"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        with autocast(self.precision, self.device_type):
            # Attacks compute losses and gradients on fp32 logits whatever the model ran in.
            logits = self.model(inputs).float()
        if not bool(torch.isfinite(logits).all()):
            self.non_finite_seen = True
            if self.phase not in self.non_finite_during:
                self.non_finite_during.append(self.phase)
        return logits

    def describe(self) -> str:
        where = " and ".join(self.non_finite_during) or "evaluation"
        return f"model returned non-finite logits (NaN or inf) during the {where} pass; attack not evaluated"


@contextlib.contextmanager
def _frozen_for_evaluation(model: torch.nn.Module) -> Iterator[None]:
    # Eval mode fixes BatchNorm/Dropout; parameter gradients are never needed by an
    # input-gradient attack and switching them off saves backward work.
    was_training = model.training
    needed_grad = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    model.eval()
    for parameter, _ in needed_grad:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in needed_grad:
            parameter.requires_grad_(flag)
        model.train(was_training)


@contextlib.contextmanager
def _forked_generator(device: torch.device) -> Iterator[None]:
    # Only the generator of the device in use is forked (and later seeded, see
    # _reseed), so evaluating on the CPU never touches or initialises CUDA.
    cuda_devices: list[int] = []
    if device.type == "cuda":
        cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda_devices):
        yield


def _check_data(images: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise UserError(f"images must be a 4-D tensor (N, C, H, W), got {getattr(images, 'shape', type(images))}")
    if not images.is_floating_point():
        raise UserError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    if len(images) == 0:
        raise UserError("no images to attack")
    if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
        raise UserError("images must lie in [0, 1] (normalisation belongs inside the model)")
    if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),):
        raise UserError(f"labels must be a tensor of shape ({len(images)},), got {getattr(labels, 'shape', None)}")


def _run_batches(
    spec: AttackSpec,
    fmodel: foolbox.PyTorchModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    grid: tuple[float, ...],
    batch_size: int,
    device: torch.device,
    seed: int,
    watched: _FiniteLogitsWatch,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Returns (clean_correct (N,), success (K, N), smallest perturbation (N,), NaN where
    none) on the CPU, or None once the model produced non-finite logits."""
    n = len(images)
    clean_correct = torch.zeros(n, dtype=torch.bool)
    # Clean pass over everything first: a NaN model is caught before any attack cost.
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = images[start : start + batch_size].to(device=device, dtype=torch.float32)
            target = labels[start : start + batch_size].to(device=device, dtype=torch.long)
            clean_correct[start : start + batch_size] = (fmodel(batch).argmax(dim=-1) == target).cpu()
    if watched.non_finite_seen:
        return None

    attack_object = spec.build() if spec.minimization else None
    attack_run = None if spec.minimization else spec.success_function(watched, device)
    attacked = [index for index, epsilon in enumerate(grid) if epsilon > 0]
    # None asks a minimisation attack for its unclipped smallest adversarial as well.
    call_epsilons: list[float | None] = [grid[index] for index in attacked]
    if spec.minimization:
        call_epsilons.append(None)
    success = torch.zeros(len(grid), n, dtype=torch.bool)
    smallest = torch.full((n,), math.nan)
    watched.phase = "attack"
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = images[start:stop].to(device=device, dtype=torch.float32)
        target = labels[start:stop].to(device=device, dtype=torch.long)
        with torch.no_grad():
            unchanged_success = (fmodel(batch).argmax(dim=-1) != target).cpu()
        for index, epsilon in enumerate(grid):
            if epsilon == 0:
                success[index, start:stop] = unchanged_success
        if attack_object is not None:
            # One run serves every epsilon: foolbox clips the smallest adversarial to each.
            _reseed(seed, None, start, device)
            raw, _, batch_success = attack_object(fmodel, batch, target, epsilons=call_epsilons)
            batch_success = batch_success.cpu()
            for position, index in enumerate(attacked):
                success[index, start:stop] = batch_success[position]
            perturbation = (raw[-1] - batch).flatten(1)
            norms = (perturbation.abs().amax(dim=1) if spec.norm == "linf" else perturbation.norm(dim=1)).cpu()
            smallest[start:stop] = torch.where(batch_success[-1], norms, torch.full_like(norms, math.nan))
        elif attack_run is not None:
            # Each epsilon is attacked on its own from its own seed, so a row does not
            # depend on the rest of the grid (a headline-only run repeats the full grid's
            # headline number).
            for index in attacked:
                _reseed(seed, grid[index], start, device)
                success[index, start:stop] = attack_run(batch, target, grid[index]).cpu()
        if watched.non_finite_seen:
            return None
    return clean_correct, success, smallest


def _reseed(seed: int, epsilon: float | None, batch_start: int, device: torch.device) -> None:
    # Mixes the caller's seed with the epsilon and the batch's first index into one
    # 63-bit seed: every (epsilon, batch) draws its own, repeatable random start.
    epsilon_code = -1 if epsilon is None else round(epsilon * 2**32)
    mixed = seed
    for part in (epsilon_code, batch_start):
        mixed = (mixed * 1_000_003 + part) % (2**63)
    torch.random.default_generator.manual_seed(mixed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(mixed)


def _row(
    spec: AttackSpec,
    epsilon: float,
    clean_correct: torch.Tensor,
    success: torch.Tensor,
    smallest: torch.Tensor,
) -> dict[str, Any]:
    n = len(clean_correct)
    clean_count = int(clean_correct.sum())
    robust_correct = int((clean_correct & ~success).sum())
    low, high = wilson_interval(robust_correct, n)
    flipped = int((clean_correct & success).sum())
    median = math.nan
    warning = ""
    if spec.minimization:
        found = smallest[clean_correct & ~torch.isnan(smallest)]
        if len(found):
            # torch.median takes the lower middle value; the usual median averages both.
            median = float(found.double().quantile(0.5))
        missed = clean_count - len(found)
        if missed == clean_count and clean_count:
            warning = f"{spec.name}: found no adversarial for any of the {clean_count} correct inputs"
        elif missed:
            # The median covers only the inputs the attack fooled, the easy ones: say so.
            warning = (
                f"{spec.name}: found no adversarial for {missed} of {clean_count} correct inputs; "
                "median_perturbation covers the others only and is biased low"
            )
    return {
        "attack": spec.name,
        "norm": spec.norm,
        "epsilon": epsilon,
        "n": n,
        "clean_correct": clean_count,
        "robust_correct": robust_correct,
        "robust_accuracy": robust_correct / n,
        "robust_accuracy_low": low,
        "robust_accuracy_high": high,
        "success_rate": float(success.float().mean()),
        "flipped_correct_share": flipped / clean_count if clean_count else math.nan,
        "median_perturbation": median,
        "status": "ok",
        "warning": warning,
    }


def _failed_rows(spec: AttackSpec, grid: tuple[float, ...], n: int, warning: str) -> list[dict[str, Any]]:
    # Counts are 0 and every rate NaN: nothing measured here may be averaged in.
    return [
        {
            "attack": spec.name,
            "norm": spec.norm,
            "epsilon": epsilon,
            "n": n,
            "clean_correct": 0,
            "robust_correct": 0,
            "robust_accuracy": math.nan,
            "robust_accuracy_low": math.nan,
            "robust_accuracy_high": math.nan,
            "success_rate": math.nan,
            "flipped_correct_share": math.nan,
            "median_perturbation": math.nan,
            "status": "failed",
            "warning": warning,
        }
        for epsilon in grid
    ]
