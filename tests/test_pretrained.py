"""Pretrained-model specs: every weights file is built here in tmp_path (no network, no hub)."""

from __future__ import annotations

import copy
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from robustbench_lift.errors import CheckpointError, UserError
from robustbench_lift.models import NormalizedModel
from robustbench_lift.models.preprocessing import PreprocessedModel, Preprocessing
from robustbench_lift.models.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPECS,
    describe_spec,
    load_pretrained,
    parse_spec,
    spec_table,
)
from robustbench_lift.nn.swap import swap_pooling

SMALL_INPUT = (3, 64, 64)
# The name torch.hub.load_state_dict_from_url gives https://download.pytorch.org/models/resnet18-f37072fd.pth.
RESNET18_HUB_FILE = "resnet18-f37072fd.pth"


def _reference(network: nn.Module) -> nn.Module:
    return NormalizedModel(network, IMAGENET_MEAN, IMAGENET_STD).eval()


def _images(count: int = 2) -> torch.Tensor:
    return torch.rand(count, *SMALL_INPUT, generator=torch.Generator().manual_seed(0))


def _assert_same_outputs(loaded: nn.Module, reference: nn.Module) -> None:
    images = _images()
    with torch.no_grad():
        assert torch.equal(loaded(images), reference(images))


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake torch hub cache: TORCH_HOME points into tmp_path, and no set_dir overrides it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
    return tmp_path / "torch" / "hub"


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


@pytest.fixture(scope="module")
def resnet18_file(resnet18: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(resnet18.state_dict(), path)
    return path


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.slow
def test_named_torchvision_weights_load_offline_from_the_hub_cache(
    hub_dir: Path, resnet18: nn.Module, resnet18_file: Path
) -> None:
    (hub_dir / "checkpoints").mkdir(parents=True)
    (hub_dir / "checkpoints" / RESNET18_HUB_FILE).write_bytes(resnet18_file.read_bytes())
    model, metadata = load_pretrained("torchvision:resnet18:IMAGENET1K_V1", input_size=SMALL_INPUT)
    assert not model.training and isinstance(model, PreprocessedModel)
    _assert_same_outputs(model, _reference(resnet18))
    # The weights' transforms() are declared: resize 256, centre crop 224, bilinear.
    assert model.preprocessing == Preprocessing(
        IMAGENET_MEAN, IMAGENET_STD, resize=256, crop=224, interpolation="bilinear"
    )
    assert metadata["architecture"] == "resnet18"
    assert metadata["pooling"] == "max" and metadata["pooling_options"] == {}
    assert metadata["num_classes"] == 1000 and metadata["dataset"] == "imagenet"
    assert metadata["source"] == str(hub_dir / "checkpoints" / RESNET18_HUB_FILE)
    assert metadata["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert metadata["preprocessing"]["mean"] == pytest.approx(IMAGENET_MEAN)
    assert metadata["preprocessing"]["std"] == pytest.approx(IMAGENET_STD)
    assert "224" in metadata["preprocessing"]["input"]
    assert (metadata["preprocessing"]["resize"], metadata["preprocessing"]["crop"]) == (256, [224, 224])
    # DEFAULT is torchvision's alias for the same file.
    assert load_pretrained("torchvision:resnet18:DEFAULT")[1]["source"] == metadata["source"]
    assert "present" in describe_spec("torchvision:resnet18:IMAGENET1K_V1")


def test_missing_hub_file_names_the_path_and_the_download(hub_dir: Path) -> None:
    with pytest.raises(UserError) as error:
        load_pretrained("torchvision:resnet18:IMAGENET1K_V1")
    message = _one_line(error)
    assert str(hub_dir / "checkpoints" / RESNET18_HUB_FILE) in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "missing" in describe_spec("torchvision:resnet18:IMAGENET1K_V1")


def test_explicit_weights_file(resnet18: nn.Module, resnet18_file: Path) -> None:
    model, metadata = load_pretrained(f"torchvision:resnet18:{resnet18_file}", input_size=SMALL_INPUT)
    _assert_same_outputs(model, _reference(resnet18))
    assert metadata["source"] == str(resnet18_file) and metadata["weights"] is None


@pytest.mark.slow
@pytest.mark.parametrize("nesting", ["state_dict", "model"])
def test_nested_checkpoints_with_module_prefixes(nesting: str, resnet18: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "trained.pt"
    state = {f"module.{key}": value for key, value in resnet18.state_dict().items()}
    torch.save({nesting: state, "epoch": 90}, path)
    model, metadata = load_pretrained(f"checkpoint:resnet18:{path}")
    _assert_same_outputs(model, _reference(resnet18))
    assert metadata["pooling"] == "max" and metadata["library"] == "torchvision"


def test_safetensors_checkpoint(resnet18: nn.Module, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "resnet18.safetensors"
    save_file({key: value.contiguous() for key, value in resnet18.state_dict().items()}, str(path))
    model, _ = load_pretrained(f"checkpoint:resnet18:{path}")
    _assert_same_outputs(model, _reference(resnet18))


@pytest.mark.slow
def test_swap_then_load_reproduces_a_blur_checkpoint(resnet18: nn.Module, tmp_path: Path) -> None:
    swapped, _ = swap_pooling(resnet18, "blur", input_size=SMALL_INPUT, filter_size=5)
    path = tmp_path / "resnet18-blur.pt"
    torch.save(swapped.state_dict(), path)
    model, metadata = load_pretrained(
        f"checkpoint:resnet18:{path}", pooling="blur", pooling_options={"filter_size": 5}, input_size=SMALL_INPUT
    )
    _assert_same_outputs(model, _reference(swapped))
    assert metadata["pooling"] == "blur" and metadata["pooling_options"] == {"filter_size": 5}
    assert metadata["swapped_layers"] == ["maxpool"]
    # The same request written in the spec itself.
    model, _ = load_pretrained(f"checkpoint:resnet18:pooling=blur:pooling.filter_size=5:{path}", input_size=SMALL_INPUT)
    _assert_same_outputs(model, _reference(swapped))
    with pytest.raises(CheckpointError) as error:
        load_pretrained(f"checkpoint:resnet18:{path}")
    assert "pooling=<kind>" in _one_line(error)
    with pytest.raises(CheckpointError) as error:  # filter 3 vs the file's 5: a shape mismatch
        load_pretrained(f"checkpoint:resnet18:pooling=blur:{path}", input_size=SMALL_INPUT)
    assert "shape" in _one_line(error)


@pytest.mark.slow
def test_swap_includes_strided_convolutions_when_there_is_no_pooling(tmp_path: Path) -> None:
    torch.manual_seed(0)
    swapped, _ = swap_pooling(
        torchvision.models.mobilenet_v2().eval(), "blur", input_size=SMALL_INPUT, include_strided_convolutions=True
    )
    path = tmp_path / "mobilenet_v2-blur.pt"
    torch.save(swapped.state_dict(), path)
    model, metadata = load_pretrained(f"checkpoint:mobilenet_v2:pooling=blur:{path}", input_size=SMALL_INPUT)
    _assert_same_outputs(model, _reference(swapped))
    assert len(metadata["swapped_layers"]) == 5
    unswapped_path = tmp_path / "mobilenet_v2.pt"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), unswapped_path)
    assert load_pretrained(f"checkpoint:mobilenet_v2:{unswapped_path}")[1]["pooling"] == "skip"


@pytest.mark.slow
def test_legacy_densenet_file_without_batch_norm_counters(tmp_path: Path) -> None:
    """torchvision's DenseNet files predate torch 0.4.1: 'norm.1'-style keys and no num_batches_tracked."""
    torch.manual_seed(0)
    network = torchvision.models.densenet121().eval()
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value
        for key, value in network.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save(legacy, path)
    model, metadata = load_pretrained(f"torchvision:densenet121:{path}")
    _assert_same_outputs(model, _reference(network))
    assert metadata["pooling"] == "max+avg"


@pytest.mark.slow
def test_antialiased_model_from_a_weights_file(tmp_path: Path) -> None:
    import antialiased_cnns

    torch.manual_seed(0)
    network = antialiased_cnns.resnet18(pretrained=False, filter_size=3).eval()
    path = tmp_path / "resnet18_lpf3.pth"
    torch.save({"state_dict": network.state_dict()}, path)  # nested, as the package's release files are
    model, metadata = load_pretrained(f"antialiased:resnet18:filter_size=3:{path}")
    _assert_same_outputs(model, _reference(network))
    assert metadata["pooling"] == "blur" and metadata["pooling_options"] == {"filter_size": 3}
    assert metadata["library"] == "antialiased_cnns"
    with pytest.raises(CheckpointError) as error:  # default filter_size is 4
        load_pretrained(f"antialiased:resnet18:{path}")
    _one_line(error)
    with pytest.raises(UserError, match="already have their own pooling"):
        load_pretrained(f"antialiased:resnet18:{path}", pooling="lift")


def test_weights_of_another_architecture_are_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        load_pretrained(f"torchvision:resnet18:{path}")
    message = _one_line(error)
    assert "does not fit" in message and "pooling=<kind>" not in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hub:resnet18:IMAGENET1K_V1", "unknown model spec source 'hub'"),
        ("torchvision:resnet81:IMAGENET1K_V1", "unknown torchvision architecture 'resnet81'"),
        ("torchvision:resnet18:IMAGENET9K_V9", "has no weights 'IMAGENET9K_V9'"),
        ("antialiased:resnet7:x.pth", "unknown antialiased_cnns architecture"),
        ("torchvision:resnet18", "malformed model spec"),
        ("checkpoint:resnet18:filter_size=3:x.pth", "no option 'filter_size'"),
        ("checkpoint:resnet18:pooling=wavelet:x.pth", "unknown pooling kind 'wavelet'"),
        ("checkpoint:resnet18:pooling.filter_size=5:x.pth", "need a pooling kind"),
        ("antialiased:resnet18:filter_size=9:x.pth", "filter_size must be 1..7"),
        ("checkpoint:resnet18:num_classes=ten:x.pth", "num_classes must be an integer"),
        ("checkpoint:resnet18:pooling=blur:strided_convolutions=maybe:x.pth", "must be true or false"),
    ],
)
def test_bad_specs_are_user_errors(spec: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected):
        load_pretrained(spec)
    with pytest.raises(UserError, match=expected):
        describe_spec(spec)


def test_missing_weights_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(f"checkpoint:resnet18:{tmp_path / 'absent.pt'}")


def test_spec_and_keyword_pooling_must_agree() -> None:
    with pytest.raises(UserError, match="also asked for"):
        load_pretrained("checkpoint:resnet18:pooling=blur:x.pt", pooling="lift")
    with pytest.raises(UserError, match="also asked for"):
        load_pretrained(
            "checkpoint:resnet18:pooling=blur:pooling.filter_size=5:x.pt", pooling_options={"filter_size": 3}
        )


def test_parse_keeps_colons_in_paths_and_registry_lists_sources() -> None:
    parsed = parse_spec("checkpoint:resnet18:pooling=lift:pooling.combine=LL:C:/runs/a=b:best.pt")
    assert parsed.weights == "C:/runs/a=b:best.pt"
    assert parsed.pooling == "lift" and parsed.pooling_options == {"combine": "LL"}
    assert parse_spec("torchvision:resnet18:IMAGENET1K_V1").weights_name == "IMAGENET1K_V1"
    assert parse_spec("torchvision:resnet18:weights/IMAGENET1K_V1.pth").weights_name is None
    assert set(SPECS) == {"torchvision", "antialiased", "checkpoint", "timm"}
    assert {row["source"] for row in spec_table()} == set(SPECS)
    assert "pooling swapped to lift" in describe_spec("checkpoint:resnet18:pooling=lift:x.pt")


def test_timm_missing_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    with pytest.raises(UserError, match="timm is not installed; pip install timm"):
        load_pretrained("timm:resnet18:x.pth")


def test_timm_adapter_with_a_stand_in_timm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter's code path without timm installed: a stub module with timm's three calls."""
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=10).eval()
    network.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    stub = types.ModuleType("timm")
    stub.is_model = lambda name: name == "stub_resnet"
    stub.list_models = lambda: ["stub_resnet"]
    stub.create_model = lambda name, pretrained, num_classes: copy.deepcopy(network) if num_classes == 10 else None
    monkeypatch.setitem(sys.modules, "timm", stub)
    path = tmp_path / "stub.pth"
    torch.save(network.state_dict(), path)
    model, metadata = load_pretrained(f"timm:stub_resnet:num_classes=10:{path}")
    _assert_same_outputs(model, NormalizedModel(network, (0.5,) * 3, (0.25,) * 3).eval())
    assert metadata["library"] == "timm" and metadata["num_classes"] == 10 and metadata["dataset"] == "unknown"
    with pytest.raises(UserError, match="unknown timm architecture 'stub_resnte'; did you mean stub_resnet"):
        load_pretrained(f"timm:stub_resnte:{path}")


def test_timm_adapter(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    network = timm.create_model("resnet18", pretrained=False).eval()
    path = tmp_path / "timm-resnet18.pth"
    torch.save(network.state_dict(), path)
    model, metadata = load_pretrained(f"timm:resnet18:{path}")
    config = network.pretrained_cfg
    _assert_same_outputs(model, NormalizedModel(network, config["mean"], config["std"]).eval())
    assert metadata["library"] == "timm" and metadata["pooling"] == "max"
