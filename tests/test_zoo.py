"""Tests for the seed-aware model zoo (robustbench_lift/models/zoo.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import robustbench_lift.models.zoo as zoo
from robustbench_lift.errors import UserError
from robustbench_lift.models import build_model
from robustbench_lift.models.checkpoints import save_checkpoint
from robustbench_lift.models.zoo import (
    ZOO_KINDS,
    ZOO_SEEDS,
    parse_zoo_name,
    zoo_entries,
    zoo_file_name,
    zoo_model_name,
)
from robustbench_lift.nn.kinds import resolve_options
from robustbench_lift.nn.lifting import LiftDownPool

MEAN, STD = [0.3, 0.3, 0.3], [0.3, 0.3, 0.3]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("small_cnn-lift-s1", ("lift", 1)),
        ("lift-s2", ("lift", 2)),
        ("small_cnn-lift", ("lift", 0)),
        ("lift", ("lift", 0)),
        ("small_cnn-haar_sum-s12", ("haar_sum", 12)),
        ("haar", ("haar_sum", 0)),  # the single-seed zoo's names
        ("small_cnn-lift53-s1", ("cdf53_sum", 1)),
    ],
)
def test_zoo_names_give_kind_and_seed(name, expected) -> None:
    assert parse_zoo_name(name) == expected
    assert parse_zoo_name(zoo_model_name(*expected)) == expected


@pytest.mark.parametrize("name", ["small_cnn-nope", "haar_ll", "small_cnn-lift-sx", "resnet-lift-s0", ""])
def test_unknown_zoo_names_are_one_line_user_errors(name) -> None:
    with pytest.raises(UserError) as error:
        parse_zoo_name(name)
    assert "\n" not in str(error.value) and "small_cnn-lift-s0" in str(error.value)


def checkpoint(
    directory: Path,
    file_name: str,
    pooling: str,
    seed: int,
    options: dict | None = None,
    recorded: dict | None = None,
    name: str | None = None,
) -> Path:
    """A zoo-like checkpoint; ``recorded`` and ``name`` stand for the options and kind name
    an older version wrote."""
    torch.manual_seed(seed)
    model = build_model("small_cnn", pooling, pooling_options=options, mean=MEAN, std=STD).eval()
    metadata = {
        "architecture": "small_cnn",
        "pooling": name or pooling,
        "pooling_options": resolve_options(pooling, options) if recorded is None else recorded,
        "num_classes": 10,
        "dataset": "fashion_mnist",
        "seed": seed,
        "preprocessing": {"mean": MEAN, "std": STD},
        "clean_test_accuracy": 0.5 + seed / 100,
    }
    path = directory / file_name
    save_checkpoint(model, metadata, path)
    return path


@pytest.fixture
def zoo_directory(tmp_path, monkeypatch) -> Path:
    """A zoo folder with a single-seed zoo's files (max, lift, haar) and seeded files."""
    checkpoint(tmp_path, "fashion_mnist-small_cnn-max.safetensors", "max", 0)
    old_lift = {"combine": "sum", "kernel_size": 3, "groups": "depthwise"}  # written before `share` existed
    checkpoint(
        tmp_path, "fashion_mnist-small_cnn-lift.safetensors", "lift", 0, {"share": "per_direction"}, recorded=old_lift
    )
    checkpoint(
        tmp_path, "fashion_mnist-small_cnn-haar.safetensors", "haar_sum", 0, recorded={"combine": "sum"}, name="haar"
    )
    checkpoint(tmp_path, zoo_file_name("max", 1), "max", 1)
    checkpoint(tmp_path, zoo_file_name("lift", 0), "lift", 0)  # replaces the old seed-0 file
    checkpoint(tmp_path, zoo_file_name("lift", 2), "lift", 2)
    monkeypatch.setattr(zoo, "ZOO_DIRECTORY", tmp_path)
    return tmp_path


def test_zoo_lists_every_present_kind_and_seed(zoo_directory) -> None:
    entries = zoo_entries()
    assert [entry.name for entry in entries] == [
        "small_cnn-max-s0",
        "small_cnn-max-s1",
        "small_cnn-lift-s0",
        "small_cnn-lift-s2",
        "small_cnn-haar_sum-s0",
    ]
    assert zoo.zoo_names() == [entry.name for entry in entries]
    by_name = {entry.name: entry.path.name for entry in entries}
    # A seeded file wins over the single-seed zoo's file; otherwise that one is seed 0.
    assert by_name["small_cnn-lift-s0"] == "fashion_mnist-small_cnn-lift-s0.safetensors"
    assert by_name["small_cnn-max-s0"] == "fashion_mnist-small_cnn-max.safetensors"
    assert by_name["small_cnn-haar_sum-s0"] == "fashion_mnist-small_cnn-haar.safetensors"


def test_zoo_table_has_a_row_per_kind_and_seed(zoo_directory) -> None:
    rows = zoo.zoo_table()
    assert {(row["pooling"], row["seed"]) for row in rows} == {(kind, seed) for kind in ZOO_KINDS for seed in ZOO_SEEDS}
    by_model = {row["model"]: row for row in rows}
    assert by_model["small_cnn-max-s1"]["clean_test_accuracy"] == pytest.approx(0.51)
    assert (
        by_model["small_cnn-max-s2"]["weights"] == "missing"
        and by_model["small_cnn-max-s2"]["clean_test_accuracy"] == "-"
    )
    assert by_model["small_cnn-haar_sum-s0"]["weights"] == "fashion_mnist-small_cnn-haar.safetensors"


def test_list_zoo_shows_the_seed(zoo_directory) -> None:
    import cli

    rows = cli._listing("zoo")
    assert rows and all("seed" in row for row in rows)


def test_old_zoo_files_load_as_seed_zero_of_todays_kinds(zoo_directory) -> None:
    model, metadata = zoo.load_zoo_model("small_cnn-haar_sum")
    assert metadata["pooling"] == "haar_sum" and metadata["seed"] == 0
    model, metadata = zoo.load_zoo_model("small_cnn-lift-s2")
    assert (
        metadata["seed"] == 2
        and [pool.share for pool in model.modules() if isinstance(pool, LiftDownPool)] == ["all"] * 3
    )
    # The old lift file (one P/U pair per direction) still loads where no seeded file exists.
    (zoo_directory / zoo_file_name("lift", 0)).unlink()
    model, metadata = zoo.load_zoo_model("lift")
    assert [pool.share for pool in model.modules() if isinstance(pool, LiftDownPool)] == ["per_direction"] * 3
    assert zoo.zoo_metadata("lift")["seed"] == 0


def test_missing_or_mislabelled_zoo_weights_are_user_errors(zoo_directory) -> None:
    with pytest.raises(UserError, match="--kinds blur --seeds 1"):
        zoo.load_zoo_model("small_cnn-blur-s1")
    shutil.copy(zoo_directory / zoo_file_name("max", 1), zoo_directory / zoo_file_name("avg", 1))
    with pytest.raises(UserError, match="'max' model, not 'avg'"):
        zoo.load_zoo_model("small_cnn-avg-s1")
    shutil.copy(zoo_directory / zoo_file_name("max", 1), zoo_directory / zoo_file_name("max", 3))
    with pytest.raises(UserError, match="seed 1, not 3"):
        zoo.load_zoo_model("small_cnn-max-s3")


def test_shipped_zoo_files_load() -> None:
    """The package's own weights (single-seed files until the seeded zoo replaces them)."""
    for entry in zoo_entries():
        model, metadata = zoo.load_zoo_model(entry.name)
        assert metadata["pooling"] == entry.kind and metadata["seed"] == entry.seed


def test_shipped_seeds_of_a_kind_share_one_recipe() -> None:
    """The seeds of a pooling kind differ in their seed only: the recorded pooling options
    are the zoo's (what scripts/train_zoo.py trains) and the training settings agree."""
    from robustbench_lift.models._format import read_safetensors_metadata
    from robustbench_lift.nn.kinds import recorded_options, resolve_options

    recipes: dict[str, set[str]] = {}
    for entry in zoo_entries():
        metadata = read_safetensors_metadata(entry.path)
        kind, options = recorded_options(metadata["pooling"], metadata.get("pooling_options"))
        assert kind == entry.kind
        assert resolve_options(kind, options) == resolve_options(kind, zoo.ZOO_POOLING_OPTIONS.get(kind, {}))
        # Where it ran, and settings recorded only by later versions at their default, do not
        # change the recipe.
        ignored = ("seed", "threads", "device", "pooling", "pooling_options")
        training = {
            key: value for key, value in metadata["training"].items() if key not in ignored and value is not None
        }
        recipes.setdefault(kind, set()).add(json.dumps(training, sort_keys=True))
    assert recipes and all(len(found) == 1 for found in recipes.values()), recipes


def test_seeds_of_a_kind_report_the_same_full_options() -> None:
    """Seed 0 (written before ``share`` existed) and later seeds read as one recipe, so that
    a run's pooling_summary.csv pools them into one row."""
    for kind in ("lift", "haar_sum", "blur"):
        options = [
            zoo.load_zoo_model(entry.name)[1]["pooling_options"] for entry in zoo_entries() if entry.kind == kind
        ]
        assert len(options) >= 2 and all(found == options[0] for found in options)
    assert zoo.load_zoo_model("small_cnn-lift-s0")[1]["pooling_options"]["share"] == "per_direction"
