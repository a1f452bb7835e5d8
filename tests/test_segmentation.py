"""Tests of dense prediction: garment scenes, the VOC and Cityscapes readers, the pooling-pair
encoder-decoders (LiftUpPool with the encoder's detail bands), segmentation metrics on
hand-built arrays, and the training of a segmenter.

The VOC and Cityscapes fixtures are written into tmp_path in the published layouts, a few
tiny images large.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_lift.data.segmentation import (
    CITYSCAPES_CLASSES,
    GARMENT_SCENE_CLASSES,
    VOC_CLASSES,
    CityscapesSegmentation,
    GarmentPlacement,
    GarmentSceneConfig,
    SegmentationDataset,
    VocSegmentation,
    compose_garment_scene,
    generate_garment_scenes,
    load_segmentation_dataset,
)
from robustbench_lift.errors import UserError
from robustbench_lift.metrics.segmentation import (
    bootstrap_miou_interval,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    per_image_confusion,
    pixel_accuracy,
    pixel_flip_share,
    sequence_pixel_flip_share,
)
from robustbench_lift.models.segmentation import RESAMPLERS, LiftResampler, SegNet, build_segmenter, load_segmenter
from robustbench_lift.nn.lifting import LiftDownPool, LiftUpPool

needs_data = pytest.mark.needs_data  # skipped by conftest when Fashion-MNIST is missing
ZOO_KINDS = ["max", "avg", "skip", "blur", "lift", "haar"]
LIFTING_KINDS = ["lift", "haar", "lift53"]


# ---------------------------------------------------------------- garment scenes


@needs_data
def test_same_seed_gives_the_same_bytes_and_another_seed_other_scenes() -> None:
    first = generate_garment_scenes(6, "train", seed=3)
    again = generate_garment_scenes(6, "train", seed=3)
    other = generate_garment_scenes(6, "train", seed=4)
    assert first.images.tobytes() == again.images.tobytes()
    assert first.labels.tobytes() == again.labels.tobytes()
    assert first.images.tobytes() != other.images.tobytes()
    assert first.images.shape == (6, 64, 64, 3) and first.images.dtype == np.uint8
    assert first.labels.shape == (6, 64, 64) and first.labels.dtype == np.uint8
    assert first.classes == GARMENT_SCENE_CLASSES and len(first.classes) == 11


@needs_data
def test_any_subset_of_scenes_is_reproducible_alone() -> None:
    full = generate_garment_scenes(8, "test", seed=1)
    subset = generate_garment_scenes(split="test", seed=1, indices=[6, 2])
    np.testing.assert_array_equal(subset.images, full.images[[6, 2]])
    np.testing.assert_array_equal(subset.labels, full.labels[[6, 2]])


@needs_data
def test_train_and_test_scenes_differ_and_labels_are_garment_classes() -> None:
    train = generate_garment_scenes(20, "train", seed=0)
    test = generate_garment_scenes(20, "test", seed=0)
    assert train.images.tobytes() != test.images.tobytes()
    for scenes in (train, test):
        values = np.unique(scenes.labels)
        assert values.min() == 0 and values.max() <= 10 and len(values) > 3
        covered = (scenes.labels > 0).mean(axis=(1, 2))
        assert (covered > 0.03).all() and (covered < 0.9).all()
        scenes.check()


@needs_data
def test_background_overlaps_garments_in_intensity() -> None:
    """The background is not separable from garments by brightness alone."""
    scenes = generate_garment_scenes(40, "train", seed=0)
    grey = scenes.images.mean(axis=-1)
    garment, background = grey[scenes.labels > 0], grey[scenes.labels == 0]
    low, high = np.percentile(garment, [10, 90])
    assert ((background >= low) & (background <= high)).mean() > 0.5


def test_mask_threshold_and_later_garments_occlude_earlier_ones() -> None:
    """Hand-built placements: the mask keeps pixels above 10 % of the garment's maximum and
    the garment drawn later owns the pixels where both are."""
    square = np.zeros((28, 28), dtype=np.uint8)
    square[4:24, 4:24] = 200
    square[2:4, 4:24] = 15  # a faint halo below the threshold (0.1 * 200 = 20)
    bar = np.zeros((28, 28), dtype=np.uint8)
    bar[:, 10:18] = 100
    garments = np.stack([square, bar])
    classes = np.array([4, 8])
    background = np.full((28, 28, 3), 50.0)
    placement = dict(scale=28, mirror=False, contrast=1.0, color=(1.0, 1.0, 1.0), top=0, left=0)
    image, label = compose_garment_scene(
        background, garments, classes, [GarmentPlacement(0, **placement), GarmentPlacement(1, **placement)], 0.1
    )
    halo = np.r_[4:10, 18:24]  # the halo's columns outside the bar
    assert (label[2:4, halo] == 0).all() and (image[2:4, halo] == 50).all()  # halo stays background
    assert (label[4:24, 4:10] == 5).all() and (image[4:24, 4:10] == 200).all()  # square: class 4 + 1
    assert (label[:, 10:18] == 9).all() and (image[:, 10:18] == 100).all()  # bar drawn later: on top
    assert (label[0:2, 0:4] == 0).all()
    _, reversed_label = compose_garment_scene(
        background, garments, classes, [GarmentPlacement(1, **placement), GarmentPlacement(0, **placement)], 0.1
    )
    assert (reversed_label[4:24, 10:18] == 5).all() and (reversed_label[0:4, 10:18] == 9).all()


def test_scene_config_rejects_impossible_geometry() -> None:
    with pytest.raises(UserError, match="scale"):
        GarmentSceneConfig(size=32, max_scale=40)
    with pytest.raises(UserError, match="garments per scene"):
        GarmentSceneConfig(min_garments=3, max_garments=2)


# ---------------------------------------------------------------- VOC and Cityscapes layouts


def _palette_png(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1:21] = np.random.default_rng(0).integers(0, 256, (20, 3))  # VOC-like colors, not the indices
    palette[255] = (224, 224, 192)
    image.putpalette(palette.ravel().tolist())
    image.save(path)


def _image(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _label_map(height: int, width: int, classes: list[int], seed: int) -> np.ndarray:
    label = np.random.default_rng(seed).choice(classes, size=(height, width)).astype(np.uint8)
    label[0, :] = 255  # a boundary row to ignore
    return label


def write_voc(root: Path, sizes: dict[str, tuple[int, int]], splits: dict[str, list[str]]) -> dict[str, np.ndarray]:
    voc = root / "VOCdevkit" / "VOC2012"
    labels = {}
    for index, (name, (height, width)) in enumerate(sizes.items()):
        _image(voc / "JPEGImages" / f"{name}.jpg", height, width, index)
        labels[name] = _label_map(height, width, [0, 1, 15, 20], index)
        _palette_png(voc / "SegmentationClass" / f"{name}.png", labels[name])
    for split, names in splits.items():
        path = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{name}\n" for name in names))
    return labels


def write_cityscapes(root: Path, split: str = "val") -> dict[str, np.ndarray]:
    labels = {}
    for index, (city, name) in enumerate([("aachen", "aachen_000000_000019"), ("bochum", "bochum_000000_000313")]):
        _image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", 12, 24, index)
        labels[name] = _label_map(12, 24, [0, 7, 13, 18], index)
        path = root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels[name], mode="L").save(path)
    return labels


def test_voc_layout_reads_palette_indices_end_to_end(tmp_path: Path) -> None:
    labels = write_voc(tmp_path, {"2007_000032": (16, 20), "2007_000039": (16, 20), "2008_000001": (10, 14)},
                       {"val": ["2007_000032", "2007_000039"], "train": ["2008_000001"]})  # fmt: skip
    voc = VocSegmentation(tmp_path, "val")
    assert len(voc) == 2 and voc.classes == VOC_CLASSES and len(voc.classes) == 21
    image, label = voc.read(1)
    assert image.shape == (16, 20, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(label, labels["2007_000039"])  # palette indices, not colors
    dataset = voc.load()
    assert isinstance(dataset, SegmentationDataset) and dataset.images.shape == (2, 16, 20, 3)
    fitted = load_segmentation_dataset("voc2012", "train", tmp_path, size=(8, 6))
    sample_image, sample_label = fitted.read(0)
    assert sample_image.shape == (8, 6, 3) and sample_label.shape == (8, 6)
    assert set(np.unique(sample_label)) <= {0, 1, 15, 20, 255}  # nearest: no blended class ids


def test_cityscapes_layout_reads_train_ids_end_to_end(tmp_path: Path) -> None:
    labels = write_cityscapes(tmp_path)
    cityscapes = CityscapesSegmentation(tmp_path, "val", size=6, fit="resize_crop")
    assert len(cityscapes) == 2 and cityscapes.classes == CITYSCAPES_CLASSES and len(cityscapes.classes) == 19
    raw = CityscapesSegmentation(tmp_path, "val")
    np.testing.assert_array_equal(raw.read(1)[1], labels["bochum_000000_000313"])  # (city, file) order
    dataset = cityscapes.load([1, 0])
    assert dataset.images.shape == (2, 6, 6, 3) and dataset.labels.shape == (2, 6, 6)
    assert set(np.unique(dataset.labels)) <= {0, 7, 13, 18, 255}


def test_fit_modes_give_the_requested_size_and_crop_pads_with_ignore(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": (10, 14)}, {"val": ["a"]})
    for fit in ("resize", "resize_crop", "crop"):
        image, label = VocSegmentation(tmp_path, "val", size=(12, 8), fit=fit).read(0)
        assert image.shape == (12, 8, 3) and label.shape == (12, 8)
    _, padded = VocSegmentation(tmp_path, "val", size=(12, 8), fit="crop").read(0)
    assert (padded[0] == 255).all() and (padded[-1] == 255).all()  # 10 rows -> 12: one padded row each side
    with pytest.raises(UserError, match="fit mode"):
        VocSegmentation(tmp_path, "val", size=8, fit="stretch")


def _one_line_error(call) -> str:
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_voc_input_ends_in_one_line_user_errors(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": (10, 14), "b": (10, 14)}, {"val": ["a", "b"]})
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    assert "split list" in _one_line_error(lambda: VocSegmentation(tmp_path, "trainaug"))
    bad = np.zeros((10, 14), dtype=np.uint8)
    bad[3, 3] = 30  # neither a VOC class (0..20) nor 255
    _palette_png(voc / "SegmentationClass" / "a.png", bad)
    assert "class 30" in _one_line_error(lambda: VocSegmentation(tmp_path, "val").read(0))
    _palette_png(voc / "SegmentationClass" / "b.png", np.zeros((9, 14), dtype=np.uint8))
    assert "14x9" in _one_line_error(lambda: VocSegmentation(tmp_path, "val").read(1))
    Image.fromarray(np.zeros((10, 14, 3), dtype=np.uint8)).save(voc / "SegmentationClass" / "b.png")
    assert "mode-RGB" in _one_line_error(lambda: VocSegmentation(tmp_path, "val").read(1))
    (voc / "JPEGImages" / "b.jpg").unlink()
    assert "b.jpg is missing" in _one_line_error(lambda: VocSegmentation(tmp_path, "val"))
    assert "not a PASCAL VOC" in _one_line_error(lambda: VocSegmentation(tmp_path / "nowhere", "val"))


def test_bad_cityscapes_input_ends_in_one_line_user_errors(tmp_path: Path) -> None:
    write_cityscapes(tmp_path)
    assert "leftImg8bit/train" in _one_line_error(lambda: CityscapesSegmentation(tmp_path, "train"))
    label = tmp_path / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png"
    Image.fromarray(np.full((12, 24), 19, dtype=np.uint8), mode="L").save(label)  # trainIds stop at 18
    assert "class 19" in _one_line_error(lambda: CityscapesSegmentation(tmp_path, "val").read(0))
    label.rename(label.with_name(label.name.replace("labelTrainIds", "labelIds")))
    assert "createTrainIdLabelImgs" in _one_line_error(lambda: CityscapesSegmentation(tmp_path, "val"))


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("kind", list(RESAMPLERS))
def test_every_pooling_kind_builds_and_gives_per_pixel_logits(kind: str) -> None:
    torch.manual_seed(0)
    model = build_segmenter(kind, num_classes=5, mean=[0.5] * 3, std=[0.25] * 3, widths=(4, 8, 8)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5, 32, 32)
        assert model(torch.rand(1, 3, 21, 30)).shape == (1, 5, 21, 30)  # odd sizes come back whole


def _identity_stages(model: SegNet) -> SegNet:
    model.encoder = torch.nn.ModuleList(torch.nn.Identity() for _ in model.encoder)
    model.decoder = torch.nn.ModuleList(torch.nn.Identity() for _ in model.decoder)
    model.bottleneck = torch.nn.Identity()
    return model


@pytest.mark.parametrize("kind", LIFTING_KINDS)
@pytest.mark.parametrize("low_band", ["LL", "sum"])
@pytest.mark.parametrize("size", [(32, 32), (20, 26)])
def test_lifting_encoder_down_then_decoder_up_reproduces_the_input(
    kind: str, low_band: str, size: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    model = _identity_stages(SegNet(3, kind, {"low_band": low_band}, widths=(4, 4, 4))).double()
    for parameter in model.parameters():  # random P/U, not the initialisation, must invert too
        torch.nn.init.normal_(parameter, std=0.5)
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    torch.testing.assert_close(model.forward_features(x), x, rtol=0, atol=1e-12)


def test_lift_decoder_runs_liftuppool_of_the_encoder_layer_with_its_detail_bands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model = SegNet(4, "lift", widths=(4, 8, 8)).eval()
    resamplers = list(model.resamplers)
    assert all(isinstance(r, LiftResampler) and isinstance(r.down_pool, LiftDownPool) for r in resamplers)
    assert all(isinstance(r.up_pool, LiftUpPool) and r.up_pool.down is r.down_pool for r in resamplers)
    x = torch.rand(2, 3, 32, 32)
    calls = []
    original = LiftUpPool.forward

    def counting(self, *bands, **kwargs):
        calls.append(self.down)
        return original(self, *bands, **kwargs)

    monkeypatch.setattr(LiftUpPool, "forward", counting)
    with torch.no_grad():
        reference = model(x)
    assert calls == [r.down_pool for r in reversed(resamplers)]  # each up step inverts its own down layer

    # The same encoder (LL goes on), but the decoder gets all-zero detail bands.
    for resampler in resamplers:
        real_down = resampler.down

        def zero_details(features, real_down=real_down):
            pooled, (low_high, high_low, high_high, size) = real_down(features)
            return pooled, (torch.zeros_like(low_high), torch.zeros_like(high_low), torch.zeros_like(high_high), size)

        monkeypatch.setattr(resampler, "down", zero_details)
    with torch.no_grad():
        without_details = model(x)
    assert (without_details - reference).abs().max() > 1e-3


def test_lift_output_depends_on_every_stored_detail_band() -> None:
    torch.manual_seed(0)
    model = SegNet(4, "lift", widths=(4, 8, 8)).eval()
    captured = []
    for resampler in model.resamplers:
        real_down = resampler.down

        def keep(features, real_down=real_down):
            pooled, (low_high, high_low, high_high, size) = real_down(features)
            bands = [band.detach().requires_grad_() for band in (low_high, high_low, high_high)]
            captured.extend(bands)
            return pooled, (*bands, size)

        resampler.down = keep
    model(torch.rand(1, 3, 16, 16)).square().sum().backward()
    assert len(captured) == 9
    assert all(band.grad is not None and band.grad.abs().sum() > 0 for band in captured)


def test_lift_state_dict_holds_each_lifting_parameter_once(tmp_path: Path) -> None:
    from robustbench_lift.models.checkpoints import save_checkpoint

    model = build_segmenter("lift", 11, mean=[0.5] * 3, std=[0.25] * 3, widths=(4, 8, 8)).eval()
    keys = list(model.state_dict())
    assert not any("up_pool" in key for key in keys) and len(keys) == len(set(keys))
    path = tmp_path / "lift.safetensors"
    metadata = {"task": "segmentation", "architecture": "segnet_small", "architecture_options": {"widths": [4, 8, 8]},
                "pooling": "lift", "pooling_options": {}, "num_classes": 11,
                "preprocessing": {"mean": [0.5] * 3, "std": [0.25] * 3}}  # fmt: skip
    save_checkpoint(model, metadata, path)
    loaded, read = load_segmenter(path, expect={"pooling": "lift"})
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert read["pooling"] == "lift"


def test_haar_encoder_passes_on_the_2x2_average() -> None:
    """With low_band LL, the haar encoder pools like avg; only the decoders differ."""
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    pooled, _ = LiftResampler(3, "haar").double().down(x)
    torch.testing.assert_close(pooled, torch.nn.functional.avg_pool2d(x, 2), rtol=0, atol=1e-12)


def test_unknown_pooling_or_option_is_a_user_error() -> None:
    with pytest.raises(UserError, match="segmentation pooling kind"):
        build_segmenter("median")
    with pytest.raises(UserError, match="no option 'combine'"):
        build_segmenter("lift", pooling_options={"combine": "sum"})
    with pytest.raises(UserError, match="low_band"):
        build_segmenter("haar", pooling_options={"low_band": "HH"})


# ---------------------------------------------------------------- metrics


def test_confusion_iou_miou_and_pixel_accuracy_on_hand_built_maps() -> None:
    labels = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    predictions = np.array([[0, 1, 1, 1], [2, 0, 3, 0]])
    confusion = confusion_matrix(labels, predictions, num_classes=5)
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[0, 0] = expected[0, 1] = 1
    expected[1, 1] = 2
    expected[2, 2] = expected[2, 0] = 1
    np.testing.assert_array_equal(confusion, expected)  # the two 255 pixels count nowhere
    # class 0: TP 1, FP 1 (a 2 called 0), FN 1 -> 1/3; class 1: 2/3; class 2: 1/2; 3 and 4 absent.
    iou = iou_per_class(confusion)
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(iou[3]) and np.isnan(iou[4])  # 3 is predicted only on an ignored pixel
    assert mean_iou(confusion) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert pixel_accuracy(confusion) == pytest.approx(4 / 6)


def test_a_class_only_predicted_counts_in_miou_with_iou_zero() -> None:
    labels = np.array([[0, 0, 0, 0]])
    predictions = np.array([[0, 0, 0, 2]])
    confusion = confusion_matrix(labels, predictions, 3)
    np.testing.assert_allclose(iou_per_class(confusion), [3 / 4, np.nan, 0.0])
    assert mean_iou(confusion) == pytest.approx(3 / 8)


def test_iou_is_accumulated_over_the_set_not_averaged_per_image() -> None:
    labels = np.array([[[1, 1, 1, 1]], [[1, 0, 0, 0]]])
    predictions = np.array([[[1, 1, 1, 1]], [[0, 0, 0, 0]]])
    per_image = per_image_confusion(labels, predictions, 2)
    np.testing.assert_array_equal(per_image.sum(axis=0), confusion_matrix(labels, predictions, 2))
    whole = per_image.sum(axis=0)
    assert iou_per_class(whole)[1] == pytest.approx(4 / 5)  # not the mean of 1 and 0
    np.testing.assert_allclose(mean_iou(per_image), [1.0, 0.5 * (3 / 4 + 0.0)])


def test_bootstrap_interval_is_seeded_and_collapses_on_identical_images() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (30, 8, 8))
    predictions = np.where(rng.random((30, 8, 8)) < 0.7, labels, rng.integers(0, 3, (30, 8, 8)))
    per_image = per_image_confusion(labels, predictions, 3)
    low, high = bootstrap_miou_interval(per_image, 500, seed=1)
    assert (low, high) == bootstrap_miou_interval(per_image, 500, seed=1)
    assert low < mean_iou(per_image.sum(axis=0)) < high and high - low < 0.2
    same = np.repeat(per_image[:1], 10, axis=0)
    assert bootstrap_miou_interval(same, 200) == pytest.approx((mean_iou(same[0]),) * 2)


def test_pixel_flip_share_between_frames_and_over_sequences() -> None:
    first = np.array([[0, 1, 2, 3]])
    second = np.array([[0, 1, 0, 0]])
    assert pixel_flip_share(second, first) == pytest.approx(0.5)
    labels = np.array([[0, 1, 255, 255]])
    assert pixel_flip_share(second, first, labels) == 0.0  # the flips sit on ignored pixels
    frames = np.array([[[[0, 0]], [[0, 1]], [[1, 1]]]])  # 1 sequence x 3 frames x 1 x 2
    assert sequence_pixel_flip_share(frames, noise=True) == pytest.approx(3 / 4)  # vs frame 1: 1 + 2 flips
    assert sequence_pixel_flip_share(frames, noise=False) == pytest.approx(2 / 4)  # consecutive: 1 + 1
    assert sequence_pixel_flip_share(frames, noise=False, difficulty=2) == pytest.approx(2 / 2)


# ---------------------------------------------------------------- training


@needs_data
@pytest.mark.slow
def test_training_writes_a_loadable_checkpoint_with_curves_and_resumes(tmp_path: Path) -> None:
    from robustbench_lift.training_segmentation import SegmentationTrainingConfig, train_segmentation_zoo

    base = SegmentationTrainingConfig(
        widths=(4, 8, 8), train_scenes=48, validation_scenes=8, test_scenes=8, epochs=2, batch_size=16
    )
    reports = train_segmentation_zoo(["lift", "max"], [0], tmp_path, base, jobs=1, cache_dir=tmp_path / "cache")
    assert [report["status"] for report in reports] == ["trained", "trained"]
    model, metadata = load_segmenter(tmp_path / "garment_scenes-segnet_small-lift-seed0.safetensors")
    assert metadata["task"] == "segmentation" and metadata["pooling"] == "lift"
    assert len(metadata["curve"]["validation_miou"]) == 2 and len(metadata["curve"]["train_loss"]) == 2
    assert 0 <= metadata["clean_test_miou"] <= 1 and metadata["scene_generator"]["train_scenes"] == 48
    assert metadata["training"]["detail_weight"] > 0  # learned lifting trains with its regularisers
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 11, 64, 64)
    again = train_segmentation_zoo(["lift", "max"], [0], tmp_path, base, jobs=1, cache_dir=tmp_path / "cache")
    assert [report["status"] for report in again] == ["exists", "exists"]
