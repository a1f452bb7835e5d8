"""The segmentation suite end to end: ``run --task segmentation``, the segmentation zoo
loader against what the training script writes, VOC / Cityscapes fixtures, torchvision
segmentation models from local files, the report section and the gate's metrics.

Models are tiny ones trained for one epoch into tmp_path, or untrained ones where a test
checks plumbing only; no weights are shipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import cli
from robustbench_lift.models import segmentation_zoo
from robustbench_lift.models.checkpoints import save_checkpoint
from robustbench_lift.models.segmentation import build_segmenter
from robustbench_lift.reporting.comparison import FIXED_METRICS
from robustbench_lift.run.config import RunConfig
from robustbench_lift.run.segmentation import run_segmentation_benchmark
from tests.test_segmentation import _palette_png, write_cityscapes, write_voc

VOC_CLASSES = 21


def _untrained_checkpoint(path: Path, classes: int, pooling: str = "max", seed: int = 0) -> Path:
    """An untrained segnet_small checkpoint (plumbing tests only)."""
    torch.manual_seed(seed)
    model = build_segmenter(pooling, classes, widths=[4, 4, 4])
    metadata = {
        "task": "segmentation", "architecture": "segnet_small", "pooling": pooling, "pooling_options": {},
        "num_classes": classes, "architecture_options": {"widths": [4, 4, 4], "convs_per_stage": 1}, "seed": seed,
    }  # fmt: skip
    save_checkpoint(model.eval(), metadata, path)
    return path


def _tiny_options(tmp_path: Path) -> dict:
    return {
        "output_dir": str(tmp_path / "runs"), "workers": 1, "threads": 1, "severities": [2],
        "segmentation_corruptions": ["gaussian_noise", "brightness"],
        "segmentation_perturbations": ["gaussian_noise", "brightness"], "segmentation_sequence_count": 2,
        "segmentation_grid_images": 2,
    }  # fmt: skip


def test_list_suites_shows_segmentation(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "suites"]) == 0
    assert "segmentation" in capsys.readouterr().out


def test_missing_segmentation_zoo_is_one_line_naming_the_training_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(segmentation_zoo, "SEGMENTATION_ZOO_DIRECTORY", tmp_path / "empty")
    code = cli.main(["run", "--task", "segmentation", "--quick", "--output-dir", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(error) == 1 and "python scripts/train_segmentation_zoo.py" in error[0]


@pytest.mark.slow
@pytest.mark.needs_data
def test_training_script_writes_what_the_zoo_loads_and_the_run_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts.train_segmentation_zoo import main as train_main

    zoo = tmp_path / "zoo"
    arguments = ["--kinds", "max", "lift", "--seeds", "0", "--output-dir", str(zoo), "--cache-dir", str(tmp_path / "c"),
                 "--epochs", "1", "--train-scenes", "16", "--validation-scenes", "4", "--test-scenes", "4",
                 "--widths", "4", "4", "4"]  # fmt: skip
    assert train_main(arguments) == 0
    monkeypatch.setattr(segmentation_zoo, "SEGMENTATION_ZOO_DIRECTORY", zoo)
    assert segmentation_zoo.segmentation_zoo_names() == ["segnet_small-max-s0", "segnet_small-lift-s0"]
    config = RunConfig(suites=["segmentation"], run_name="seg", sample_size=6, **_tiny_options(tmp_path))
    directory = run_segmentation_benchmark(config)

    results = pd.read_csv(directory / "results.csv")
    summary = pd.read_csv(directory / "summary.csv").set_index("model")
    record = json.loads((directory / "run.json").read_text())
    assert record["task"] == "segmentation" and record["dataset"] == "garment_scenes"
    assert set(summary.index) == {"segnet_small-max-s0", "segnet_small-lift-s0"}
    expected = {"clean", "gaussian_noise/2", "brightness/2", "stability/gaussian_noise/d1", "stability/brightness/d1"}
    for model in summary.index:
        rows = results[results["model"] == model].set_index("condition")
        assert set(rows.index) == expected
        assert (rows["status"] == "ok").all()
        corrupted = rows.loc[["gaussian_noise/2", "brightness/2"]]
        assert np.allclose(corrupted["relative_miou"], corrupted["miou"] / rows.loc["clean", "miou"])
        assert rows.loc["clean", "miou_low"] <= rows.loc["clean", "miou"] <= rows.loc["clean", "miou_high"]
        mean = corrupted["miou"].mean()
        assert summary.loc[model, "mean_corrupted_miou"] == pytest.approx(mean)
        assert summary.loc[model, "relative_robustness"] == pytest.approx(mean / summary.loc[model, "clean_miou"])
        shares = rows.loc[["stability/gaussian_noise/d1", "stability/brightness/d1"], "pixel_flip_share"]
        assert ((shares >= 0) & (shares <= 1)).all()
        assert summary.loc[model, "mean_pixel_flip_share"] == pytest.approx(shares.mean())
    manifest = json.loads((directory / "segmentation_grid.json").read_text())
    assert manifest["condition"] == "gaussian_noise/2" and len(manifest["images"]) == 2
    for image in manifest["images"]:
        assert (directory / image["truth"]).is_file() and (directory / image["input_corrupted"]).is_file()
        for files in image["models"].values():
            assert (directory / files["clean"]).is_file() and (directory / files["corrupted"]).is_file()

    from robustbench_lift.reporting.html import write_report

    html = write_report(directory).read_text()
    assert 'id="segmentation"' in html and "segmentation_grid/0-truth.png" in html
    assert "plot-segmentation_heatmap" in html and "plot-segmentation_severity" in html


def test_gate_knows_segmentation_metrics_with_their_direction() -> None:
    assert FIXED_METRICS["clean_miou"].better == "higher"
    assert FIXED_METRICS["relative_robustness"].better == "higher"
    assert FIXED_METRICS["mean_pixel_flip_share"].better == "lower"


@pytest.mark.slow
def test_voc_and_cityscapes_fixtures_run_through_the_suite(tmp_path: Path) -> None:
    write_voc(tmp_path / "voc", {"a": (20, 24), "b": (18, 30), "c": (20, 24)}, {"val": ["a", "b", "c"]})
    write_cityscapes(tmp_path / "city")
    checkpoint = _untrained_checkpoint(tmp_path / "voc.safetensors", VOC_CLASSES)
    options = _tiny_options(tmp_path) | {"segmentation_size": [16, 16], "sample_size": None}
    config = RunConfig(
        suites=["segmentation"], run_name="voc", models=[str(checkpoint)], segmentation_dataset="voc2012",
        data_dir=str(tmp_path / "voc"), **options,
    )  # fmt: skip
    results = pd.read_csv(run_segmentation_benchmark(config) / "results.csv")
    assert (results["status"] == "ok").all() and (results["dataset"] == "voc2012-val").all()
    assert results.loc[results["condition"] == "clean", "n"].item() == 3
    city_checkpoint = _untrained_checkpoint(tmp_path / "city.safetensors", 19, "avg")
    config = config.replace(
        run_name="city",
        models=[str(city_checkpoint)],
        segmentation_dataset="cityscapes",
        data_dir=str(tmp_path / "city"),
    )
    results = pd.read_csv(run_segmentation_benchmark(config) / "results.csv")
    assert (results["status"] == "ok").all() and (results["dataset"] == "cityscapes-val").all()


@pytest.mark.slow
def test_segmentation_run_summarises_pooling_kinds_across_seeds_against_max(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_voc(tmp_path / "voc", {"a": (16, 16), "b": (16, 16), "c": (16, 16)}, {"val": ["a", "b", "c"]})
    checkpoints = [
        _untrained_checkpoint(tmp_path / f"{kind}-{seed}.safetensors", VOC_CLASSES, kind, seed)
        for kind in ("max", "lift")
        for seed in (0, 1)
    ]
    arguments = _voc_cli(tmp_path, checkpoints[0], "--sample-size", "3", "--severities", "2", "--corruptions",
                         "gaussian_noise", "--perturbations", "brightness", "--perturbation-sample-size", "2")  # fmt: skip
    arguments[arguments.index("--models") + 1 : arguments.index("--models") + 2] = [str(path) for path in checkpoints]
    assert cli.main(arguments) == 0
    output = capsys.readouterr().out
    directory = next((tmp_path / "runs").iterdir())
    kinds = pd.read_csv(directory / "pooling_summary.csv").set_index("pooling")
    summary = pd.read_csv(directory / "summary.csv").set_index("model")
    assert list(kinds.index) == ["max", "lift"] and list(kinds["seeds"]) == [2, 2]
    for kind in ("max", "lift"):
        values = summary.loc[[f"{kind}-0", f"{kind}-1"], "clean_miou"]
        assert kinds.loc[kind, "clean_miou_mean"] == pytest.approx(values.mean())
        assert kinds.loc[kind, "clean_miou_sd"] == pytest.approx(values.std(ddof=1))
        assert {"mean_corrupted_miou_sd", "relative_robustness_sd", "mean_pixel_flip_share_sd"} <= set(kinds.columns)
    # The terminal's across-seed table compares against max (no reference model in segmentation runs).
    assert "mean ± sd over training seeds" in output and "than max beyond the seed spread" in output
    html = (directory / "index.html").read_text()
    assert 'id="seeds-table"' in html and "differs from <code>max</code>" in html
    # The gate: the baseline names the segmentation data set; the tests are unpaired and say why.
    baseline = tmp_path / "baseline.csv"
    assert cli.main(["check", str(directory), "--baseline", str(baseline), "--update-baseline"]) == 0
    assert "# dataset: voc2012-val" in baseline.read_text().splitlines()
    policy = _yaml(tmp_path, "metrics:\n  clean_miou: {tolerance: 0.01}\n  mean_pixel_flip_share: {tolerance: 0.01}\n")
    capsys.readouterr()
    assert cli.main(["check", str(directory), "--baseline", str(baseline), "--policy", str(policy)]) == 0
    assert "neither the baseline nor the run has per-image outcomes" in capsys.readouterr().out


def _voc_cli(tmp_path: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["run", "--task", "segmentation", "--dataset", "voc2012", "--data-dir", str(tmp_path / "voc"),
            "--models", str(checkpoint), "--output-dir", str(tmp_path / "runs"), "--workers", "1", "--sample-size", "2", *extra]  # fmt: skip


def test_bad_segmentation_input_ends_in_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = write_voc(tmp_path / "voc", {"a": (10, 14), "b": (10, 14)}, {"val": ["a", "b"]})
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    checkpoint = _untrained_checkpoint(tmp_path / "m.safetensors", VOC_CLASSES)

    def one_line(*arguments: str) -> str:
        code = cli.main(_voc_cli(tmp_path, checkpoint, *arguments))
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1, lines
        return lines[0]

    assert "split list" in one_line("--config", str(_yaml(tmp_path, "segmentation_split: trainaug")))
    bad = labels["a"].copy()
    bad[3, 3] = 30
    _palette_png(voc / "SegmentationClass" / "a.png", bad)
    assert "class 30" in one_line()
    _palette_png(voc / "SegmentationClass" / "a.png", labels["a"])
    _palette_png(voc / "SegmentationClass" / "b.png", np.zeros((9, 14), dtype=np.uint8))
    assert "14x9" in one_line()
    assert "moves pixels" in one_line("--corruptions", "elastic_transform")
    assert "moves pixels" in one_line("--perturbations", "rotate")
    assert "runs on its own" in one_line("--suites", "segmentation", "corruption")


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["fcn_resnet50", "deeplabv3_resnet50", "lraspp_mobilenet_v3_large"])
def test_torchvision_segmentation_models_load_from_local_files(tmp_path: Path, architecture: str) -> None:
    import torchvision

    from robustbench_lift.models.pretrained import load_pretrained

    torch.manual_seed(0)
    aux = architecture != "lraspp_mobilenet_v3_large"  # the released fcn/deeplab files carry an aux head
    network = torchvision.models.get_model(
        architecture, weights=None, weights_backbone=None, num_classes=VOC_CLASSES, aux_loss=aux
    )
    path = tmp_path / f"{architecture}.pth"
    torch.save(network.state_dict(), path)
    model, metadata = load_pretrained(f"torchvision:{architecture}:{path}", input_size=(3, 32, 32))
    assert metadata["task"] == "segmentation" and metadata["num_classes"] == VOC_CLASSES
    network.eval()
    images = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        logits = model(images)  # the dict's "out", at the input size
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        expected = network((images - mean) / std)["out"]
    assert logits.shape == (1, VOC_CLASSES, 32, 40)
    assert torch.allclose(logits, expected, atol=1e-5)


@pytest.mark.slow
def test_torchvision_segmentation_runs_through_the_suite_and_swap_pooling_applies(tmp_path: Path) -> None:
    import torchvision

    from robustbench_lift.models.pretrained import load_pretrained
    from robustbench_lift.nn.swap import swap_pooling

    torch.manual_seed(0)
    network = torchvision.models.get_model(
        "fcn_resnet50", weights=None, weights_backbone=None, num_classes=VOC_CLASSES, aux_loss=False
    )
    swapped, report = swap_pooling(network, "lift", input_size=(3, 32, 32))
    assert report.replaced and any(name.startswith("backbone.") for name, _ in report.replaced)
    path = tmp_path / "fcn-lift.pth"
    torch.save(swapped.state_dict(), path)
    spec = f"torchvision:fcn_resnet50:pooling=lift:{path}"
    model, metadata = load_pretrained(spec, input_size=(3, 32, 32))
    assert metadata["pooling"] == "lift" and metadata["swapped_layers"]
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, VOC_CLASSES, 32, 32)

    write_voc(tmp_path / "voc", {"a": (20, 24), "b": (20, 24)}, {"val": ["a", "b"]})
    lraspp = torchvision.models.get_model(
        "lraspp_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=VOC_CLASSES
    )
    torch.save(lraspp.state_dict(), tmp_path / "lraspp.pth")
    config = RunConfig(
        suites=["segmentation"], run_name="tv", models=[f"torchvision:lraspp_mobilenet_v3_large:{tmp_path / 'lraspp.pth'}"],
        segmentation_dataset="voc2012", data_dir=str(tmp_path / "voc"),
        **(_tiny_options(tmp_path) | {"segmentation_size": [32, 32], "sample_size": None}),
    )  # fmt: skip
    summary = pd.read_csv(run_segmentation_benchmark(config) / "summary.csv")
    assert len(summary) == 1 and 0 <= summary["clean_miou"].item() <= 1


def test_shipped_segmentation_zoo_is_complete_and_one_recipe() -> None:
    """Every kind x seed of the segmentation zoo ships, loads as what its name says, and the
    models differ only in pooling (their down/up pair) and seed: same training recipe,
    same scenes, same widths."""
    from robustbench_lift.models._format import read_safetensors_metadata

    entries = segmentation_zoo.segmentation_zoo_entries()
    found = {(entry.kind, entry.seed) for entry in entries}
    expected = {
        (k, s) for k in segmentation_zoo.SEGMENTATION_ZOO_KINDS for s in segmentation_zoo.SEGMENTATION_ZOO_SEEDS
    }
    assert found == expected
    recipes = set()
    for entry in entries:
        metadata = read_safetensors_metadata(entry.path)
        assert metadata["pooling"] == entry.kind and metadata["seed"] == entry.seed
        assert len(metadata["validation_miou_per_epoch"]) == metadata["epochs"]
        training = {
            key: value
            for key, value in metadata["training"].items()
            # lifting regularisers apply to the learned lift only (0 elsewhere, by the recipe)
            if key
            not in ("seed", "threads", "device", "pooling", "pooling_options", "detail_weight", "approximation_weight")
        }
        recipes.add(json.dumps([training, metadata["scene_generator"]], sort_keys=True))
    assert len(recipes) == 1
    model, metadata = segmentation_zoo.load_segmentation_zoo_model("segnet_small-lift-s1")
    assert metadata["pooling"] == "lift" and not model.training
