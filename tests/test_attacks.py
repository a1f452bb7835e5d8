"""Tests of the foolbox adversarial suite on a small CNN trained here in a few seconds.

The task: 3x32x32 noisy images of one of four textures (horizontal, vertical or diagonal
stripes, checkerboard) with random period, phase and colours; the net learns it well
above chance (about 85 %) yet stays attackable at small epsilons.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.attacks import (
    ATTACKS,
    HEADLINE_EPSILONS,
    ROW_KEYS,
    AttackSpec,
    CarliniWagnerL2,
    attack_names,
    evaluate_attack,
    sanity_warnings,
    validate_epsilons,
)
from robustbench_lift.metrics import wilson_interval

TEXTURE_CLASSES = 4


def make_textures(count: int, generator: torch.Generator, noise: float = 0.25):
    """Noisy texture images in [0, 1] and their class labels."""
    labels = torch.randint(0, TEXTURE_CLASSES, (count,), generator=generator)
    coordinates = torch.arange(32, dtype=torch.float32)
    rows, columns = torch.meshgrid(coordinates, coordinates, indexing="ij")
    period = 4 + 6 * torch.rand(count, 1, 1, generator=generator)
    phase = 2 * math.pi * torch.rand(count, 1, 1, generator=generator)
    frequency = 2 * math.pi / period
    waves = torch.stack(
        [
            torch.sin(frequency * rows + phase),
            torch.sin(frequency * columns + phase),
            torch.sin(frequency * (rows + columns) / math.sqrt(2) + phase),
            2 * torch.sin(frequency * rows + phase) * torch.sin(frequency * columns + phase),
        ],
        dim=1,
    )
    pattern = waves[torch.arange(count), labels].clamp(-1, 1)
    mix = (pattern.unsqueeze(1) + 1) / 2
    colour_a = torch.rand(count, 3, 1, 1, generator=generator)
    colour_b = torch.rand(count, 3, 1, 1, generator=generator)
    images = colour_a * mix + colour_b * (1 - mix)
    images = images + noise * torch.randn(images.shape, generator=generator)
    return images.clamp(0, 1), labels


class SmallNet(nn.Module):
    """Three conv layers, normalisation inside so inputs stay in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(32, TEXTURE_CLASSES)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features((inputs - 0.5) / 0.25).flatten(1))


class Quantised(nn.Module):
    """Rounds inputs to quarters before the net: the gradient of round is zero
    everywhere, the textbook case of masked gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(inputs * 4) / 4)


class NotANumber(nn.Module):
    """Returns NaN logits, on every input or only when gradients are asked for."""

    def __init__(self, model: nn.Module, only_under_attack: bool) -> None:
        super().__init__()
        self.model = model
        self.only_under_attack = only_under_attack

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
        if inputs.requires_grad or not self.only_under_attack:
            logits = logits * math.nan
        return logits


@pytest.fixture(scope="module")
def trained():
    """A SmallNet trained for 200 Adam steps on fresh batches (a few seconds on a CPU)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = SmallNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        images, labels = make_textures(64, generator)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    images, labels = make_textures(96, torch.Generator().manual_seed(123))
    with torch.no_grad():
        clean_accuracy = int((model(images).argmax(dim=1) == labels).sum()) / len(labels)
    return model, images, labels, clean_accuracy


@pytest.fixture(scope="module")
def linf_rows(trained):
    model, images, labels, _ = trained
    return {name: evaluate_attack(model, images, labels, name, batch_size=64) for name in ("fgsm", "pgd_linf")}


def test_registry_lists_the_suite():
    names = attack_names()
    for name in ("fgsm", "pgd_linf", "pgd_l2", "deepfool_linf", "deepfool_l2", "cw_l2"):
        assert name in names
        spec = ATTACKS.get(name)
        assert isinstance(spec, AttackSpec) and spec.name == name
        assert spec.norm in ("linf", "l2")
        assert spec.default_epsilons[0] == 0
        assert spec.headline_epsilon == HEADLINE_EPSILONS[spec.norm]
    assert ATTACKS.get("cw_l2").minimization and not ATTACKS.get("pgd_linf").minimization
    assert HEADLINE_EPSILONS == {"linf": 8 / 255, "l2": 0.5}


@pytest.mark.slow
def test_unknown_attack_is_a_user_error(trained):
    model, images, labels, _ = trained
    with pytest.raises(UserError, match="unknown attack 'nope'"):
        evaluate_attack(model, images[:4], labels[:4], "nope")


@pytest.mark.parametrize(
    "norm, epsilons, input_shape",
    [
        ("linf", [0.0, -0.01], None),
        ("linf", [math.nan], None),
        ("linf", [1.5], None),
        ("l2", [math.inf], None),
        ("l2", [56.0], (3, 32, 32)),  # sqrt(3072) is about 55.4
        ("l1", [0.1], None),
        ("linf", [], None),
    ],
)
def test_impossible_epsilons_are_user_errors(norm, epsilons, input_shape):
    with pytest.raises(UserError):
        validate_epsilons(norm, epsilons, input_shape)


def test_possible_epsilons_pass():
    validate_epsilons("linf", [0, 8 / 255, 1.0])
    validate_epsilons("l2", [0, 0.5, 55.0], (3, 32, 32))
    validate_epsilons("l2", [100.0])  # no shape: only sign and finiteness are known


@pytest.mark.slow
def test_evaluate_attack_rejects_bad_epsilons(trained):
    model, images, labels, _ = trained
    with pytest.raises(UserError, match="negative"):
        evaluate_attack(model, images[:4], labels[:4], "fgsm", [-1 / 255])
    with pytest.raises(UserError, match="exceeds"):
        evaluate_attack(model, images[:4], labels[:4], "pgd_l2", [60.0])


@pytest.mark.slow
def test_rows_have_the_documented_fields(trained, linf_rows):
    _, images, _, _ = trained
    for rows in linf_rows.values():
        assert len(rows) == 5
        for row in rows:
            assert tuple(row) == ROW_KEYS
            assert row["status"] == "ok" and row["warning"] == ""
            assert row["n"] == len(images)
            low, high = wilson_interval(row["robust_correct"], row["n"])
            assert (row["robust_accuracy_low"], row["robust_accuracy_high"]) == (low, high)
            assert low <= row["robust_accuracy"] <= high
            assert math.isnan(row["median_perturbation"])


@pytest.mark.slow
def test_pgd_beats_fgsm_which_never_beats_clean(trained, linf_rows):
    _, _, _, clean_accuracy = trained
    assert clean_accuracy > 0.7  # four classes: chance is 0.25
    fgsm, pgd = linf_rows["fgsm"], linf_rows["pgd_linf"]
    assert fgsm[0]["epsilon"] == pgd[0]["epsilon"] == 0
    assert fgsm[0]["robust_accuracy"] == pgd[0]["robust_accuracy"] == pytest.approx(clean_accuracy)
    for fgsm_row, pgd_row in zip(fgsm, pgd):
        assert fgsm_row["epsilon"] == pgd_row["epsilon"]
        assert pgd_row["robust_accuracy"] <= fgsm_row["robust_accuracy"] <= clean_accuracy + 1e-9
    accuracies = [row["robust_accuracy"] for row in pgd]
    assert accuracies == sorted(accuracies, reverse=True)
    # The attack must actually bite at the headline epsilon, or the checks above are empty.
    assert pgd[-1]["robust_accuracy"] < clean_accuracy - 0.2
    assert pgd[-1]["flipped_correct_share"] > 0.2
    assert sanity_warnings(fgsm + pgd, clean_accuracy) == []


@pytest.mark.slow
def test_pgd_is_repeatable_and_leaves_the_callers_generator_alone(trained, linf_rows):
    model, images, labels, _ = trained
    state = torch.get_rng_state()
    rows = evaluate_attack(model, images, labels, "pgd_linf", [8 / 255], batch_size=64)
    assert torch.equal(torch.get_rng_state(), state)
    assert rows[0]["robust_correct"] == linf_rows["pgd_linf"][-1]["robust_correct"]
    assert model.training is False and all(parameter.requires_grad for parameter in model.parameters())


@pytest.mark.slow
def test_pgd_l2_is_monotone(trained):
    model, images, labels, clean_accuracy = trained
    rows = evaluate_attack(model, images[:48], labels[:48], "pgd_l2", batch_size=48)
    accuracies = [row["robust_accuracy"] for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[-1] < accuracies[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "attack",
    ["deepfool_linf", "deepfool_l2", CarliniWagnerL2(binary_search_steps=2, steps=25)],
    ids=["deepfool_linf", "deepfool_l2", "cw_l2"],
)
def test_minimisation_attacks_report_a_median_perturbation(trained, attack):
    model, images, labels, _ = trained
    rows = evaluate_attack(model, images[:32], labels[:32], attack)
    spec = ATTACKS.get(attack) if isinstance(attack, str) else attack
    assert [row["epsilon"] for row in rows] == list(spec.default_epsilons)
    median = rows[0]["median_perturbation"]
    assert math.isfinite(median) and median > 0
    assert all(row["median_perturbation"] == median for row in rows)
    accuracies = [row["robust_accuracy"] for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert rows[0]["robust_accuracy"] == rows[0]["clean_correct"] / rows[0]["n"]


@pytest.mark.slow
def test_quantised_inputs_trip_a_gradient_masking_warning(trained):
    model, images, labels, _ = trained
    masked = Quantised(model).eval()
    rows = []
    for name in ("fgsm", "pgd_linf"):
        rows += evaluate_attack(masked, images[:48], labels[:48], name, batch_size=48)
    # Clean accuracy over the 48 attacked inputs, as sanity_warnings requires.
    clean_accuracy = rows[0]["clean_correct"] / rows[0]["n"]
    assert clean_accuracy > 0.25
    messages = sanity_warnings(rows, clean_accuracy)
    assert any("masked" in message for message in messages)
    assert any(row["warning"] for row in rows)
    warnings_before = [row["warning"] for row in rows]
    assert sanity_warnings(rows, clean_accuracy) == messages
    assert [row["warning"] for row in rows] == warnings_before  # a second call adds nothing


@pytest.mark.slow
@pytest.mark.parametrize("only_under_attack", [False, True], ids=["always", "under_attack"])
@pytest.mark.parametrize("attack", ["pgd_linf", "deepfool_l2"])
def test_nan_logits_give_failed_rows_not_exceptions(trained, only_under_attack, attack):
    model, images, labels, _ = trained
    broken = NotANumber(model, only_under_attack).eval()
    rows = evaluate_attack(broken, images[:8], labels[:8], attack, [0, 2 / 255])
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert all("non-finite" in row["warning"] for row in rows)
    assert all(math.isnan(row["robust_accuracy"]) for row in rows)
    assert sanity_warnings(rows, 0.9) == []  # failed rows are not judged


def _row(attack: str, epsilon: float, robust_accuracy: float, n: int = 100, flipped: float = 0.5) -> dict:
    return {
        "attack": attack,
        "norm": "linf",
        "epsilon": epsilon,
        "n": n,
        "clean_correct": 80,
        "robust_correct": round(robust_accuracy * n),
        "robust_accuracy": robust_accuracy,
        "flipped_correct_share": flipped,
        "status": "ok",
        "warning": "",
    }


def test_sanity_warnings_flag_each_check_separately():
    healthy = [_row("fgsm", 0, 0.8), _row("fgsm", 0.01, 0.5), _row("pgd_linf", 0, 0.8), _row("pgd_linf", 0.01, 0.4)]
    assert sanity_warnings(healthy, 0.8) == []

    zero_mismatch = [_row("pgd_linf", 0, 0.78), _row("pgd_linf", 0.01, 0.4)]
    (message,) = sanity_warnings(zero_mismatch, 0.8)
    assert "epsilon 0" in message and zero_mismatch[0]["warning"] == message

    rising = [_row("pgd_linf", 0, 0.8), _row("pgd_linf", 0.01, 0.4), _row("pgd_linf", 0.02, 0.45)]
    (message,) = sanity_warnings(rising, 0.8)
    assert "rises" in message and rising[2]["warning"] == message and rising[1]["warning"] == ""
    # One input up is sampling noise, not a finding.
    assert sanity_warnings([_row("pgd_linf", 0.01, 0.40), _row("pgd_linf", 0.02, 0.41)], 0.8) == []

    weaker = [_row("fgsm", 0.01, 0.4), _row("pgd_linf", 0.01, 0.5)]
    (message,) = sanity_warnings(weaker, 0.8)
    assert "pgd_linf is weaker than fgsm" in message
    assert weaker[0]["warning"] == weaker[1]["warning"] == message

    stuck = [_row("fgsm", 0, 0.8, flipped=0.0), _row("fgsm", 0.03, 0.8, flipped=0.0)]
    (message,) = sanity_warnings(stuck, 0.8)
    assert "no correct prediction flipped" in message and stuck[1]["warning"] == message
