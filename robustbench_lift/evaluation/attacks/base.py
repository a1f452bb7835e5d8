"""Adversarial robustness suite over foolbox 3 (SPEC section 5).

Every attack is a small :class:`AttackSpec` subclass filed in :data:`ATTACKS`; the
registry holds one default-configured instance per name, and a caller who wants other
hyperparameters builds the class directly (``LinfProjectedGradientDescent(steps=100)``)
and hands the instance to :func:`evaluate_attack`.

Models are ``torch.nn.Module`` objects mapping float inputs in [0, 1] of shape
(N, C, H, W) to logits, their normalisation inside, so foolbox sees bounds (0, 1) and no
preprocessing.

Default epsilon grids are for 32-px inputs in [0, 1] (CIFAR conventions):

- L-inf: 0, 1/255, 2/255, 4/255, 8/255; headline 8/255.
- L2:    0, 0.125, 0.25, 0.5, 1.0;      headline 0.5.

At other resolutions the L-inf grid stays meaningful, while an L2 ball of the same radius
is relatively smaller (the input's own L2 size grows with sqrt(C*H*W)): pass an explicit
grid there (ImageNet convention: L-inf 4/255, L2 3.0).

Epsilon 0 is not run through the attack: foolbox would clip any perturbation to nothing
and ask the model again, which is exactly one more clean forward pass, so that is what
we do, at no attack cost. Because it is a second, separate pass, a model whose
predictions are not deterministic still shows up in :func:`sanity_warnings`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

import eagerpy
import foolbox
import torch

from robustbench_lift.errors import UserError
from robustbench_lift.metrics import wilson_interval
from robustbench_lift.registry import Registry

NORMS: Tuple[str, ...] = ("linf", "l2")

DEFAULT_EPSILONS: Dict[str, Tuple[float, ...]] = {
    "linf": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255),
    "l2": (0.0, 0.125, 0.25, 0.5, 1.0),
}

# The one epsilon per norm that a summary table shows (CIFAR convention).
HEADLINE_EPSILONS: Dict[str, float] = {"linf": 8 / 255, "l2": 0.5}

ROW_KEYS: Tuple[str, ...] = (
    "attack",
    "norm",
    "epsilon",
    "n",
    "clean_correct",
    "robust_correct",
    "robust_accuracy",
    "robust_accuracy_low",
    "robust_accuracy_high",
    "success_rate",
    "flipped_correct_share",
    "median_perturbation",
    "status",
    "warning",
)


@dataclass(frozen=True)
class AttackSpec:
    """One attack with its hyperparameters; subclasses set the class variables.

    ``name`` is filled in by registration, ``norm`` is 'linf' or 'l2', ``minimization``
    says whether foolbox searches for the smallest adversarial (then one run serves
    every epsilon and a median smallest perturbation is reported) or attacks each
    epsilon on its own.
    """

    name: ClassVar[str] = ""
    norm: ClassVar[str] = ""
    minimization: ClassVar[bool] = False

    def build(self) -> foolbox.attacks.base.Attack:
        """Return the configured foolbox attack object."""
        raise NotImplementedError

    @property
    def default_epsilons(self) -> Tuple[float, ...]:
        """Epsilon grid used when the caller gives none (32-px inputs in [0, 1])."""
        return DEFAULT_EPSILONS[self.norm]

    @property
    def headline_epsilon(self) -> float:
        """The epsilon a one-number summary reports for this attack's norm."""
        return HEADLINE_EPSILONS[self.norm]


ATTACKS: Registry[AttackSpec] = Registry("attack")


def _register(name: str):
    """Class decorator: name the spec and file its default-configured instance."""

    def add(spec_class: Type[AttackSpec]) -> Type[AttackSpec]:
        spec_class.name = name
        ATTACKS.add(name, spec_class())
        return spec_class

    return add


@_register("fgsm")
@dataclass(frozen=True)
class FastGradientSignMethod(AttackSpec):
    """FGSM (Goodfellow et al. 2015): one signed-gradient step of size epsilon, no random
    start, so it is deterministic and serves as the weak reference PGD must beat."""

    norm: ClassVar[str] = "linf"

    def build(self) -> foolbox.attacks.base.Attack:
        return foolbox.attacks.LinfFastGradientAttack(random_start=False)


@_register("fgm_l2")
@dataclass(frozen=True)
class FastGradientMethodL2(AttackSpec):
    """L2 fast gradient method: one normalised-gradient step of length epsilon; the weak
    L2 reference that ``pgd_l2`` must beat."""

    norm: ClassVar[str] = "l2"

    def build(self) -> foolbox.attacks.base.Attack:
        return foolbox.attacks.L2FastGradientAttack(random_start=False)


@_register("pgd_linf")
@dataclass(frozen=True)
class LinfProjectedGradientDescent(AttackSpec):
    """L-inf PGD (Madry et al. 2018) with a uniform random start.

    Defaults: 20 steps of 0.125 * epsilon (1/255 at epsilon 8/255), a total path of
    2.5 epsilon, the Madry et al. rule that lets the iterate cross the ball and come
    back. On the test suite's small net (200 images, default grid) 40 steps of 0.0625
    and 100 steps of 0.025 gave identical robust accuracies at two and five times the
    cost; raise ``steps`` for adversarially trained models, where PGD converges slower.
    """

    norm: ClassVar[str] = "linf"
    steps: int = 20
    rel_stepsize: float = 0.125
    random_start: bool = True

    def build(self) -> foolbox.attacks.base.Attack:
        return foolbox.attacks.LinfPGD(
            steps=self.steps, rel_stepsize=self.rel_stepsize, random_start=self.random_start
        )


@_register("pgd_l2")
@dataclass(frozen=True)
class L2ProjectedGradientDescent(AttackSpec):
    """L2 PGD with a random start in the ball; same 20 x 0.125 * epsilon rule as
    ``pgd_linf`` (foolbox's own default is 50 x 0.025, a path of only 1.25 epsilon)."""

    norm: ClassVar[str] = "l2"
    steps: int = 20
    rel_stepsize: float = 0.125
    random_start: bool = True

    def build(self) -> foolbox.attacks.base.Attack:
        return foolbox.attacks.L2PGD(
            steps=self.steps, rel_stepsize=self.rel_stepsize, random_start=self.random_start
        )


@dataclass(frozen=True)
class _DeepFool(AttackSpec):
    """DeepFool (Moosavi-Dezfooli et al. 2016), a minimisation attack: linearise the
    classifier, step to the nearest linearised boundary among the ``candidates`` most
    likely classes, overshoot by 2 %. foolbox defaults (50 steps, 10 candidates); it
    stops early once every input is adversarial, so the cap rarely binds."""

    minimization: ClassVar[bool] = True
    steps: int = 50
    candidates: int = 10
    overshoot: float = 0.02


@_register("deepfool_linf")
@dataclass(frozen=True)
class LinfDeepFool(_DeepFool):
    """DeepFool with L-inf geometry."""

    norm: ClassVar[str] = "linf"

    def build(self) -> foolbox.attacks.base.Attack:
        return foolbox.attacks.LinfDeepFoolAttack(
            steps=self.steps, candidates=self.candidates, overshoot=self.overshoot
        )


@_register("deepfool_l2")
@dataclass(frozen=True)
class L2DeepFool(_DeepFool):
    """DeepFool with L2 geometry."""

    norm: ClassVar[str] = "l2"

    def build(self) -> foolbox.attacks.base.Attack:
        return foolbox.attacks.L2DeepFoolAttack(
            steps=self.steps, candidates=self.candidates, overshoot=self.overshoot
        )


class _CarliniWagnerKeepingInputs(foolbox.attacks.L2CarliniWagnerAttack):
    # foolbox returns an all-zero image where it found no adversarial; that black
    # image is often misclassified, which would count as a "success" with a huge
    # perturbation and inflate the median. Returning the input instead makes a
    # failure read as a failure.
    def run(self, model: Any, inputs: Any, criterion: Any, **kwargs: Any) -> Any:
        originals, restore_type = eagerpy.astensor_(inputs)
        adversarials = eagerpy.astensor(super().run(model, originals, criterion, **kwargs)).raw
        failed = (adversarials == 0).flatten(1).all(dim=1)
        failed = failed.view(-1, *([1] * (adversarials.dim() - 1)))
        return restore_type(eagerpy.astensor(torch.where(failed, originals.raw, adversarials)))


@_register("cw_l2")
@dataclass(frozen=True)
class CarliniWagnerL2(AttackSpec):
    """Carlini-Wagner L2 (2017), a minimisation attack.

    Defaults kept CPU-sized: 3 binary-search steps x 50 Adam steps of 0.01 (foolbox:
    9 x 10000). With only three searches the constant must start near where it ends
    up, so it starts at 1.0 instead of foolbox's 0.001: on the test suite's small net
    (200 images) 0.001 left a third of the inputs without an adversarial (constants
    0.001..0.1 are too weak), while 1.0 found them all, with a median L2 of 0.83 against
    0.83 for a 9 x 200-step search from 0.001 at about a hundredth of its cost. A larger
    stepsize (0.05) or constant (10) made the median worse.
    """

    norm: ClassVar[str] = "l2"
    minimization: ClassVar[bool] = True
    binary_search_steps: int = 3
    steps: int = 50
    stepsize: float = 0.01
    initial_const: float = 1.0
    confidence: float = 0.0

    def build(self) -> foolbox.attacks.base.Attack:
        return _CarliniWagnerKeepingInputs(
            binary_search_steps=self.binary_search_steps,
            steps=self.steps,
            stepsize=self.stepsize,
            initial_const=self.initial_const,
            confidence=self.confidence,
        )


# Each iterative attack paired with the single-step attack it must not be weaker than.
_STRONGER_THAN: Dict[str, str] = {"pgd_linf": "fgsm", "pgd_l2": "fgm_l2"}


def attack_names() -> List[str]:
    """Names of all registered attacks, in registration order."""
    return ATTACKS.names()


def validate_epsilons(
    norm: str, epsilons: Sequence[float], input_shape: Optional[Sequence[int]] = None
) -> None:
    """Raise a one-line :class:`UserError` for an epsilon grid that cannot be meant.

    Rejects an unknown norm, an empty grid, negative or non-finite values, L-inf radii
    above 1 (the whole input range) and, when ``input_shape`` (C, H, W) is given, L2
    radii above sqrt(C*H*W), the diameter of [0, 1]^(C*H*W).
    """
    if norm not in NORMS:
        raise UserError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")
    values = list(epsilons)
    if not values:
        raise UserError("epsilon grid is empty")
    if norm == "linf":
        largest, reason = 1.0, "the input range [0, 1]"
    elif input_shape is not None:
        size = math.prod(int(extent) for extent in input_shape)
        largest, reason = math.sqrt(size), f"sqrt({size}), the L2 diameter of inputs in [0, 1]"
    else:
        largest, reason = math.inf, ""
    for epsilon in values:
        try:
            value = float(epsilon)
        except (TypeError, ValueError):
            raise UserError(f"epsilon {epsilon!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"epsilon {epsilon!r} is not finite")
        if value < 0:
            raise UserError(f"epsilon {value:g} is negative")
        if value > largest:
            raise UserError(f"{norm} epsilon {value:g} exceeds {reason}")


def evaluate_attack(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: Union[str, AttackSpec],
    epsilons: Optional[Sequence[float]] = None,
    *,
    batch_size: int = 256,
    device: Union[str, torch.device] = "cpu",
    seed: int = 0,
) -> List[Dict[str, Any]]:
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
    """
    spec = attack if isinstance(attack, AttackSpec) else ATTACKS.get(attack)
    _check_data(images, labels)
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    grid = tuple(float(epsilon) for epsilon in (spec.default_epsilons if epsilons is None else epsilons))
    validate_epsilons(spec.norm, grid, input_shape=tuple(images.shape[1:]))
    device = torch.device(device)

    watched = _FiniteLogitsWatch(model).eval()
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
    return [_row(spec, epsilon, clean_correct, success[index], smallest) for index, epsilon in enumerate(grid)]


def sanity_warnings(rows: List[Dict[str, Any]], clean_accuracy: float) -> List[str]:
    """Gradient-masking checks of SPEC section 5 over all rows of one model.

    ``rows`` may mix attacks; ``clean_accuracy`` must be measured on the same inputs.
    Flags, with a tolerance of one input (1/n) where sampling could matter:

    1. robust accuracy at epsilon 0 differs from clean accuracy (non-deterministic model);
    2. robust accuracy rises with epsilon by more than 1/n;
    3. an iterative attack is weaker than its single-step counterpart at the same
       epsilon by more than 1/n (pgd_linf vs fgsm, pgd_l2 vs fgm_l2);
    4. at its largest epsilon > 0 an attack flipped none of the correct predictions,
       the signature of zero or useless gradients (quantised or saturated inputs).

    Each message is appended to the ``warning`` field of the rows it concerns (once,
    so calling twice changes nothing); the list of distinct messages is returned.
    Rows with status "failed" are skipped.
    """
    messages: List[str] = []

    def flag(row: Dict[str, Any], text: str) -> None:
        current = row.get("warning") or ""
        if text not in current:
            row["warning"] = f"{current}; {text}" if current else text
        if text not in messages:
            messages.append(text)

    usable = [row for row in rows if row.get("status") == "ok"]
    by_attack: Dict[str, List[Dict[str, Any]]] = {}
    for row in usable:
        by_attack.setdefault(row["attack"], []).append(row)

    for name, attack_rows in by_attack.items():
        ordered = sorted(attack_rows, key=lambda row: row["epsilon"])
        for row in ordered:
            if row["epsilon"] == 0 and abs(row["robust_accuracy"] - clean_accuracy) > 0.5 / row["n"]:
                flag(
                    row,
                    f"{name}: robust accuracy at epsilon 0 ({row['robust_accuracy']:.4f}) differs from "
                    f"clean accuracy ({clean_accuracy:.4f}); model predictions are not deterministic",
                )
        lowest = math.inf
        for row in ordered:
            if row["robust_accuracy"] > lowest + 1 / row["n"] + 1e-12:
                flag(
                    row,
                    f"{name}: robust accuracy rises with epsilon to {row['robust_accuracy']:.4f} at "
                    f"epsilon {row['epsilon']:.4g} (lower at a smaller epsilon); attack unreliable, "
                    "gradients may be masked",
                )
            lowest = min(lowest, row["robust_accuracy"])
        largest = ordered[-1]
        if largest["epsilon"] > 0 and largest["clean_correct"] > 0 and largest["flipped_correct_share"] == 0:
            flag(
                largest,
                f"{name}: no correct prediction flipped even at epsilon {largest['epsilon']:.4g}; "
                "gradients are probably zero or masked",
            )

    for stronger, weaker in _STRONGER_THAN.items():
        for strong_row in by_attack.get(stronger, []):
            for weak_row in by_attack.get(weaker, []):
                if not math.isclose(strong_row["epsilon"], weak_row["epsilon"], rel_tol=1e-9, abs_tol=1e-12):
                    continue
                if strong_row["robust_accuracy"] > weak_row["robust_accuracy"] + 1 / strong_row["n"] + 1e-12:
                    text = (
                        f"{stronger} is weaker than {weaker} at epsilon {strong_row['epsilon']:.4g} "
                        f"(robust accuracy {strong_row['robust_accuracy']:.4f} > "
                        f"{weak_row['robust_accuracy']:.4f}); gradients may be masked"
                    )
                    flag(strong_row, text)
                    flag(weak_row, text)
    return messages


class _FiniteLogitsWatch(torch.nn.Module):
    """Passes logits through and remembers whether any was NaN or infinite."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.non_finite_seen = False
        self.non_finite_during: List[str] = []
        self.phase = "clean"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
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
    cuda_devices: List[int] = []
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
    grid: Tuple[float, ...],
    batch_size: int,
    device: torch.device,
    seed: int,
    watched: _FiniteLogitsWatch,
) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
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

    attack_object = spec.build()
    attacked = [index for index, epsilon in enumerate(grid) if epsilon > 0]
    # None asks a minimisation attack for its unclipped smallest adversarial as well.
    call_epsilons: List[Optional[float]] = [grid[index] for index in attacked]
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
        if spec.minimization:
            # One run serves every epsilon: foolbox clips the smallest adversarial to each.
            _reseed(seed, None, start, device)
            raw, _, batch_success = attack_object(fmodel, batch, target, epsilons=call_epsilons)
            batch_success = batch_success.cpu()
            for position, index in enumerate(attacked):
                success[index, start:stop] = batch_success[position]
            perturbation = (raw[-1] - batch).flatten(1)
            norms = (perturbation.abs().amax(dim=1) if spec.norm == "linf" else perturbation.norm(dim=1)).cpu()
            smallest[start:stop] = torch.where(batch_success[-1], norms, torch.full_like(norms, math.nan))
        else:
            # foolbox runs each epsilon separately anyway; calling it per epsilon lets
            # each start from its own seed, so a row does not depend on the rest of the
            # grid (a headline-only run repeats the full grid's headline number).
            for index in attacked:
                _reseed(seed, grid[index], start, device)
                _, _, batch_success = attack_object(fmodel, batch, target, epsilons=grid[index])
                success[index, start:stop] = batch_success.cpu()
        if watched.non_finite_seen:
            return None
    return clean_correct, success, smallest


def _reseed(seed: int, epsilon: Optional[float], batch_start: int, device: torch.device) -> None:
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
) -> Dict[str, Any]:
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


def _failed_rows(spec: AttackSpec, grid: Tuple[float, ...], n: int, warning: str) -> List[Dict[str, Any]]:
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
