"""The attack interface and registry, epsilon grids and their validation (no torch, no foolbox).

Every attack is a small :class:`AttackSpec` subclass filed in :data:`ATTACKS`; the
registry holds one default-configured instance per name, and a caller who wants other
hyperparameters builds the class directly (``LinfProjectedGradientDescent(steps=100)``)
and hands the instance to :func:`~robustbench_lift.evaluation.attacks.evaluate_attack`.
An attack carries its own display label and norm. To add an attack: write its class
(e.g. in :mod:`~robustbench_lift.evaluation.attacks.gradient`) and add one
``ATTACKS.add`` line to :mod:`robustbench_lift.evaluation.attacks`.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from robustbench_lift.errors import UserError
from robustbench_lift.registry import Registry

if TYPE_CHECKING:
    import foolbox

__all__ = [
    "ATTACKS",
    "DEFAULT_EPSILONS",
    "HEADLINE_EPSILONS",
    "NORMS",
    "ROW_KEYS",
    "AttackSpec",
    "attack_names",
    "list_attacks",
    "validate_epsilons",
]

NORMS: tuple[str, ...] = ("linf", "l2")

DEFAULT_EPSILONS: dict[str, tuple[float, ...]] = {
    "linf": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255),
    "l2": (0.0, 0.125, 0.25, 0.5, 1.0),
}

# The one epsilon per norm that a summary table shows (CIFAR convention).
HEADLINE_EPSILONS: dict[str, float] = {"linf": 8 / 255, "l2": 0.5}

ROW_KEYS: tuple[str, ...] = (
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

    ``name`` is the registry name, ``label`` its display name in reports (``PGD L∞``),
    ``norm`` is 'linf' or 'l2', ``minimization``
    says whether foolbox searches for the smallest adversarial (then one run serves
    every epsilon and a median smallest perturbation is reported) or attacks each
    epsilon on its own.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    norm: ClassVar[str] = ""
    minimization: ClassVar[bool] = False
    #: The single-step attack of the same norm this iterative attack must not be weaker than.
    stronger_than: ClassVar[str | None] = None

    def build(self) -> foolbox.attacks.base.Attack:
        """Return the configured foolbox attack object (foolbox is imported here, not before)."""
        raise NotImplementedError

    @property
    def default_epsilons(self) -> tuple[float, ...]:
        """Epsilon grid used when the caller gives none (32-px inputs in [0, 1])."""
        return DEFAULT_EPSILONS[self.norm]

    @property
    def headline_epsilon(self) -> float:
        """The epsilon a one-number summary reports for this attack's norm."""
        return HEADLINE_EPSILONS[self.norm]


ATTACKS: Registry[AttackSpec] = Registry("attack")


def attack_names() -> list[str]:
    """Names of all registered attacks, in registration order."""
    return ATTACKS.names()


def validate_epsilons(norm: str, epsilons: Sequence[float], input_shape: Sequence[int] | None = None) -> None:
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


def list_attacks() -> list[str]:
    """Names of the registered attacks."""
    return ATTACKS.names()
