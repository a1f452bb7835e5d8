"""The model input contract: declared preprocessing (normalisation inside the model,
resize/crop before corruption), input groups, the channel rule, and class subsets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
import torchvision
from PIL import Image
from torch import Tensor, nn

import corruptions
from robustbench_lift.data.classes import imagenet_wnids
from robustbench_lift.data.geometry import Geometry
from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.inputs import with_preprocessing
from robustbench_lift.evaluation.suites import ModelEntry
from robustbench_lift.models.preprocessing import (
    LUMINANCE,
    ClassSubset,
    PreprocessedModel,
    Preprocessing,
    input_channels,
)
from robustbench_lift.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, load_pretrained
from robustbench_lift.run import runner
from robustbench_lift.run.config import RunConfig

# The file name torch.hub gives https://download.pytorch.org/models/resnet18-f37072fd.pth.
RESNET18_HUB_FILE = "resnet18-f37072fd.pth"


class Recorder(nn.Module):
    """Runs ``network`` and keeps a copy of every input batch it receives."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.network(x)


class TinyNet(nn.Module):
    """One convolution, global average pooling, a linear classifier."""

    def __init__(self, channels: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3)
        self.head = nn.Linear(4, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def write_wnid_folder(root: Path, wnids: list[str], per_class: int, seed: int = 0) -> None:
    """Random-texture JPEGs of assorted sizes under ``root/<wnid>/``."""
    rng = np.random.default_rng(seed)
    sizes = [(90, 120), (130, 70), (100, 100), (75, 160)]
    for wnid in wnids:
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            height, width = sizes[(number + len(wnid)) % len(sizes)]
            coarse = rng.integers(0, 256, (height // 10, width // 10, 3), dtype=np.uint8)
            pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
            Image.fromarray(pixels).save(root / wnid / f"{wnid}_{number}.JPEG", quality=90)


def to_float(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def normalise(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


# ---------------------------------------------------------------- the declaration


def test_preprocessing_declares_normalisation_and_geometry() -> None:
    declared = Preprocessing(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), resize=80, crop=64, interpolation="bicubic")
    assert declared.geometry == Geometry(resize=80, crop=(64, 64), interpolation="bicubic")
    assert Preprocessing(mean=(0.5,) * 3, std=(0.2,) * 3).geometry is None
    assert Preprocessing.from_mapping(declared.to_dict() | {"input": "words"}) == declared
    model = declared.wrap(TinyNet())
    x = torch.rand(2, 3, 64, 64)
    inner = model.model
    assert torch.allclose(model(x), inner(normalise(x, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))))
    for values, message in [
        ({"mean": (0.5,)}, "both mean and std"),
        ({"mean": (0.5, 0.5), "std": (0.2,)}, "2 values but std has 1"),
        ({"mean": (0.5,), "std": (0.0,)}, "std must be positive"),
        ({"crop": -3}, "crop must be positive"),
        ({"interpolation": "area"}, "unknown interpolation"),
    ]:
        with pytest.raises(UserError, match=message):
            Preprocessing(**values)


def test_torchvision_weights_and_timm_configs_give_their_transforms() -> None:
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    declared = Preprocessing.from_torchvision(weights)
    transform = weights.transforms()
    assert (declared.resize, declared.crop, declared.interpolation) == (232, (224, 224), "bilinear")
    assert declared.mean == pytest.approx(transform.mean) and declared.std == pytest.approx(transform.std)
    inception = Preprocessing.from_torchvision(torchvision.models.Inception_V3_Weights.IMAGENET1K_V1)
    assert (inception.resize, inception.crop) == (342, (299, 299))
    # timm: shorter side floor(size / crop_pct), centre crop size; squash at crop_pct 1 resizes.
    timm_config = {
        "input_size": (3, 288, 288),
        "crop_pct": 0.95,
        "interpolation": "bicubic",
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
    }
    from_timm = Preprocessing.from_timm_config(timm_config)
    assert (from_timm.resize, from_timm.crop, from_timm.interpolation) == (303, (288, 288), "bicubic")
    squash = Preprocessing.from_timm_config(timm_config | {"crop_pct": 1.0, "crop_mode": "squash"})
    assert squash.size == (288, 288) and squash.resize is None
    assert Preprocessing.from_timm_config({"mean": (0.1,) * 3, "std": (0.2,) * 3}).geometry is None


# ---------------------------------------------------------------- channels


def test_channel_rule() -> None:
    rgb = torch.rand(2, 3, 16, 16)
    grey_network = TinyNet(channels=1)
    assert input_channels(grey_network) == 1 and input_channels(nn.Sequential(nn.Flatten())) is None
    grey_model = with_preprocessing(ModelEntry("grey", grey_network, {})).model
    assert isinstance(grey_model, PreprocessedModel)
    luminance = (rgb * torch.tensor(LUMINANCE).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(grey_model(rgb), grey_network(luminance))
    # Grey data replicated to RGB (Fashion-MNIST) gives a 1-channel model its grey values.
    replicated = torch.rand(2, 1, 16, 16).expand(-1, 3, -1, -1)
    assert torch.allclose(grey_model(replicated), grey_network(replicated[:, :1]), atol=1e-6)
    # A plain 3-channel module without a declaration is left as it is.
    plain = TinyNet()
    assert with_preprocessing(ModelEntry("plain", plain, {})).model is plain
    with pytest.raises(UserError, match=r"^model four: TinyNet takes 4 input channels; .* not supported$"):
        with_preprocessing(ModelEntry("four", TinyNet(channels=4), {}))
    with pytest.raises(UserError, match="mean/std have 3 values but TinyNet takes 1 channels"):
        PreprocessedModel(TinyNet(channels=1), Preprocessing(mean=(0.5,) * 3, std=(0.2,) * 3))


def test_class_subset_restricts_logits_in_label_order() -> None:
    network = TinyNet(classes=1000)
    subset = ClassSubset(network, [7, 500, 999])
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(subset(x), network(x)[:, [7, 500, 999]])
    assert "index" not in subset.state_dict()


# ---------------------------------------------------------------- side by side in one run


@pytest.fixture
def hub_resnet18(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """torchvision:resnet18:IMAGENET1K_V1 from a fake hub cache holding random weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    torch.manual_seed(0)
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(
        torchvision.models.resnet18().state_dict(), tmp_path / "torch" / "hub" / "checkpoints" / RESNET18_HUB_FILE
    )
    return "torchvision:resnet18:IMAGENET1K_V1"


@pytest.mark.slow
def test_models_with_different_preprocessing_each_get_their_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_resnet18: str
) -> None:
    """A torchvision model with its weights' transforms (resize 256, crop 224, ImageNet
    mean/std, 1000 classes on a 3-wnid folder), a module declaring other preprocessing
    (bicubic resize 80, crop 64, its own mean/std) and a 1-channel module run in one run;
    each receives exactly its own preprocessing of the sampled files, corruptions are
    applied after the resize and crop, and each group's files are decoded once."""
    wnids = [imagenet_wnids()[index] for index in (2, 300, 998)]
    write_wnid_folder(tmp_path / "data" / "val", wnids, per_class=4)

    torchvision_model, metadata = load_pretrained(hub_resnet18)
    resnet = torchvision_model.model
    torchvision_model.model = Recorder(resnet)
    mine_network = TinyNet()
    mine = Recorder(mine_network)
    mine.preprocessing = Preprocessing(
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resize=80, crop=64, interpolation="bicubic"
    )
    grey = Recorder(TinyNet(channels=1))
    entries = [
        ModelEntry("tv", torchvision_model, metadata),
        ModelEntry("mine", mine, {"architecture": "tiny"}),
        ModelEntry("grey", grey, {"architecture": "tiny"}),
    ]
    monkeypatch.setattr(runner, "resolve_models", lambda names: entries)

    opened: list[Path] = []
    real_open = PIL.Image.open

    def recording_open(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(Path(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", recording_open)
    config = RunConfig(
        models=["tv", "mine", "grey"],
        dataset="imagenet",
        data_dir=str(tmp_path / "data"),
        sample_size=6,
        seed=1,
        suites=["corruption"],
        corruptions=["gaussian_noise"],
        severities=[2],
        profile="imagenet",
        workers=1,
        batch_size=64,
        device="cpu",
        output_dir=str(tmp_path / "runs"),
        run_name="side",
        model_processes=1,  # the models record what they see: keep them in this process
    )
    directory = runner.run_benchmark(config)
    monkeypatch.setattr(PIL.Image, "open", real_open)

    from robustbench_lift.data.datasets import load_dataset

    data = load_dataset("imagenet", "test", tmp_path / "data")
    indices = np.sort(np.random.default_rng(1).choice(len(data), size=6, replace=False))
    files = [data.paths[index] for index in indices]
    # Two groups (resnet18's transforms equal ImageNet's own 256/224; the 1-channel module
    # takes those too): each sampled file decoded once per group, nothing else opened.
    assert sorted(opened) == sorted(files * 2)

    # resnet18: exactly what its weights' transforms() make of each file.
    transform = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    expected = torch.stack([transform(real_open(path).convert("RGB")) for path in files])
    clean, corrupted = torchvision_model.model.seen
    assert clean.shape == (6, 3, 224, 224) and torch.allclose(clean, expected, atol=1e-5)
    # The corruption was applied to the 224-px crops, before normalisation.
    pixels = np.stack(
        [np.asarray(Geometry(resize=256, crop=224).apply(real_open(path).convert("RGB"))) for path in files]
    )
    noisy = corruptions.corrupt_many(pixels, [("gaussian_noise", 2)], profile="imagenet", seed=1, indices=indices)[
        ("gaussian_noise", 2)
    ]
    assert torch.allclose(corrupted, normalise(to_float(noisy), IMAGENET_MEAN, IMAGENET_STD), atol=1e-5)

    # The declared module: bicubic resize 80, crop 64, its mean/std; 3 classes as the folder.
    small = Geometry(resize=80, crop=64, interpolation="bicubic")
    small_pixels = np.stack([np.asarray(small.apply(real_open(path).convert("RGB"))) for path in files])
    # (The first input is one image: the output count of a module without metadata is probed.)
    assert mine.seen[0].shape == (1, 3, 64, 64) and mine.seen[1].shape == (6, 3, 64, 64)
    assert torch.allclose(mine.seen[1], normalise(to_float(small_pixels), (0.5,) * 3, (0.25,) * 3), atol=1e-6)
    # The 1-channel module: luminance of ImageNet's own 224 crops, no normalisation.
    luminance = (to_float(pixels) * torch.tensor(LUMINANCE).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert grey.seen[1].shape == (6, 1, 224, 224) and torch.allclose(grey.seen[1], luminance, atol=1e-6)

    # resnet18 predicts among the folder's 3 classes: its logits for those wnids, in label order.
    results = pd.read_csv(directory / "results.csv")
    labels = data.labels[indices]
    with torch.inference_mode():
        logits = resnet(normalise(to_float(pixels), IMAGENET_MEAN, IMAGENET_STD))[:, [2, 300, 998]]
    clean_row = results[(results["model"] == "tv") & (results["condition"] == "clean")].iloc[0]
    assert clean_row["error"] == pytest.approx(float((logits.argmax(1).numpy() != labels).mean()))
    assert (results["status"] == "ok").all() and len(results) == 6
    record = json.loads((directory / "run.json").read_text())
    assert record["models"]["mine"]["input"] == "resize 80, crop 64 (bicubic)"
    assert record["models"]["tv"]["input"] == record["models"]["grey"]["input"] == "resize 256, crop 224 (bilinear)"


# ---------------------------------------------------------------- class subsets in every suite


def test_a_1000_way_model_on_a_3_class_folder_in_every_suite(tmp_path: Path) -> None:
    """A 1000-way torchvision architecture (checkpoint spec) on an image folder of 3 wnids:
    clean, corruption, perturbation, shift and adversarial cells all evaluate it on its
    logits for those 3 classes."""
    wnids = [imagenet_wnids()[index] for index in (0, 281, 999)]
    write_wnid_folder(tmp_path / "data", wnids, per_class=4, seed=2)
    torch.manual_seed(0)
    network = torchvision.models.mobilenet_v3_small().eval()
    torch.save(network.state_dict(), tmp_path / "mobilenet.pth")
    config = RunConfig(
        models=[f"checkpoint:mobilenet_v3_small:{tmp_path / 'mobilenet.pth'}"],
        dataset="image_folder",
        data_dir=str(tmp_path / "data"),
        sample_size=8,
        suites=["corruption", "perturbation", "shift", "adversarial"],
        corruptions=["contrast"],
        severities=[3],
        perturbations=["brightness"],
        perturbation_sample_size=3,
        attacks=["fgsm"],
        attack_sample_size=6,
        workers=1,
        batch_size=32,
        device="cpu",
        output_dir=str(tmp_path / "runs"),
        run_name="subset",
    )
    directory = runner.run_benchmark(config)
    results = pd.read_csv(directory / "results.csv")
    assert (results["status"] == "ok").all()
    assert set(results["suite"]) == {"clean", "corruption", "perturbation", "shift", "adversarial"}

    from robustbench_lift.data.datasets import load_dataset

    data = load_dataset("image_folder", "test", tmp_path / "data")
    sample, _ = data.sample(8, seed=0)
    with torch.inference_mode():
        logits = network(normalise(to_float(sample.images), IMAGENET_MEAN, IMAGENET_STD))
    predictions = logits[:, [0, 281, 999]].argmax(1).numpy()
    clean = results[results["condition"] == "clean"].iloc[0]
    assert clean["error"] == pytest.approx(float((predictions != sample.labels).mean()))
    adversarial = results[results["suite"] == "adversarial"]
    clean_accuracy = float((predictions[:6] == sample.labels[:6]).mean())
    assert adversarial["robust_accuracy"].max() <= clean_accuracy + 1e-9


def test_a_model_for_other_classes_is_refused_in_one_line(tmp_path: Path) -> None:
    write_wnid_folder(tmp_path / "data", ["cats", "dogs"], per_class=2)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "m.pth")
    config = RunConfig(
        models=[f"checkpoint:mobilenet_v3_small:{tmp_path / 'm.pth'}"],
        dataset="image_folder",
        data_dir=str(tmp_path / "data"),
        suites=["shift"],
        output_dir=str(tmp_path / "runs"),
        device="cpu",
    )
    with pytest.raises(
        UserError,
        match=r"^model checkpoint:mobilenet_v3_small:\S+ predicts 1000 classes but image_folder has 2; .*ImageNet wnids$",
    ):
        runner.run_benchmark(config)
