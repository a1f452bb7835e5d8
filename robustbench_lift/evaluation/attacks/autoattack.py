"""AutoAttack (Croce & Hein 2020), the RobustBench standard, over torchattacks.

The standard ensemble runs, on the inputs still classified correctly after the previous
attack: APGD-CE (untargeted, cross-entropy), APGD-T (targeted, DLR loss, each of the
``classes - 1`` most likely wrong classes), FAB-T (targeted minimum-norm, same targets)
and Square (score-based, ``queries`` queries). Steps, restarts and queries are settable;
APGD has no step-size option because it adapts its step itself (from 2 epsilon, halved
when progress stalls), which is the point of the "parameter-free" ensemble.

RobustBench's threat models: L-inf 8/255 and L2 0.5 on 32-px inputs (CIFAR), L-inf 4/255
on ImageNet-sized ones (shorter side >= 128 px; L2 3.0 there, a common convention with no
RobustBench leaderboard). The default grid is epsilon 0 (the free clean pass the sanity
checks compare against) and that headline epsilon, since every epsilon costs a full
AutoAttack run.

torchattacks is imported when the attack runs, never when the registry loads. Its
package metadata pins ``requests~=2.25.1``, which it never imports, so it is installed
with ``pip install --no-deps torchattacks==3.5.1`` (``scripts/bootstrap.sh`` does that);
its real dependencies (torch, torchvision, scipy, numpy, tqdm) are this project's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.attacks.base import AttackSpec, SuccessFunction, check_positive, is_imagenet_sized
from robustbench_lift.options import Option

if TYPE_CHECKING:
    import torch

__all__ = ["ROBUSTBENCH_EPSILONS", "TORCHATTACKS_VERSION", "AutoAttackL2", "AutoAttackLinf"]

#: The torchattacks release this project is tested with (installed with --no-deps).
TORCHATTACKS_VERSION = "3.5.1"

#: (norm, ImageNet-sized?) -> headline epsilon, RobustBench's threat models.
ROBUSTBENCH_EPSILONS: dict[tuple[str, bool], float] = {
    ("linf", False): 8 / 255,
    ("l2", False): 0.5,
    ("linf", True): 4 / 255,
    ("l2", True): 3.0,
}

# The reference implementation's "standard" version: 100 iterations for APGD and FAB, one
# restart each, 5000 Square queries (Croce & Hein 2020; fra31/auto-attack).
_OPTIONS: Mapping[str, Option] = {
    "steps": Option(int, 100, "iterations of APGD-CE, APGD-T (per target) and FAB-T (per target)"),
    "restarts": Option(int, 1, "restarts of each of the four attacks"),
    "queries": Option(int, 5000, "queries of the Square attack"),
}


def _torchattacks() -> Any:
    try:
        import torchattacks
    except ImportError:
        raise UserError(
            f"autoattack needs torchattacks: pip install --no-deps torchattacks=={TORCHATTACKS_VERSION}"
        ) from None
    return torchattacks


@dataclass(frozen=True)
class _AutoAttack(AttackSpec):
    """The standard AutoAttack ensemble; subclasses set the norm."""

    library: ClassVar[str] = "torchattacks"
    options: ClassVar[Mapping[str, Option]] = _OPTIONS
    steps: int = 100
    restarts: int = 1
    queries: int = 5000

    def check(self) -> None:
        check_positive(self.name, "steps", self.steps, integer=True)
        check_positive(self.name, "restarts", self.restarts, integer=True)
        check_positive(self.name, "queries", self.queries, integer=True)

    @property
    def default_epsilons(self) -> tuple[float, ...]:
        return self.epsilons_for(None)

    @property
    def headline_epsilon(self) -> float:
        return self.headline_for(None)

    def headline_for(self, input_shape: Sequence[int] | None) -> float:
        return ROBUSTBENCH_EPSILONS[(self.norm, is_imagenet_sized(input_shape))]

    def epsilons_for(self, input_shape: Sequence[int] | None) -> tuple[float, ...]:
        return (0.0, self.headline_for(input_shape))

    def expected_passes(self) -> float:
        # APGD-CE, then APGD-T and FAB-T over 9 targets (10 classes), a forward and a backward
        # pass per step, then Square's forward-only queries; on the inputs still standing only.
        return float(self.restarts * (2 * self.steps * (1 + 9 + 9) + self.queries))

    def protocol(self) -> dict[str, Any]:
        return super().protocol() | {
            "ensemble": "APGD-CE, APGD-T, FAB-T, Square (standard)",
            "step_size": "adaptive (APGD: 2 epsilon, halved when progress stalls)",
        }

    def success_function(self, model: torch.nn.Module, device: torch.device) -> SuccessFunction:
        """The ensemble as ``(images, labels, epsilon) -> success``, seeded from the generator.

        Each call draws one integer from torch's default generator (which the caller has
        seeded for this epsilon and batch) and hands it to every attack of the ensemble as
        its ``seed``, so the same seed gives the same adversarials. Success is judged by a
        separate forward pass on the returned images, which are checked to lie in the
        epsilon ball and in [0, 1].
        """
        import torch

        library = _torchattacks()
        norm = {"linf": "Linf", "l2": "L2"}[self.norm]

        def run(images: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
            # torchattacks' FAB reshapes gradients with view(), which needs NCHW-contiguous
            # inputs (the runner's uint8 -> float conversion leaves them channels-last strided).
            images = images.contiguous()
            seed = int(torch.randint(0, 2**31 - 1, (1,)))
            with torch.no_grad():
                classes = int(model(images[:1]).shape[1])
            if classes < 2:
                raise UserError(f"{self.name} needs a model with at least 2 classes, got {classes}")
            common = {"norm": norm, "eps": float(epsilon), "seed": seed, "n_restarts": self.restarts}
            ensemble = library.MultiAttack(
                [
                    library.APGD(model, loss="ce", steps=self.steps, **common),
                    library.APGDT(model, steps=self.steps, n_classes=classes, **common),
                    library.FAB(model, steps=self.steps, multi_targeted=True, n_classes=classes, **common),
                    library.Square(model, n_queries=self.queries, **common),
                ]
            )
            adversarial = ensemble(images, labels).detach()
            _check_in_ball(adversarial, images, self.norm, float(epsilon))
            with torch.no_grad():
                return (model(adversarial).argmax(dim=1) != labels).cpu()

        return run


def _check_in_ball(adversarial: torch.Tensor, images: torch.Tensor, norm: str, epsilon: float) -> None:
    # A perturbation outside the ball or the input range would make a wrong number look
    # right; torchattacks projects, so this only catches a broken library release.
    delta = (adversarial - images).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    if bool((size > epsilon * (1 + 1e-4) + 1e-6).any()) or float(adversarial.min()) < 0 or float(adversarial.max()) > 1:
        raise RuntimeError(f"torchattacks returned a perturbation outside the {norm} ball of {epsilon:g} or [0, 1]")


@dataclass(frozen=True)
class AutoAttackLinf(_AutoAttack):
    """AutoAttack, L-inf threat model (RobustBench: 8/255 at 32 px, 4/255 on ImageNet)."""

    name: ClassVar[str] = "autoattack"
    label: ClassVar[str] = "AutoAttack L∞"
    norm: ClassVar[str] = "linf"
    stronger_than: ClassVar[str | None] = "pgd_linf"


@dataclass(frozen=True)
class AutoAttackL2(_AutoAttack):
    """AutoAttack, L2 threat model (RobustBench: 0.5 at 32 px)."""

    name: ClassVar[str] = "autoattack_l2"
    label: ClassVar[str] = "AutoAttack L2"
    norm: ClassVar[str] = "l2"
    stronger_than: ClassVar[str | None] = "pgd_l2"
