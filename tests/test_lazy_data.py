"""Image folders are listed, then only the sampled images are opened and decoded; the
geometry matches torchvision's; class folders named by wnids map to ImageNet's outputs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest
from PIL import Image

from robustbench_lift.data.base import ImageDataset, sample_indices
from robustbench_lift.data.classes import imagenet_class_index, imagenet_wnids
from robustbench_lift.data.datasets import load_dataset
from robustbench_lift.data.files import ImageFiles, decode_files
from robustbench_lift.data.geometry import Geometry, apply_geometry, resize_array
from robustbench_lift.errors import UserError


def write_folder(
    root: Path, wnids: list[str], per_class: int, sizes: list[tuple[int, int]], seed: int = 0
) -> list[Path]:
    """Small random-texture JPEGs ``root/<wnid>/<wnid>_<n>.JPEG``; sizes cycle (height, width)."""
    rng = np.random.default_rng(seed)
    paths = []
    size_cycle = itertools.cycle(sizes)
    for wnid in wnids:
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            height, width = next(size_cycle)
            path = root / wnid / f"{wnid}_{number:03d}.JPEG"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=85)
            paths.append(path)
    return paths


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path PIL.Image.open is called with from now on."""
    calls: list[Path] = []
    real_open = PIL.Image.open

    def recording_open(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(Path(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", recording_open)
    return calls


def test_imagenet_folder_decodes_only_the_sampled_files(tmp_path: Path, opened: list[Path]) -> None:
    wnids = list(imagenet_wnids()[:40])
    write_folder(tmp_path / "val", wnids, per_class=10, sizes=[(30, 40), (41, 29), (36, 36)])
    opened.clear()
    data = load_dataset("imagenet", "test", tmp_path)
    assert isinstance(data, ImageFiles) and len(data) == 400
    assert opened == []  # listing the folder opens no image

    sample, indices = data.sample(25, seed=7)
    expected = [data.paths[index] for index in indices]
    assert opened == expected  # each sampled file exactly once, in sample order
    # The indices any data set of this length draws with this seed (Fashion-MNIST and
    # CIFAR keep theirs: ImageDataset.sample goes through the same function).
    assert np.array_equal(indices, sample_indices(400, 25, 7))
    in_memory = ImageDataset("same length", np.zeros((400, 1, 1, 3), np.uint8), np.zeros(400, np.int64), ["a"])
    assert np.array_equal(in_memory.sample(25, 7)[1], indices)
    assert np.array_equal(indices, np.sort(np.random.default_rng(7).choice(400, size=25, replace=False)))

    # The pixels torchvision's Resize(256) + CenterCrop(224) gives for those files.
    from torchvision.transforms import CenterCrop, Compose, Resize

    transform = Compose([Resize(256), CenterCrop(224)])
    reference = np.stack([np.asarray(transform(Image.open(path).convert("RGB"))) for path in expected])
    assert sample.images.shape == (25, 224, 224, 3) and np.array_equal(sample.images, reference)
    assert np.array_equal(sample.labels, data.labels[indices])
    assert sample.labels.tolist() == sorted(sample.labels.tolist())  # sorted wnids, then files


def test_other_geometry_and_worker_counts_decode_the_same(tmp_path: Path, opened: list[Path]) -> None:
    write_folder(tmp_path, list(imagenet_wnids()[:3]), per_class=7, sizes=[(50, 20), (20, 50), (33, 33)])
    data = load_dataset("image_folder", "test", tmp_path)
    assert data.geometry == Geometry(resize=32, crop=32)
    indices = np.array([20, 3, 11, 0])
    opened.clear()
    geometry = Geometry(resize=24, crop=(20, 16), interpolation="bicubic")
    one = data.load(indices, geometry, workers=1)
    assert opened == [data.paths[index] for index in indices]
    many = data.load(indices, geometry, workers=5)
    assert np.array_equal(one.images, many.images) and one.images.shape == (4, 20, 16, 3)
    assert one.labels.tolist() == [2, 0, 1, 0]
    with Image.open(data.paths[20]) as image:
        assert np.array_equal(one.images[0], apply_geometry(image, geometry))


def test_images_of_different_sizes_need_a_geometry(tmp_path: Path) -> None:
    paths = write_folder(tmp_path, ["a"], per_class=3, sizes=[(10, 10), (10, 10), (12, 10)])
    assert decode_files(paths[:2]).shape == (2, 10, 10, 3)
    with pytest.raises(UserError, match=r"a_002.JPEG is 10x12 px but .*a_000.JPEG is 10x10 px"):
        decode_files(paths, workers=2)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not a picture")
    with pytest.raises(UserError, match="cannot decode image .*broken.jpg"):
        decode_files([tmp_path / "a" / "broken.jpg"])


def test_tiny_imagenet_decodes_only_the_sampled_files(tmp_path: Path, opened: list[Path]) -> None:
    root = tmp_path / "tiny-imagenet-200"
    wnids = [imagenet_wnids()[index] for index in (3, 100, 200)]
    (root / "val" / "images").mkdir(parents=True)
    rows = []
    for number in range(30):
        name = f"val_{number}.JPEG"
        Image.fromarray(np.full((64, 64, 3), number * 8, np.uint8)).save(root / "val" / "images" / name)
        rows.append(f"{name}\t{wnids[number % 3]}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(rows))
    opened.clear()
    data = load_dataset("tiny_imagenet", "val", tmp_path)
    assert opened == [] and len(data) == 30
    assert data.class_index is not None and data.class_index.tolist() == [3, 100, 200]
    sample, indices = data.sample(6, seed=1)
    assert sorted(opened) == sorted(data.paths[index] for index in indices) and len(opened) == 6
    assert sample.images.shape == (6, 64, 64, 3)


def test_wnid_folders_map_to_imagenet_outputs(tmp_path: Path) -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)
    assert (wnids[0], wnids[999]) == ("n01440764", "n15075141")
    chosen = [wnids[999], wnids[1], wnids[500]]
    write_folder(tmp_path / "val", chosen, per_class=2, sizes=[(40, 40)])
    data = load_dataset("imagenet", "test", tmp_path)
    # Labels follow the sorted folder names; class_index is each one's ImageNet output.
    assert data.classes == sorted(chosen) and data.class_index.tolist() == [1, 500, 999]
    assert data.sample(3, seed=0)[0].class_index.tolist() == [1, 500, 999]
    assert imagenet_class_index(["n01440764", "my_class"]) is None
    write_folder(tmp_path / "val", ["not_a_wnid"], per_class=1, sizes=[(40, 40)])
    assert load_dataset("imagenet", "test", tmp_path).class_index is None


def test_geometry_matches_torchvision_and_validates() -> None:
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Resize

    rng = np.random.default_rng(3)
    for (height, width), resize, crop, interpolation in itertools.product(
        [(17, 90), (64, 64), (301, 257)], [16, 73, 256], [15, 64, 224], ["bilinear", "bicubic", "nearest"]
    ):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = np.asarray(Compose([Resize(resize, InterpolationMode(interpolation)), CenterCrop(crop)])(image))
        assert np.array_equal(apply_geometry(image, Geometry(resize, crop, interpolation=interpolation)), expected)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert resize_array(images, Geometry(resize=32, crop=32)) is images  # nothing to do
    assert resize_array(images, Geometry(size=(48, 40))).shape == (3, 48, 40, 3)
    assert Geometry(resize=256, crop=224).key() == Geometry(resize=256, crop=(224, 224)).key()
    for bad, message in [
        ({"resize": 0}, "positive"),
        ({"crop": (1, 2, 3)}, "crop must be"),
        ({"interpolation": "cubic"}, "unknown interpolation"),
    ]:
        with pytest.raises(UserError, match=message):
            Geometry(**bad)


@pytest.mark.needs_data
def test_fashion_mnist_sample_is_unchanged() -> None:
    """Baselines stay valid: the same seed draws the same images as before lazy loading."""
    data = load_dataset("fashion_mnist", "test")
    sample, indices = data.sample(200, seed=0)
    assert np.array_equal(indices, np.sort(np.random.default_rng(0).choice(10000, size=200, replace=False)))
    assert np.array_equal(sample.images, data.images[indices])


@pytest.mark.needs_data
def test_prepared_inputs_are_batched_within_the_memory_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a budget of two samples, the corruption suite prepares at most two conditions
    at a time, and the results equal those of a run that prepares everything at once."""
    from robustbench_lift.evaluation.suites import SUITES
    from robustbench_lift.run import runner
    from robustbench_lift.run.config import RunConfig

    suite = SUITES.get("corruption")
    real_prepare = suite.prepare
    prepared: list[list[str]] = []

    def recording_prepare(context, conditions=None):  # type: ignore[no-untyped-def]
        prepared.append(list(conditions or []))
        return real_prepare(context, conditions)

    monkeypatch.setattr(suite, "prepare", recording_prepare)
    tables = {}
    for name, budget in (("batched", 2 * 40 * 32 * 32 * 3), ("whole", 2**40)):
        monkeypatch.setattr(runner, "PREPARED_BYTES", budget)
        prepared.clear()
        config = RunConfig(
            models=["max"],
            suites=["corruption"],
            corruptions=["contrast", "brightness", "fog"],
            severities=[1],
            sample_size=40,
            workers=1,
            device="cpu",
            output_dir=str(tmp_path),
            run_name=name,
        )
        tables[name] = pd.read_csv(runner.run_benchmark(config) / "results.csv")
        if name == "batched":
            assert prepared == [["clean", "contrast/1"], ["brightness/1", "fog/1"]]
        else:
            assert prepared == [["clean", "contrast/1", "brightness/1", "fog/1"]]
    columns = ["condition", "error", "n"]
    assert tables["batched"][columns].equals(tables["whole"][columns])
