"""Adversarial attacks (foolbox 3; AutoAttack over torchattacks): the registry, the attack
classes, evaluation and sanity checks.

Importing this package (and listing attacks) imports neither torch nor an attack library; they load
with :func:`evaluate_attack` or an attack's ``build``. To add an attack: write its class
(an :class:`AttackSpec` subclass with ``name``, ``label`` and ``norm``) and add one
``ATTACKS.add`` line below. See ``docs/attacks.md`` for the protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustbench_lift.evaluation.attacks.autoattack import AutoAttackL2, AutoAttackLinf
from robustbench_lift.evaluation.attacks.base import (
    ATTACKS,
    DEFAULT_EPSILONS,
    HEADLINE_EPSILONS,
    NORMS,
    ROW_KEYS,
    AttackSpec,
    attack_names,
    list_attacks,
    validate_epsilons,
)
from robustbench_lift.evaluation.attacks.gradient import (
    FastGradientMethodL2,
    FastGradientSignMethod,
    L2ProjectedGradientDescent,
    LinfProjectedGradientDescent,
)
from robustbench_lift.evaluation.attacks.minimization import CarliniWagnerL2, L2DeepFool, LinfDeepFool
from robustbench_lift.evaluation.attacks.sanity import sanity_warnings

if TYPE_CHECKING:
    from robustbench_lift.evaluation.attacks.evaluate import evaluate_attack

__all__ = [
    "ATTACKS",
    "DEFAULT_EPSILONS",
    "HEADLINE_EPSILONS",
    "NORMS",
    "ROW_KEYS",
    "AttackSpec",
    "AutoAttackL2",
    "AutoAttackLinf",
    "CarliniWagnerL2",
    "FastGradientMethodL2",
    "FastGradientSignMethod",
    "L2DeepFool",
    "L2ProjectedGradientDescent",
    "LinfDeepFool",
    "LinfProjectedGradientDescent",
    "attack_names",
    "evaluate_attack",
    "list_attacks",
    "sanity_warnings",
    "validate_epsilons",
]

# The registry: one default-configured instance per attack, in listing order.
for _spec in (
    FastGradientSignMethod(),
    FastGradientMethodL2(),
    LinfProjectedGradientDescent(),
    L2ProjectedGradientDescent(),
    LinfDeepFool(),
    L2DeepFool(),
    CarliniWagnerL2(),
    AutoAttackLinf(),
    AutoAttackL2(),
):
    ATTACKS.add(_spec.name, _spec)


def __getattr__(name: str) -> Any:
    # PEP 562: evaluate_attack imports torch and foolbox, so it loads on first use.
    if name == "evaluate_attack":
        from robustbench_lift.evaluation.attacks import evaluate

        return evaluate.evaluate_attack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
