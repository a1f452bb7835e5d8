"""``python:`` model specs: models built by the user's own code, with or without weights."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_lift.errors import CheckpointError, UserError
from robustbench_lift.models.python_spec import load_python_model, parse_python_spec, parse_value

NETS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width=4, classes=10, pooling="max"):
        super().__init__()
        self.pooling = pooling
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def build(width=4, pooling="max", scale=1.0, bias=True):
    return Net(width=width, pooling=pooling)


def not_a_model():
    return {"weights": 1}


CONSTANT = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh module in the working directory (unique name: sys.modules caches imports)."""
    name = f"user_nets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(NETS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", ".")])
    yield name
    sys.modules.pop(name, None)


def test_values_are_read_as_int_float_bool_or_string() -> None:
    assert [parse_value(text) for text in ("32", "-2", "0.5", "1e-3", "true", "False", "lift", "")] == [
        32,
        -2,
        0.5,
        0.001,
        True,
        False,
        "lift",
        "",
    ]


def test_parse_splits_module_callable_options_and_weights() -> None:
    spec = parse_python_spec("python:pkg.nets:Net.small:width=32:pooling=lift@runs/a:b.safetensors")
    assert (spec.module, spec.attribute, spec.options, spec.weights) == (
        "pkg.nets",
        "Net.small",
        {"width": 32, "pooling": "lift"},
        "runs/a:b.safetensors",
    )
    assert parse_python_spec("python:nets:build").weights is None


@pytest.mark.parametrize(
    "text",
    [
        "python:nets",
        "python::build",
        "python:nets:build:width",
        "python:nets:build:width=1:width=2",
        "python:nets:build@",
        "python:1nets:build",
    ],
)
def test_malformed_specs_fail_with_one_line(text: str) -> None:
    with pytest.raises(UserError) as error:
        parse_python_spec(text)
    assert "\n" not in str(error.value)


def test_builds_from_the_working_directory_with_keyword_arguments(user_module: str) -> None:
    model, metadata = load_python_model(f"python:{user_module}:build:width=6:pooling=lift")
    assert isinstance(model, nn.Module) and not model.training
    assert model.conv.out_channels == 6 and model.pooling == "lift"
    assert (
        metadata["architecture"] == f"{user_module}:build"
        and metadata["pooling"] == "lift"
        and metadata["source"] is None
    )


def test_a_class_is_a_builder_too(user_module: str) -> None:
    model, _ = load_python_model(f"python:{user_module}:Net:width=5")
    assert model.conv.out_channels == 5


def test_weights_are_loaded_strictly(user_module: str, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    reference, _ = load_python_model(f"python:{user_module}:build:width=6")
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.uniform_(-1, 1)
    save_file(reference.state_dict(), str(tmp_path / "weights.safetensors"))
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "weights.pt")
    for name in ("weights.safetensors", "weights.pt"):
        model, metadata = load_python_model(f"python:{user_module}:build:width=6@{tmp_path / name}")
        for key, value in reference.state_dict().items():
            assert torch.equal(model.state_dict()[key], value)
        assert metadata["source"] == str(tmp_path / name)
    with pytest.raises(CheckpointError, match="does not fit") as error:
        load_python_model(f"python:{user_module}:build:width=8@{tmp_path / 'weights.safetensors'}")
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_python_model(f"python:{user_module}:build@{tmp_path / 'missing.safetensors'}")


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (":buld", "has no attribute 'buld'; did you mean build"),
        (":CONSTANT", "is a int, not a function or class"),
        (":build:depth=3", "cannot be called with"),
        (":not_a_model", "returned a dict, not a torch.nn.Module"),
    ],
)
def test_user_code_mistakes_fail_with_one_line(user_module: str, suffix: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as error:
        load_python_model(f"python:{user_module}{suffix}")
    assert "\n" not in str(error.value)


def test_import_failures_fail_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}_syntax.py").write_text("def build(:\n")
    (tmp_path / f"{name}_dependency.py").write_text("import surely_not_installed_anywhere\n")
    cases = {
        f"python:{name}_absent:build": "no module named",
        f"python:{name}_syntax:build": "invalid syntax",
        f"python:{name}_dependency:build": "importing .* failed: No module named 'surely_not_installed_anywhere'",
    }
    for text, message in cases.items():
        with pytest.raises(UserError, match=message) as error:
            load_python_model(text)
        assert "\n" not in str(error.value)
