"""End to end on the real built-in data: the shipped zoo and a --quick run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_lift.data.datasets import load_dataset
from robustbench_lift.evaluation.inference import accuracy
from robustbench_lift.models.zoo import ZOO_KINDS, load_zoo_model, zoo_checkpoint_path, zoo_names

ROOT = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.needs_data

# Every test here runs the command line or whole benchmarks: the slow tier.
pytestmark = pytest.mark.slow


def test_every_zoo_kind_ships_weights():
    missing = [kind for kind in ZOO_KINDS if not zoo_checkpoint_path(kind).exists()]
    assert not missing, f"zoo weights missing for {missing}"


@needs_data
@pytest.mark.parametrize("kind", ZOO_KINDS)
def test_zoo_checkpoint_reproduces_recorded_accuracy(kind):
    test_set = load_dataset("fashion_mnist", "test")
    model, metadata = load_zoo_model(kind)
    assert metadata["pooling"] == kind and metadata["architecture"] == "small_cnn"
    measured = accuracy(model, test_set.images, test_set.labels)
    # Float summation order differs across machines; allow a handful of the 10000
    # test images to change class, nothing more.
    assert abs(measured - metadata["clean_test_accuracy"]) <= 0.001
    assert measured > 0.85


@needs_data
def test_quick_run_writes_complete_tidy_results(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--quick",
            "--suites",
            "corruption",
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "e2e",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    run = tmp_path / "e2e"
    results = pd.read_csv(run / "results.csv")
    summary = pd.read_csv(run / "summary.csv")
    record = json.loads((run / "run.json").read_text())
    models = sorted(summary["model"])
    assert models == sorted(zoo_names())
    # One row per model x suite x condition: clean + 19 corruptions x 3 severities.
    assert not results.duplicated(["model", "suite", "condition"]).any()
    assert (results.groupby("model").size() == 1 + 19 * 3).all()
    assert (results["n"] == 200).all() and (results["status"] == "ok").all()
    assert ((results["error_low"] <= results["error"]) & (results["error"] <= results["error_high"])).all()
    for column in (
        "clean_error",
        "mce",
        "relative_mce",
        "mean_corruption_error",
        "clean_error_low",
        "mce_low",
        "mce_high",
        "mean_corruption_error_high",
    ):
        assert summary[column].notna().all(), column
    reference = summary.set_index("model").loc["small_cnn-max-s0"]
    assert reference["mce"] == pytest.approx(1.0) and reference["relative_mce"] == pytest.approx(1.0)
    assert (summary["mce_low"] <= summary["mce"]).all() and (summary["mce"] <= summary["mce_high"]).all()
    assert record["sample_size"] == 200 and record["timings"]["total_seconds"] > 0
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")], "staging folders left behind"


@needs_data
def test_same_command_gives_same_numbers(tmp_path):
    arguments = [
        "run",
        "--models",
        "max",
        "lift",
        "--corruptions",
        "gaussian_noise",
        "glass_blur",
        "--severities",
        "2",
        "--sample-size",
        "60",
        "--suites",
        "corruption",
        "--output-dir",
        str(tmp_path),
    ]
    tables = []
    for name in ("first", "second"):
        subprocess.run(
            [sys.executable, "-m", "cli", *arguments, "--run-name", name],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=600,
        )
        tables.append(pd.read_csv(tmp_path / name / "results.csv").drop(columns="run"))
    pd.testing.assert_frame_equal(tables[0], tables[1])


@needs_data
def test_run_accepts_a_pretrained_spec(tmp_path):
    """A torchvision architecture from a checkpoint file, named by a spec, runs end to end."""
    import torch
    import torchvision

    weights = tmp_path / "resnet18-fashion.pth"
    torch.save({"state_dict": torchvision.models.resnet18(num_classes=10).state_dict()}, weights)
    spec = f"checkpoint:resnet18:num_classes=10:{weights}"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--models",
            spec,
            "--suites",
            "corruption",
            "--corruptions",
            "contrast",
            "--severities",
            "1",
            "--sample-size",
            "20",
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "spec",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = pd.read_csv(tmp_path / "spec" / "summary.csv")
    assert list(summary["model"]) == [spec] and summary["architecture"].iloc[0] == "resnet18"


@needs_data
def test_a_model_returning_nan_fails_its_cells_and_the_run_completes(tmp_path):
    import torch

    from robustbench_lift.models import build_model
    from robustbench_lift.models.checkpoints import read_checkpoint, save_checkpoint

    state, metadata = read_checkpoint(zoo_checkpoint_path("avg"))
    state = dict(state)
    state["model.head.2.bias"] = torch.full_like(state["model.head.2.bias"], float("nan"))
    broken = build_model(
        "small_cnn", "avg", 10, {}, metadata["preprocessing"]["mean"], metadata["preprocessing"]["std"]
    )
    broken.load_state_dict(state)
    path = tmp_path / "broken.safetensors"
    save_checkpoint(broken, metadata, path)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--models",
            "max",
            str(path),
            "--suites",
            "corruption",
            "shift",
            "--corruptions",
            "contrast",
            "--severities",
            "1",
            "--sample-size",
            "30",
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "nan",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if line.startswith("robustbench-lift: error:")]
    assert len(errors) == 1 and "NaN" in errors[0] and "Traceback" not in completed.stderr
    results = pd.read_csv(tmp_path / "nan" / "results.csv")
    assert (results[results["model"] == "broken"]["status"] == "failed").all()
    assert (results[results["model"] == "small_cnn-max-s0"]["status"] == "ok").all()


def test_imagenet_c_layout_evaluates_end_to_end(tmp_path):
    """Clean ImageNet validation folder + an ImageNet-C folder (published layouts), a
    torchvision architecture from a checkpoint: the corruption suite reads the pre-made set."""
    import torch
    import torchvision
    from PIL import Image

    rng = np.random.default_rng(0)
    wnids = ["n01440764", "n01443537"]
    clean_root, corrupted_root = tmp_path / "val", tmp_path / "imagenet-c"
    for wnid in wnids:
        for number in range(2):
            name = f"ILSVRC2012_val_{wnid[-2:]}{number}.JPEG"
            (clean_root / wnid).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
                clean_root / wnid / name, format="JPEG"
            )
            for corruption in ("gaussian_noise", "contrast"):
                for severity in (1, 2):
                    folder = corrupted_root / corruption / str(severity) / wnid
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(
                        folder / name, format="JPEG"
                    )
    weights = tmp_path / "resnet18-2.pth"
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), weights)
    spec = f"checkpoint:resnet18:num_classes=2:{weights}"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--models",
            spec,
            "--dataset",
            "imagenet",
            "--data-dir",
            str(clean_root),
            "--corruption-data",
            str(corrupted_root),
            "--suites",
            "corruption",
            "--corruptions",
            "gaussian_noise",
            "contrast",
            "--severities",
            "1",
            "2",
            "--sample-size",
            "4",
            "--batch-size",
            "4",
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "inc",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = pd.read_csv(tmp_path / "inc" / "results.csv")
    assert sorted(results["condition"]) == ["clean", "contrast/1", "contrast/2", "gaussian_noise/1", "gaussian_noise/2"]
    assert (results["n"] == 4).all() and (results["status"] == "ok").all()


@needs_data
def test_zoo_model_pgd_is_not_weaker_than_fgsm(tmp_path):
    import torch

    from robustbench_lift.evaluation.attacks import evaluate_attack, sanity_warnings
    from robustbench_lift.evaluation.inference import to_tensor

    test_set = load_dataset("fashion_mnist", "test").subset(np.arange(48))
    model, _ = load_zoo_model("lift")
    images, labels = to_tensor(test_set.images), torch.from_numpy(test_set.labels)
    clean = accuracy(model, test_set.images, test_set.labels)
    fgsm = evaluate_attack(model, images, labels, "fgsm")
    pgd = evaluate_attack(model, images, labels, "pgd_linf")
    assert fgsm[0]["epsilon"] == 0 and fgsm[0]["robust_accuracy"] == pytest.approx(clean)
    assert pgd[0]["robust_accuracy"] == pytest.approx(clean)
    for fgsm_row, pgd_row in zip(fgsm, pgd):
        assert pgd_row["robust_accuracy"] <= fgsm_row["robust_accuracy"] <= clean
    accuracies = [row["robust_accuracy"] for row in pgd]
    assert accuracies == sorted(accuracies, reverse=True)
    assert sanity_warnings(fgsm + pgd, clean) == []
