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

An attack runs through :meth:`AttackSpec.success_function`, which answers, per input,
whether the attack found an adversarial; the default drives the foolbox attack of
``build``, and an attack from another library (``autoattack``: torchattacks) overrides
it, so every attack shares the same rows, intervals and per-input bookkeeping. An attack
declares the hyperparameters a user may set (``attack_options`` in a run config,
``--attack-option NAME.KEY=VALUE``) as ``options`` and checks their values in ``check``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from robustbench_lift.errors import UserError
from robustbench_lift.options import Option, check_value
from robustbench_lift.registry import Registry

if TYPE_CHECKING:
    import foolbox
    import torch

#: ``(images, labels, epsilon) -> success``: one bool per input, True where the attack
#: found an adversarial within epsilon (an input misclassified already counts).
SuccessFunction = Callable[["torch.Tensor", "torch.Tensor", float], "torch.Tensor"]

__all__ = [
    "ATTACKS",
    "DEFAULT_EPSILONS",
    "HEADLINE_EPSILONS",
    "NORMS",
    "ROW_KEYS",
    "AttackSpec",
    "SuccessFunction",
    "attack_names",
    "check_positive",
    "is_imagenet_sized",
    "library_version",
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

#: Inputs whose shorter side is at least this many pixels follow the ImageNet conventions.
IMAGENET_SIDE = 128

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

    #: The hyperparameters a user may set (key -> Option); each key is a field of the class.
    options: ClassVar[Mapping[str, Option]] = {}
    #: The library that runs the attack, as pip names it (its version goes into run.json).
    library: ClassVar[str] = "foolbox"

    @property
    def default_epsilons(self) -> tuple[float, ...]:
        """Epsilon grid used when the caller gives none (32-px inputs in [0, 1])."""
        return DEFAULT_EPSILONS[self.norm]

    @property
    def headline_epsilon(self) -> float:
        """The epsilon a one-number summary reports for this attack's norm."""
        return HEADLINE_EPSILONS[self.norm]

    def epsilons_for(self, input_shape: Sequence[int] | None) -> tuple[float, ...]:
        """The default grid for inputs of ``input_shape`` (C, H, W); None: 32-px inputs.

        Args:
            input_shape: the attacked inputs' (C, H, W), or None.

        Returns:
            The grid (the 32-px grid unless the attack has size-dependent conventions).
        """
        return self.default_epsilons

    def headline_for(self, input_shape: Sequence[int] | None) -> float:
        """The headline epsilon for inputs of ``input_shape`` (C, H, W); None: 32-px inputs.

        Args:
            input_shape: the attacked inputs' (C, H, W), or None.

        Returns:
            The epsilon whose robust accuracy ``summary.csv`` reports.
        """
        return self.headline_epsilon

    def configured(self, values: Mapping[str, Any] | None) -> AttackSpec:
        """A copy with the user's hyperparameters set, each checked.

        Args:
            values: option -> value (from ``attack_options`` or ``--attack-option``).

        Returns:
            The configured attack (``self`` when ``values`` is empty).

        Raises:
            UserError: one line for an unknown option, a wrong type or a bad value.
        """
        if not values:
            return self
        if not isinstance(values, Mapping):
            raise UserError(f"attack_options for {self.name} must be a mapping of option: value, got {values!r}")
        typed = {}
        for key, value in values.items():
            if key not in self.options:
                known = ", ".join(self.options) or "none"
                raise UserError(f"attack {self.name} has no option {key!r}; its options: {known}")
            typed[key] = check_value(f"attack_options.{self.name}.{key}", value, self.options[key].hint)
        spec = dataclasses.replace(self, **typed)
        spec.check()
        return spec

    def check(self) -> None:
        """Checks the hyperparameters' values (one-line UserError); nothing by default."""

    def hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter field with its value (what run.json records)."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    def expected_passes(self) -> float:
        """Model passes (forward or backward) per image and epsilon, for progress estimates."""
        steps = getattr(self, "steps", 1) * getattr(self, "binary_search_steps", 1)
        return float(2 * steps * getattr(self, "restarts", 1))

    def protocol(self) -> dict[str, Any]:
        """The attack's library, its installed version and the hyperparameters (torch-free)."""
        return {"library": self.library, "library_version": library_version(self.library), **self.hyperparameters()}

    def success_function(self, model: torch.nn.Module, device: torch.device) -> SuccessFunction:
        """The attack as ``(images, labels, epsilon) -> success per input`` on ``device``.

        The default runs the foolbox attack of :meth:`build` on ``model`` (inputs in
        [0, 1]) ``restarts`` times where the class has that field: an input counts as
        fooled when any restart fooled it, and later restarts attack only the inputs
        still standing. The caller seeds the random generator before each call.

        Args:
            model: the model in eval mode, logits out.
            device: where the inputs and the model are.

        Returns:
            The function; its result is a bool tensor on the CPU.
        """
        import foolbox
        import torch

        fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=device)
        attack_object = self.build()
        restarts = int(getattr(self, "restarts", 1))

        def run(images: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
            success = torch.zeros(len(images), dtype=torch.bool)
            for _ in range(restarts):
                standing = (~success).nonzero().flatten()
                if not len(standing):
                    break
                _, _, found = attack_object(
                    fmodel, images[standing.to(images.device)], labels[standing.to(labels.device)], epsilons=epsilon
                )
                success[standing] = found.cpu()
            return success

        return run


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


def check_positive(attack: str, key: str, value: float, integer: bool = False) -> None:
    """One-line UserError unless ``value`` is a finite number above zero (at least 1 if ``integer``)."""
    if integer and value < 1:
        raise UserError(f"attack_options.{attack}.{key} must be at least 1, got {value}")
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"attack_options.{attack}.{key} must be a finite number above 0, got {value}")


def is_imagenet_sized(input_shape: Sequence[int] | None) -> bool:
    """True for (C, H, W) inputs whose shorter side is at least :data:`IMAGENET_SIDE` pixels."""
    return input_shape is not None and min(int(side) for side in tuple(input_shape)[-2:]) >= IMAGENET_SIDE


def library_version(distribution: str) -> str:
    """The installed version of a pip distribution, or ``not installed`` (never imports it)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def list_attacks() -> list[str]:
    """Names of the registered attacks."""
    return ATTACKS.names()
