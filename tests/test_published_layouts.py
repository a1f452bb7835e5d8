"""Tests for robustbench_lift.data.published and the CIFAR-100 / ImageNet / Tiny-ImageNet loaders.

Every fixture is built in tmp_path in exactly the published layout, a few images large.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from corruptions import corrupt_batch
from robustbench_lift.data import writer
from robustbench_lift.data.datasets import DATASETS, ImageDataset, load_dataset
from robustbench_lift.data.published import (
    LAYOUTS,
    detect_layout,
    load_corruption_set,
    load_perturbation_set,
    read_manifest,
)
from robustbench_lift.data.writer import write_corruption_set
from robustbench_lift.errors import UserError
from robustbench_lift.utils.io import exclusive_lock

BLOCK = 4  # images per severity block in the fixtures
SEVERITIES = [1, 2, 3, 4, 5]


def random_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def smooth_image(size: int, value: int) -> np.ndarray:
    """A flat colour plus a gentle gradient: survives JPEG and video coding nearly unchanged."""
    rows, columns = np.mgrid[0:size, 0:size]
    base = np.stack([np.full((size, size), value), rows * 60 / size + 40, columns * 60 / size + 80], -1)
    return base.astype(np.uint8)


def save_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


# ---------------------------------------------------------------- fixtures in the published layouts


@pytest.fixture
def cifar_c(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    labels = np.array([3, 1, 4, 1], dtype=np.uint8)
    np.save(root / "labels.npy", np.tile(labels, 5))  # published: the labels once per severity block
    arrays = {}
    for seed, corruption in enumerate(["gaussian_noise", "brightness"]):
        arrays[corruption] = random_images(5 * BLOCK, 32, seed)
        np.save(root / f"{corruption}.npy", arrays[corruption])
    return root, arrays, labels.astype(np.int64)


def make_image_c(
    root: Path, size: int, severities: list[int], suffix: str = ".JPEG"
) -> dict[tuple[str, int, str, str], np.ndarray]:
    """``<root>/<corruption>/<severity>/<wnid>/<file>``: 2 wnids (3 + 2 images), PNG content by default."""
    written = {}
    files = {
        "n01440764": ["ILSVRC2012_val_00000293", "ILSVRC2012_val_00002138", "ILSVRC2012_val_00003014"],
        "n01443537": ["ILSVRC2012_val_00000236", "ILSVRC2012_val_00000262"],
    }
    value = 0
    for corruption in ["gaussian_noise", "fog"]:
        for severity in severities:
            for wnid, stems in files.items():
                for stem in stems:
                    value += 7
                    image = smooth_image(size, value)
                    save_image(root / corruption / str(severity) / wnid / f"{stem}{suffix}", image)
                    written[(corruption, severity, wnid, stem)] = image
    return written


def write_video(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frames.shape[2], frames.shape[1]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


# ---------------------------------------------------------------- CIFAR-10-C


def test_cifar_c_severity_blocks_and_indices(cifar_c) -> None:
    root, arrays, labels = cifar_c
    conditions = [("gaussian_noise", 1), ("gaussian_noise", 5), ("brightness", 3)]
    images, loaded_labels = load_corruption_set(root, "cifar-c", conditions)
    assert set(images) == set(conditions)
    for corruption, severity in conditions:
        expected = arrays[corruption][(severity - 1) * BLOCK : severity * BLOCK]
        assert images[(corruption, severity)].shape == (BLOCK, 32, 32, 3)
        assert images[(corruption, severity)].dtype == np.uint8
        assert np.array_equal(images[(corruption, severity)], expected)
    assert loaded_labels.dtype == np.int64 and np.array_equal(loaded_labels, labels)

    chosen = np.array([3, 0])
    images, loaded_labels = load_corruption_set(root, None, conditions, indices=chosen)
    assert np.array_equal(loaded_labels, labels[chosen])
    for corruption, severity in conditions:
        # The same positions in every block, so conditions pair up image by image.
        assert np.array_equal(images[(corruption, severity)], arrays[corruption][(severity - 1) * BLOCK + chosen])


def test_cifar_c_accepts_untiled_labels(cifar_c) -> None:
    root, _, labels = cifar_c
    np.save(root / "labels.npy", labels)
    _, loaded = load_corruption_set(root, "cifar-c", [("brightness", 2)])
    assert np.array_equal(loaded, labels)


def test_cifar_c_layout_errors(cifar_c) -> None:
    root, arrays, labels = cifar_c
    with pytest.raises(UserError, match="missing contrast.npy"):
        load_corruption_set(root, "cifar-c", [("contrast", 1)])
    with pytest.raises(UserError, match="severity .* 1..5"):
        load_corruption_set(root, "cifar-c", [("brightness", 6)])
    with pytest.raises(UserError, match="indices must lie in 0..3"):
        load_corruption_set(root, "cifar-c", [("brightness", 1)], indices=np.array([4]))

    np.save(root / "brightness.npy", arrays["brightness"][:-1])
    with pytest.raises(UserError, match="not a multiple of 5"):
        load_corruption_set(root, "cifar-c", [("brightness", 1)])
    np.save(root / "brightness.npy", random_images(5 * (BLOCK + 1), 32))
    with pytest.raises(UserError, match="labels"):
        load_corruption_set(root, "cifar-c", [("brightness", 1)])
    np.save(root / "brightness.npy", arrays["brightness"].astype(np.float32))
    with pytest.raises(UserError, match="expected uint8"):
        load_corruption_set(root, "cifar-c", [("brightness", 1)])

    os.remove(root / "labels.npy")
    with pytest.raises(UserError) as error:
        load_corruption_set(root, "cifar-c", [("gaussian_noise", 1)])
    message = str(error.value)
    assert message == f"{root} is not a CIFAR-10-C/CIFAR-100-C folder: missing labels.npy" and "\n" not in message


# ---------------------------------------------------------------- ImageNet-C and Tiny-ImageNet-C


def test_imagenet_c_reads_in_image_folder_order(tmp_path: Path) -> None:
    root = tmp_path / "ImageNet-C"
    written = make_image_c(root, 224, [1, 2], suffix=".png")
    assert detect_layout(root) == "imagenet-c"
    images, labels = load_corruption_set(root, None, [("gaussian_noise", 2), ("fog", 1)])
    # Sorted wnids give the labels; within a class, sorted file names give the order.
    assert labels.tolist() == [0, 0, 0, 1, 1]
    order = [("n01440764", "ILSVRC2012_val_00000293"), ("n01440764", "ILSVRC2012_val_00002138"), ("n01440764", "ILSVRC2012_val_00003014"),
             ("n01443537", "ILSVRC2012_val_00000236"), ("n01443537", "ILSVRC2012_val_00000262")]  # fmt: skip
    for corruption, severity in [("gaussian_noise", 2), ("fog", 1)]:
        assert images[(corruption, severity)].shape == (5, 224, 224, 3)
        for position, (wnid, stem) in enumerate(order):
            assert np.array_equal(images[(corruption, severity)][position], written[(corruption, severity, wnid, stem)])

    images, labels = load_corruption_set(root, "imagenet-c", [("fog", 2)], indices=np.array([4, 1]))
    assert labels.tolist() == [1, 0]
    assert np.array_equal(images[("fog", 2)][0], written[("fog", 2, *order[4])])


def test_imagenet_c_layout_errors(tmp_path: Path) -> None:
    root = tmp_path / "ImageNet-C"
    make_image_c(root, 224, [1, 2])
    with pytest.raises(UserError, match=r"missing severity folder fog/3 \(severities found: 1, 2\)"):
        load_corruption_set(root, "imagenet-c", [("fog", 3)])
    with pytest.raises(UserError, match="missing corruption folder contrast"):
        load_corruption_set(root, "imagenet-c", [("contrast", 1)])

    extra = root / "fog" / "2" / "n01443537" / "ILSVRC2012_val_00009999.JPEG"
    save_image(extra, smooth_image(224, 1))
    with pytest.raises(UserError, match="would not pair"):
        load_corruption_set(root, "imagenet-c", [("fog", 1), ("fog", 2)])
    os.remove(extra)

    save_image(root / "fog" / "1" / "n01440764" / "ILSVRC2012_val_00000293.JPEG", smooth_image(200, 1))
    with pytest.raises(UserError, match="ILSVRC2012_val_00000293.JPEG is 200x200 px but .* is 224x224 px"):
        load_corruption_set(root, "imagenet-c", [("fog", 1)])

    (root / "gaussian_noise" / "1" / "n09999999").mkdir()
    with pytest.raises(UserError) as error:
        load_corruption_set(root, "imagenet-c", [("gaussian_noise", 1)])
    assert "is not an ImageNet-C folder: empty class folder gaussian_noise/1/n09999999" in str(error.value)


def test_tiny_imagenet_c_is_detected_by_size(tmp_path: Path) -> None:
    root = tmp_path / "Tiny-ImageNet-C"
    make_image_c(root, 64, [1, 2, 3, 4, 5])
    assert detect_layout(root) == "tiny-imagenet-c"
    images, labels = load_corruption_set(
        root, None, [(corruption, severity) for corruption in ["gaussian_noise", "fog"] for severity in SEVERITIES]
    )
    assert len(images) == 10 and all(block.shape == (5, 64, 64, 3) for block in images.values())
    assert labels.tolist() == [0, 0, 0, 1, 1]


# ---------------------------------------------------------------- CIFAR-10-P and ImageNet-P


def test_cifar_p_files_and_difficulties(tmp_path: Path) -> None:
    root = tmp_path / "CIFAR-10-P"
    root.mkdir()
    rng = np.random.default_rng(0)
    arrays = {name: rng.integers(0, 256, (3, frames, 32, 32, 3), dtype=np.uint8)
              for name, frames in [("gaussian_noise", 31), ("gaussian_noise_2", 31), ("rotate", 31), ("translate", 16)]}  # fmt: skip
    for name, array in arrays.items():
        np.save(root / f"{name}.npy", array)
    assert detect_layout(root) == "cifar-p"

    sequences = load_perturbation_set(root, None, ["gaussian_noise", "translate"])
    assert np.array_equal(sequences["gaussian_noise"], arrays["gaussian_noise"])
    assert sequences["translate"].shape == (3, 16, 32, 32, 3)
    # Difficulty 2: the noise's harder file; gradual perturbations keep their one file.
    sequences = load_perturbation_set(
        root, "cifar-p", ["gaussian_noise", "rotate"], difficulty=2, indices=np.array([2, 0])
    )
    assert np.array_equal(sequences["gaussian_noise"], arrays["gaussian_noise_2"][[2, 0]])
    assert np.array_equal(sequences["rotate"], arrays["rotate"][[2, 0]])

    with pytest.raises(UserError, match="missing gaussian_noise_3.npy"):
        load_perturbation_set(root, "cifar-p", ["gaussian_noise"], difficulty=3)
    with pytest.raises(UserError, match="1, 2 or 3"):
        load_perturbation_set(root, "cifar-p", ["gaussian_noise"], difficulty=4)
    with pytest.raises(UserError, match="holds perturbation sets; use load_perturbation_set"):
        load_corruption_set(root, "cifar-p", [("gaussian_noise", 1)])
    np.save(root / "rotate.npy", arrays["rotate"][:, 0])
    with pytest.raises(UserError, match="expected uint8 N x frames"):
        load_perturbation_set(root, "cifar-p", ["rotate"])


def test_imagenet_p_videos(tmp_path: Path) -> None:
    root = tmp_path / "ImageNet-P"
    frames = {
        wnid: np.stack([smooth_image(224, 40 * step + shift) for step in range(5)])
        for wnid, shift in [("n01440764", 0), ("n01443537", 20)]
    }
    write_video(root / "rotate" / "n01440764" / "ILSVRC2012_val_00000293.mp4", frames["n01440764"])
    write_video(root / "rotate" / "n01443537" / "ILSVRC2012_val_00000236.mp4", frames["n01443537"])
    # A larger video: brought to 224 px (shorter side, then the centre crop).
    write_video(root / "gaussian_noise_2" / "n01440764" / "a.mp4", np.stack([smooth_image(256, 100)] * 4)[:, :, :240])
    assert detect_layout(root) == "imagenet-p"

    sequences = load_perturbation_set(root, None, ["rotate"])
    assert sequences["rotate"].shape == (2, 5, 224, 224, 3) and sequences["rotate"].dtype == np.uint8
    # mp4 is lossy: close, not equal.
    assert np.abs(sequences["rotate"][1].astype(int) - frames["n01443537"]).mean() < 4
    assert np.abs(sequences["rotate"][0, 3].astype(int) - frames["n01440764"][3]).mean() < 4

    noisy = load_perturbation_set(root, "imagenet-p", ["gaussian_noise"], difficulty=2)
    assert noisy["gaussian_noise"].shape == (1, 4, 224, 224, 3)
    picked = load_perturbation_set(root, "imagenet-p", ["rotate"], indices=np.array([1]))
    assert np.array_equal(picked["rotate"][0], sequences["rotate"][1])
    with pytest.raises(UserError, match="missing perturbation folder tilt"):
        load_perturbation_set(root, "imagenet-p", ["tilt"])


# ---------------------------------------------------------------- detection


def test_detect_layout_and_unknown_folders(tmp_path: Path, cifar_c) -> None:
    root, _, _ = cifar_c
    assert detect_layout(root) == "cifar-c"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as error:
        detect_layout(tmp_path / "empty")
    message = str(error.value)
    assert "matches no published layout" in message and all(name in message for name in LAYOUTS)
    with pytest.raises(UserError, match="is not a folder"):
        detect_layout(tmp_path / "absent")
    with pytest.raises(UserError, match="unknown published layout 'bogus'"):
        load_corruption_set(root, "bogus", [("brightness", 1)])


# ---------------------------------------------------------------- writing


def small_dataset(count: int = 6, size: int = 32) -> ImageDataset:
    labels = np.array([1, 0, 1, 1, 0, 1][:count], dtype=np.int64)
    return ImageDataset("toy", random_images(count, size, seed=9), labels, ["zebra", "ant"])


def test_write_cifar_c_round_trip_is_exact(tmp_path: Path) -> None:
    dataset = small_dataset()
    root = write_corruption_set(
        dataset,
        tmp_path / "out",
        "cifar-c",
        ["gaussian_noise", "contrast"],
        SEVERITIES,
        seed=3,
        workers=1,
        progress=False,
    )
    assert sorted(path.name for path in root.iterdir() if not path.name.startswith(".")) == [
        "contrast.npy",
        "gaussian_noise.npy",
        "labels.npy",
        "manifest.json",
    ]
    assert np.load(root / "gaussian_noise.npy").shape == (30, 32, 32, 3)
    assert np.array_equal(np.load(root / "labels.npy"), np.tile(dataset.labels, 5))
    manifest = read_manifest(root)
    assert manifest["profile"] == "cifar" and manifest["seed"] == 3 and manifest["dataset"] == "toy"
    assert manifest["corruptions"] == ["gaussian_noise", "contrast"] and manifest["severities"] == SEVERITIES
    assert manifest["package_version"]

    assert detect_layout(root) == "cifar-c"
    conditions = [("gaussian_noise", 2), ("contrast", 5)]
    images, labels = load_corruption_set(root, None, conditions, indices=np.array([5, 1]), profile="cifar", seed=3)
    assert np.array_equal(labels, dataset.labels[[5, 1]])
    for corruption, severity in conditions:
        expected = corrupt_batch(dataset.images, corruption, severity, seed=3)
        assert np.array_equal(images[(corruption, severity)], expected[[5, 1]])

    with pytest.raises(UserError, match="made with seed 3 but this run asks for seed 4"):
        load_corruption_set(root, None, conditions, seed=4)
    with pytest.raises(UserError, match="profile 'cifar' but this run asks for profile 'imagenet'"):
        load_corruption_set(root, None, conditions, profile="imagenet")
    with pytest.raises(UserError, match="already holds a set with seed 3, this run has 4"):
        write_corruption_set(
            dataset, root, "cifar-c", ["gaussian_noise"], SEVERITIES, seed=4, workers=1, progress=False
        )
    with pytest.raises(UserError, match="ask for all five"):
        write_corruption_set(
            dataset, tmp_path / "other", "cifar-c", ["gaussian_noise"], [1, 3], workers=1, progress=False
        )
    with pytest.raises(UserError, match="unknown writable layout 'cifar-p'"):
        write_corruption_set(dataset, tmp_path / "other", "cifar-p", ["gaussian_noise"], SEVERITIES, progress=False)


def test_write_imagenet_c_png_exact_and_jpeg_close(tmp_path: Path) -> None:
    dataset = small_dataset(size=40)
    # Smooth photographs-like images: random pixels would make every JPEG far from its source.
    dataset.images = np.stack([smooth_image(40, 30 * index) for index in range(len(dataset))])
    conditions = [("brightness", 1), ("brightness", 4), ("contrast", 2)]
    for image_format in ["png", "jpeg"]:
        root = write_corruption_set(dataset, tmp_path / image_format, "imagenet-c", ["brightness", "contrast"], [1, 4, 2],
                                    workers=1, progress=False, image_format=image_format)  # fmt: skip
        # Unsorted class names get index-prefixed folders, so ImageFolder order is class order.
        assert sorted(os.listdir(root / "brightness" / "4")) == ["0-zebra", "1-ant"]
        suffix = ".png" if image_format == "png" else ".JPEG"
        assert sorted(os.listdir(root / "contrast" / "2" / "0-zebra")) == [f"1{suffix}", f"4{suffix}"]
        assert detect_layout(root) == "imagenet-c"
        images, labels = load_corruption_set(root, None, conditions)
        # Our own sets come back in data-set order with the data set's labels.
        assert np.array_equal(labels, dataset.labels)
        for corruption, severity in conditions:
            expected = corrupt_batch(dataset.images, corruption, severity)
            if image_format == "png":
                assert np.array_equal(images[(corruption, severity)], expected)
            else:
                assert np.abs(images[(corruption, severity)].astype(int) - expected).mean() < 3


def _mtimes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


def test_cifar_c_resume_regenerates_only_missing_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = small_dataset()
    arguments = dict(workers=1, progress=False, seed=1)
    root = write_corruption_set(
        dataset, tmp_path / "out", "cifar-c", ["gaussian_noise", "brightness", "contrast"], SEVERITIES, **arguments
    )
    original = {name: (root / f"{name}.npy").read_bytes() for name in ["gaussian_noise", "brightness", "contrast"]}
    before = _mtimes(root)

    os.remove(root / "brightness.npy")
    # Leftovers of a killed run: a half-assembled file and a half-written part.
    (root / "brightness.npy.partial").write_bytes(b"truncated")
    (root / ".parts" / "brightness").mkdir(parents=True)
    (root / ".parts" / "brightness" / "3.npy.partial").write_bytes(b"truncated")
    write_corruption_set(
        dataset, root, "cifar-c", ["gaussian_noise", "brightness", "contrast"], SEVERITIES, **arguments
    )
    after = _mtimes(root)
    assert (
        after["gaussian_noise.npy"] == before["gaussian_noise.npy"] and after["contrast.npy"] == before["contrast.npy"]
    )
    assert after["labels.npy"] == before["labels.npy"]
    assert (root / "brightness.npy").read_bytes() == original["brightness"]
    assert not (root / "brightness.npy.partial").exists() and not (root / ".parts").exists()

    # A run killed after two severities: no final file, two finished parts, which the re-run keeps.
    os.remove(root / "contrast.npy")
    commits = []
    real_commit = writer._NumpyPartSink.commit

    def commit_then_die(sink) -> None:
        if len(commits) == 2:
            raise KeyboardInterrupt
        real_commit(sink)
        commits.append(sink.path)

    monkeypatch.setattr(writer._NumpyPartSink, "commit", commit_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_corruption_set(dataset, root, "cifar-c", ["contrast"], SEVERITIES, **arguments)
    assert not (root / "contrast.npy").exists()
    kept = sorted(path.name for path in (root / ".parts" / "contrast").iterdir() if path.suffix == ".npy")
    assert kept == ["1.npy", "2.npy"]
    monkeypatch.setattr(writer._NumpyPartSink, "commit", real_commit)

    regenerated = []
    real_sink = writer._NumpyStackWriter.sink

    def recording_sink(writer, job, corruption: str, severity: int):
        regenerated.append(severity)
        return real_sink(writer, job, corruption, severity)

    monkeypatch.setattr(writer._NumpyStackWriter, "sink", recording_sink)
    write_corruption_set(dataset, root, "cifar-c", ["contrast"], SEVERITIES, **arguments)
    assert regenerated == [3, 4, 5]  # severities 1 and 2 were reused
    assert (root / "contrast.npy").read_bytes() == original["contrast"]
    assert read_manifest(root)["corruptions"] == ["gaussian_noise", "brightness", "contrast"]


def test_imagenet_c_resume_regenerates_only_missing_units(tmp_path: Path) -> None:
    dataset = small_dataset()
    arguments = dict(workers=1, progress=False, image_format="png")
    root = write_corruption_set(dataset, tmp_path / "out", "imagenet-c", ["gaussian_noise", "fog"], [1, 2], **arguments)
    before = _mtimes(root)
    removed = root / "fog" / "2"
    for path in sorted(removed.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    removed.rmdir()
    leftover = root / "gaussian_noise" / ".2.partial" / "0-zebra"
    leftover.mkdir(parents=True)
    (leftover / "000.png").write_bytes(b"truncated")
    write_corruption_set(dataset, root, "imagenet-c", ["gaussian_noise", "fog"], [1, 2], **arguments)
    after = _mtimes(root)
    unchanged = [name for name in before if not name.startswith("fog/2/")]
    assert all(after[name] == before[name] for name in unchanged)
    assert sorted(name for name in after if name.startswith("fog/2/")) == sorted(
        name for name in before if name.startswith("fog/2/")
    )
    assert not (root / "gaussian_noise" / ".2.partial").exists()
    images, _ = load_corruption_set(root, None, [("fog", 2)])
    assert np.array_equal(images[("fog", 2)], corrupt_batch(dataset.images, "fog", 2))


def test_writes_are_deterministic_across_worker_counts(tmp_path: Path) -> None:
    dataset = small_dataset()
    first = write_corruption_set(
        dataset, tmp_path / "a", "cifar-c", ["shot_noise"], SEVERITIES, seed=5, workers=1, progress=False
    )
    second = write_corruption_set(
        dataset, tmp_path / "b", "cifar-c", ["shot_noise"], SEVERITIES, seed=5, workers=2, progress=False
    )
    assert (first / "shot_noise.npy").read_bytes() == (second / "shot_noise.npy").read_bytes()
    assert (first / "labels.npy").read_bytes() == (second / "labels.npy").read_bytes()
    first_manifest, second_manifest = read_manifest(first), read_manifest(second)
    assert first_manifest == second_manifest


def test_sampled_subset_keeps_its_original_indices(tmp_path: Path) -> None:
    dataset = small_dataset()
    subset, indices = dataset.sample(3, seed=0)
    root = write_corruption_set(
        subset,
        tmp_path / "out",
        "imagenet-c",
        ["impulse_noise"],
        [3],
        workers=1,
        progress=False,
        image_format="png",
        indices=indices,
    )
    images, labels = load_corruption_set(root, None, [("impulse_noise", 3)])
    # Same pixels as the full set's images at those indices.
    assert np.array_equal(images[("impulse_noise", 3)], corrupt_batch(dataset.images, "impulse_noise", 3)[indices])
    assert np.array_equal(labels, dataset.labels[indices])
    assert json.loads((root / "manifest.json").read_text())["indices"] == indices.tolist()


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    with exclusive_lock(root / writer.LOCK_NAME, "held by this test"):
        with pytest.raises(UserError, match="another process is writing"):
            write_corruption_set(
                small_dataset(), root, "cifar-c", ["brightness"], SEVERITIES, workers=1, progress=False
            )


# ---------------------------------------------------------------- clean data set loaders


def test_cifar100_from_torchvision_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = random_images(3, 32, seed=2)
    rows = images.transpose(0, 3, 1, 2).reshape(3, -1)  # channel-major rows, as published
    with open(folder / "test", "wb") as handle:
        pickle.dump({b"data": rows, b"fine_labels": [5, 0, 99], b"coarse_labels": [1, 2, 3]}, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"class{index}" for index in range(100)], "coarse_label_names": []}, handle)
    assert "cifar100" in DATASETS
    dataset = load_dataset("cifar100", "test", tmp_path)
    assert dataset.name == "cifar100" and np.array_equal(dataset.images, images)
    assert dataset.labels.tolist() == [5, 0, 99] and len(dataset.classes) == 100
    with pytest.raises(UserError, match="CIFAR-100 not found"):
        load_dataset("cifar100", "test", tmp_path / "nothing")


def test_tiny_imagenet_validation_from_annotations(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    (root / "wnids.txt").parent.mkdir(parents=True)
    (root / "wnids.txt").write_text("n02124075\nn01443537\nn09999999\n")
    annotations = [
        ("val_0.JPEG", "n02124075"),
        ("val_1.JPEG", "n01443537"),
        ("val_10.JPEG", "n02124075"),
        ("val_2.JPEG", "n01443537"),
    ]
    for position, (file, _) in enumerate(annotations):
        save_image(root / "val" / "images" / file, smooth_image(64, 30 * position))
    Image.fromarray(smooth_image(64, 0)[..., 0]).save(root / "val" / "images" / "val_0.JPEG")  # greyscale, as some are
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"{file}\t{wnid}\t0\t0\t63\t63\n" for file, wnid in annotations)
    )
    dataset = load_dataset("tiny_imagenet", "test", tmp_path)
    assert dataset.classes == ["n01443537", "n02124075", "n09999999"]
    assert dataset.images.shape == (4, 64, 64, 3)
    # (class, file name) order, as an ImageFolder over Tiny-ImageNet-C.
    assert dataset.labels.tolist() == [0, 0, 1, 1]
    assert np.abs(dataset.images[0].astype(int) - smooth_image(64, 30)).mean() < 3  # val_1.JPEG
    assert np.abs(dataset.images[3].astype(int) - smooth_image(64, 60)).mean() < 3  # val_10.JPEG after val_0

    os.remove(root / "val" / "images" / "val_2.JPEG")
    with pytest.raises(UserError, match="names val_2.JPEG, which is missing"):
        load_dataset("tiny_imagenet", "test", root)


def test_imagenet_folder_resize_and_crop(tmp_path: Path) -> None:
    for wnid, count in [("n01443537", 1), ("n01440764", 2)]:
        for index in range(count):
            save_image(tmp_path / "val" / wnid / f"ILSVRC2012_val_{index:08d}.JPEG", smooth_image(300, 50)[:, :280])
    dataset = load_dataset("imagenet", "test", tmp_path)
    assert dataset.images.shape == (3, 224, 224, 3) and dataset.labels.tolist() == [0, 0, 1]
    assert dataset.classes == ["n01440764", "n01443537"]
    small = DATASETS.get("imagenet")(split="val", data_dir=tmp_path / "val", resize_size=73, crop_size=64)
    assert small.images.shape == (3, 64, 64, 3)
    (tmp_path / "val" / "n01500000").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        load_dataset("imagenet", "test", tmp_path)
