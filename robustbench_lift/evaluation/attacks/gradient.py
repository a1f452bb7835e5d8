"""Gradient attacks: FGSM, the L2 fast gradient method, and L-inf / L2 PGD (foolbox 3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from robustbench_lift.evaluation.attacks.base import AttackSpec, check_positive
from robustbench_lift.options import Option

if TYPE_CHECKING:
    import foolbox

__all__ = [
    "FastGradientMethodL2",
    "FastGradientSignMethod",
    "L2ProjectedGradientDescent",
    "LinfProjectedGradientDescent",
]


@dataclass(frozen=True)
class FastGradientSignMethod(AttackSpec):
    """FGSM (Goodfellow et al. 2015): one signed-gradient step of size epsilon, no random
    start, so it is deterministic and serves as the weak reference PGD must beat."""

    name: ClassVar[str] = "fgsm"
    label: ClassVar[str] = "FGSM"
    norm: ClassVar[str] = "linf"

    def build(self) -> foolbox.attacks.base.Attack:
        import foolbox

        return foolbox.attacks.LinfFastGradientAttack(random_start=False)


@dataclass(frozen=True)
class FastGradientMethodL2(AttackSpec):
    """L2 fast gradient method: one normalised-gradient step of length epsilon; the weak
    L2 reference that ``pgd_l2`` must beat."""

    name: ClassVar[str] = "fgm_l2"
    label: ClassVar[str] = "FGM L2"
    norm: ClassVar[str] = "l2"

    def build(self) -> foolbox.attacks.base.Attack:
        import foolbox

        return foolbox.attacks.L2FastGradientAttack(random_start=False)


#: What a user may set on either PGD (``attack_options: {pgd_linf: {steps: 50, restarts: 5}}``).
PGD_OPTIONS: Mapping[str, Option] = {
    "steps": Option(int, 20, "gradient steps per restart"),
    "restarts": Option(int, 1, "random starts; an input counts as fooled if any restart fools it"),
    "rel_stepsize": Option(float, 0.125, "step size as a fraction of epsilon"),
}


@dataclass(frozen=True)
class _ProjectedGradientDescent(AttackSpec):
    """Shared hyperparameters of both PGDs and their checks."""

    options: ClassVar[Mapping[str, Option]] = PGD_OPTIONS
    steps: int = 20
    restarts: int = 1
    rel_stepsize: float = 0.125
    random_start: bool = True

    def check(self) -> None:
        check_positive(self.name, "steps", self.steps, integer=True)
        check_positive(self.name, "restarts", self.restarts, integer=True)
        check_positive(self.name, "rel_stepsize", self.rel_stepsize)


@dataclass(frozen=True)
class LinfProjectedGradientDescent(_ProjectedGradientDescent):
    """L-inf PGD (Madry et al. 2018) with a uniform random start.

    Defaults: 20 steps of 0.125 * epsilon (1/255 at epsilon 8/255), a total path of
    2.5 epsilon, the Madry et al. rule that lets the iterate cross the ball and come
    back. On the test suite's small net (200 images, default grid) 40 steps of 0.0625
    and 100 steps of 0.025 gave identical robust accuracies at two and five times the
    cost; raise ``steps`` for adversarially trained models, where PGD converges slower.
    ``restarts`` > 1 repeats the attack from new random starts on the inputs still standing.
    """

    name: ClassVar[str] = "pgd_linf"
    label: ClassVar[str] = "PGD L∞"
    stronger_than: ClassVar[str | None] = "fgsm"
    norm: ClassVar[str] = "linf"

    def build(self) -> foolbox.attacks.base.Attack:
        import foolbox

        return foolbox.attacks.LinfPGD(steps=self.steps, rel_stepsize=self.rel_stepsize, random_start=self.random_start)


@dataclass(frozen=True)
class L2ProjectedGradientDescent(_ProjectedGradientDescent):
    """L2 PGD with a random start in the ball; same 20 x 0.125 * epsilon rule as
    ``pgd_linf`` (foolbox's own default is 50 x 0.025, a path of only 1.25 epsilon)."""

    name: ClassVar[str] = "pgd_l2"
    label: ClassVar[str] = "PGD L2"
    stronger_than: ClassVar[str | None] = "fgm_l2"
    norm: ClassVar[str] = "l2"

    def build(self) -> foolbox.attacks.base.Attack:
        import foolbox

        return foolbox.attacks.L2PGD(steps=self.steps, rel_stepsize=self.rel_stepsize, random_start=self.random_start)
