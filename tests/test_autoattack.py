"""AutoAttack (torchattacks) and the attacks' own options: RobustBench's threat models,
option validation (library, config, CLI), the protocol in run.json and the known
property that AutoAttack is at least as strong as PGD on the same images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.attacks import ATTACKS, attack_names
from robustbench_lift.run.config import RunConfig, config_from_mapping
from tests.test_cli_errors import assert_one_line_error, run_cli


def test_autoattack_is_listed_with_robustbench_threat_models() -> None:
    assert {"autoattack", "autoattack_l2"} <= set(attack_names())
    linf, l2 = ATTACKS.get("autoattack"), ATTACKS.get("autoattack_l2")
    assert (linf.norm, l2.norm) == ("linf", "l2")
    assert linf.headline_for((3, 32, 32)) == pytest.approx(8 / 255)
    assert linf.headline_for((3, 224, 224)) == pytest.approx(4 / 255)
    assert l2.headline_for((3, 32, 32)) == pytest.approx(0.5)
    # Every epsilon is a full AutoAttack run: the default grid is the free clean pass plus the headline.
    assert linf.epsilons_for((3, 224, 224)) == (0.0, pytest.approx(4 / 255))
    assert linf.stronger_than == "pgd_linf" and l2.stronger_than == "pgd_l2"


def test_attack_options_configure_a_copy() -> None:
    spec = ATTACKS.get("pgd_linf").configured({"steps": 50, "restarts": 3, "rel_stepsize": 0.05})
    assert (spec.steps, spec.restarts, spec.rel_stepsize) == (50, 3, 0.05)
    assert ATTACKS.get("pgd_linf").steps == 20  # the registry's instance is untouched
    protocol = ATTACKS.get("autoattack").configured({"steps": 7}).protocol()
    assert protocol["library"] == "torchattacks" and protocol["steps"] == 7 and protocol["restarts"] == 1


@pytest.mark.parametrize(
    ("attack", "values", "fragment"),
    [
        ("pgd_linf", {"steps": 0}, "steps must be at least 1"),
        ("pgd_l2", {"restarts": -1}, "restarts must be at least 1"),
        ("pgd_linf", {"rel_stepsize": 0}, "rel_stepsize must be a finite number above 0"),
        ("pgd_linf", {"rel_stepsize": float("nan")}, "rel_stepsize must be a finite number above 0"),
        ("pgd_linf", {"steps": "many"}, "must be an integer"),
        ("autoattack", {"queries": 0}, "queries must be at least 1"),
        ("autoattack", {"step_size": 0.01}, "has no option 'step_size'"),
        ("fgsm", {"steps": 3}, "has no option 'steps'"),
    ],
)
def test_bad_attack_options_are_one_line_user_errors(attack, values, fragment) -> None:
    with pytest.raises(UserError, match=fragment):
        ATTACKS.get(attack).configured(values)
    with pytest.raises(UserError, match=fragment):
        config_from_mapping({"attack_options": {attack: values}}, RunConfig(suites=["adversarial"]))


def test_attack_options_for_an_unknown_attack_are_refused() -> None:
    with pytest.raises(UserError, match="unknown attack 'pgd_typo'"):
        config_from_mapping({"attack_options": {"pgd_typo": {"steps": 5}}}, RunConfig(suites=["adversarial"]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--attack-option", "pgd_linf.steps=0"], "attack_options.pgd_linf.steps must be at least 1"),
        (["--attack-option", "autoattack.restarts=two"], "must be an integer"),
        (["--attack-option", "steps=5"], "must look like ATTACK.OPTION=VALUE"),
        (["--precision", "fp8"], "precision 'fp8' is not one of fp32, bf16, fp16"),
        (["--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
    ],
)
def test_cli_refuses_bad_attack_and_precision_settings(tmp_path, arguments, fragment) -> None:
    result = run_cli(["run", "--suites", "adversarial", "--attacks", "pgd_linf", *arguments], tmp_path)
    assert_one_line_error(result, fragment)
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def zoo_sample():
    """24 Fashion-MNIST test images and the zoo's small_cnn-max-s0."""
    torch = pytest.importorskip("torch")
    from robustbench_lift import load_model
    from robustbench_lift.data.datasets import load_dataset
    from robustbench_lift.evaluation.inference import to_tensor

    data = load_dataset("fashion_mnist", "test")
    return load_model("small_cnn-max-s0"), to_tensor(data.images[:24]), torch.from_numpy(data.labels[:24]).long()


@pytest.mark.slow
@pytest.mark.needs_data
def test_autoattack_is_no_weaker_than_pgd_and_repeats_with_its_seed(zoo_sample) -> None:
    from robustbench_lift.evaluation.attacks import evaluate_attack

    model, images, labels = zoo_sample
    # 2/255: PGD leaves most inputs standing there, so the comparison says something.
    grid = [2 / 255]
    pgd_correct: dict[float, np.ndarray] = {}
    pgd = evaluate_attack(model, images, labels, "pgd_linf", grid, seed=3, robust_correct=pgd_correct)
    autoattack = ATTACKS.get("autoattack").configured({"steps": 10, "queries": 100})
    runs = []
    for _ in range(2):
        correct: dict[float, np.ndarray] = {}
        rows = evaluate_attack(model, images, labels, autoattack, grid, seed=3, robust_correct=correct)
        runs.append((rows[0]["robust_accuracy"], correct[grid[0]]))
    assert 0 < pgd[0]["robust_accuracy"] < 1
    assert runs[0][0] <= pgd[0]["robust_accuracy"]
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])


@pytest.mark.slow
@pytest.mark.needs_data
def test_a_run_records_the_attack_protocol_and_precision(tmp_path) -> None:
    import pandas as pd

    from robustbench_lift.run.runner import run_benchmark

    config = RunConfig(
        models=["small_cnn-max-s0"],
        suites=["adversarial"],
        attacks=["pgd_linf", "autoattack"],
        attack_options={"autoattack": {"steps": 2, "queries": 10}, "pgd_linf": {"steps": 5, "restarts": 2}},
        sample_size=8,
        attack_sample_size=8,
        seed=5,
        precision="bf16",
        output_dir=str(tmp_path),
        run_name="protocol",
        device="cpu",
    )
    directory = run_benchmark(config)
    record = json.loads((directory / "run.json").read_text())
    attacks = record["suites"]["adversarial"]["attacks"]
    protocol = attacks["autoattack"]["protocol"]
    assert protocol["library"] == "torchattacks" and protocol["library_version"] == "3.5.1"
    assert (protocol["steps"], protocol["restarts"], protocol["queries"]) == (2, 1, 10)
    assert protocol["epsilons"] == [0.0, pytest.approx(8 / 255)]
    assert (protocol["sample_size"], protocol["seed"], protocol["precision"]) == (8, 5, "fp32")
    assert attacks["pgd_linf"]["protocol"]["library"] == "foolbox"
    assert (attacks["pgd_linf"]["protocol"]["steps"], attacks["pgd_linf"]["protocol"]["restarts"]) == (5, 2)
    assert record["precision"] == {"inference": "bf16", "attack": "fp32", "channels_last": True, "autocast": True}
    summary = pd.read_csv(directory / "summary.csv")
    assert 0 <= summary.loc[0, "robust_accuracy_autoattack"] <= summary.loc[0, "robust_accuracy_pgd_linf"] + 1 / 8
    results = pd.read_csv(directory / "results.csv")
    assert set(results["precision"]) == {"bf16"}

    from robustbench_lift.reporting.html import write_report

    html = write_report(directory).read_text()
    assert "torchattacks 3.5.1" in html and "foolbox" in html
