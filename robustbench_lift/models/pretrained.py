"""Pretrained ImageNet models named by a *spec* string, loaded offline.

A spec names where the network comes from, its architecture and its weights::

    <source>:<architecture>[:<key>=<value>]...:<weights>

Sources (the prefix; registered in :data:`SPECS`):

``torchvision:<arch>:<WEIGHTS_NAME>``
    torchvision's own pretrained weights, e.g. ``torchvision:resnet18:IMAGENET1K_V1`` or
    ``torchvision:resnet50:DEFAULT``. The file is looked up in the local torch hub cache,
    ``<torch.hub.get_dir()>/checkpoints/<file name of the weights' URL>`` (where
    torchvision itself would have saved it); nothing is ever downloaded. A weights
    *name* is an all-capitals identifier (``[A-Z][A-Z0-9_]*``); anything else is a path.
``torchvision:<arch>:<path>``
    The same architecture, built as torchvision builds it for its pretrained weights
    (e.g. GoogLeNet/Inception-v3 with ``transform_input``), from an explicit file.
``antialiased:<arch>[:filter_size=<n>]:<path>``
    An antialiased-cnns model (Zhang 2019), e.g.
    ``antialiased:resnet50:filter_size=4:weights/resnet50_lpf4.pth``; ``filter_size``
    defaults to 4, antialiased-cnns' own default.
``checkpoint:<arch>:<path>``
    Any checkpoint of a torchvision architecture: a plain state dict, one nested under
    ``state_dict`` or ``model``, keys with ``module.`` prefixes (DataParallel), or
    safetensors.
``timm:<model name>:<path>``
    A timm model (``timm.create_model(pretrained=False)``), only if timm is installed;
    it is not a dependency of this package.

Options (``key=value`` fields between the architecture and the weights):

``pooling=<kind>``
    Swap then load: the network's pooling is swapped to ``<kind>``
    (:func:`robustbench_lift.nn.swap.swap_pooling`) *before* the weights are loaded, which
    is how BlurPool and LiftPool checkpoints of torchvision architectures are saved, e.g.
    ``checkpoint:resnet50:pooling=lift:runs/resnet50-lift.pt``. Not for ``antialiased``.
``pooling.<option>=<value>``
    An option of that pooling kind, e.g. ``pooling.filter_size=5``, ``pooling.combine=LL``.
``strided_convolutions=true|false``
    Whether the swap also turns stride-2 convolutions into stride-1 convolution plus the
    pooling. Default: only when the architecture has no MaxPool2d/AvgPool2d (MobileNetV2).
``num_classes=<n>``
    Classifier size. Default: the named weights' categories, else the file's own
    metadata, else 1000.

The :func:`load_pretrained` keyword arguments ``pooling`` and ``pooling_options`` are the
same as the spec fields; both may be given, and a disagreement is an error.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import torch
from torch import nn

from robustbench_lift.errors import CheckpointError, UserError
from robustbench_lift.models.checkpoints import load_state, read_checkpoint
from robustbench_lift.models.preprocessing import PreprocessedModel, Preprocessing
from robustbench_lift.nn.pooling import resolve_options
from robustbench_lift.nn.swap import REPLACEABLE, swap_pooling
from robustbench_lift.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_NUM_CLASSES = 1000
SPEC_SYNTAX = "<source>:<architecture>[:<key>=<value>]...:<weights>"
SPEC_EXAMPLE = "torchvision:resnet18:IMAGENET1K_V1"

_OPTION_FIELD = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?=")
_WEIGHTS_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# DenseNet files of torchvision and antialiased-cnns still name layers "norm.1", "conv.2", ...
# ('.' is no longer allowed in module names); both libraries rename them on load, so do we.
_LEGACY_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}

_SWAP_OPTIONS = {
    "pooling": "swap the pooling to this kind before loading (swap then load)",
    "strided_convolutions": "also swap stride-2 convolutions (default: only without pooling layers)",
}
_NUM_CLASSES_OPTION = {"num_classes": "classifier size (default: the weights' categories or 1000)"}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec: source prefix, architecture, ``key=value`` options, weights."""

    text: str
    source: str
    architecture: str
    weights: str
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def pooling(self) -> str | None:
        return self.options.get("pooling")

    @property
    def pooling_options(self) -> dict[str, str]:
        return {
            key.removeprefix("pooling."): value for key, value in self.options.items() if key.startswith("pooling.")
        }

    @property
    def weights_name(self) -> str | None:
        """The weights as a named set (``IMAGENET1K_V1``), or None when they are a path."""
        return self.weights if _WEIGHTS_NAME.fullmatch(self.weights) else None

    def integer(self, key: str, default: int | None = None) -> int | None:
        if key not in self.options:
            return default
        try:
            return int(self.options[key])
        except ValueError:
            raise UserError(f"model spec {self.text!r}: {key} must be an integer, got {self.options[key]!r}") from None

    def flag(self, key: str) -> bool | None:
        if key not in self.options:
            return None
        value = self.options[key].lower()
        if value not in _TRUE | _FALSE:
            raise UserError(f"model spec {self.text!r}: {key} must be true or false, got {self.options[key]!r}")
        return value in _TRUE


def parse_spec(spec: str) -> ModelSpec:
    """Splits ``spec`` into its fields; the weights are everything after the options, so a
    path may itself contain ':'."""
    fields = spec.split(":")
    if len(fields) < 3 or not fields[0] or not fields[1]:
        raise UserError(f"malformed model spec {spec!r}; expected {SPEC_SYNTAX}, e.g. {SPEC_EXAMPLE}")
    rest = fields[2:]
    options: dict[str, str] = {}
    # The last field is always the weights, even if it looks like key=value.
    while len(rest) > 1 and _OPTION_FIELD.match(rest[0]):
        key, _, value = rest.pop(0).partition("=")
        if key in options:
            raise UserError(f"model spec {spec!r} sets {key} twice")
        options[key] = value
    weights = ":".join(rest)
    if not weights:
        raise UserError(f"model spec {spec!r} names no weights; expected {SPEC_SYNTAX}")
    return ModelSpec(spec, fields[0], fields[1], weights, options)


def _close_matches(name: str, known: Sequence[str]) -> str:
    matches = difflib.get_close_matches(name, known, n=3)
    return f"; did you mean {', '.join(matches)}?" if matches else f"; {len(known)} known"


#: Classes of torchvision's segmentation weights (PASCAL VOC's 21) and the default size of their head.
SEGMENTATION_NUM_CLASSES = 21


def segmentation_architectures() -> list[str]:
    """torchvision's semantic-segmentation builders (fcn_resnet50, deeplabv3_resnet50, lraspp_mobilenet_v3_large, ...)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models.segmentation))


def _hub_path(weights: Any) -> Path:
    """Where torch.hub.load_state_dict_from_url keeps the download of torchvision ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _pooling_kinds(network: nn.Module) -> str:
    """Pooling kinds a network uses natively, in order of appearance ("max", "max+avg").

    A network without MaxPool2d/AvgPool2d downsamples by strided convolution, which is
    the ``skip`` kind (strided subsampling) in the pooling table of ``docs/layers.md``.
    """
    kinds: list[str] = []
    for module in network.modules():
        kind = "max" if isinstance(module, nn.MaxPool2d) else "avg" if isinstance(module, nn.AvgPool2d) else None
        if kind and kind not in kinds:
            kinds.append(kind)
    return "+".join(kinds) or "skip"


class SpecSource:
    """Base of the loaders in :data:`SPECS`: how one prefix builds networks and finds weights."""

    library: ClassVar[str] = ""
    description: ClassVar[str] = ""
    example: ClassVar[str] = ""
    options: ClassVar[dict[str, str]] = {**_SWAP_OPTIONS, **_NUM_CLASSES_OPTION}
    supports_swap: ClassVar[bool] = True

    def validate(self, spec: ModelSpec) -> None:
        """Raises UserError for an unknown architecture, weights name or option."""
        for key in spec.options:
            allowed = key in self.options or (self.supports_swap and key.startswith("pooling."))
            if not allowed:
                known = ", ".join([*self.options, *(["pooling.<option>"] if self.supports_swap else [])])
                raise UserError(
                    f"model spec {spec.text!r}: {spec.source} specs take no option {key!r}; options: {known}"
                )
        if (spec.integer("num_classes") or 1) < 1:
            raise UserError(f"model spec {spec.text!r}: num_classes must be positive")
        spec.flag("strided_convolutions")  # raises on a value that is not true/false
        self.check_architecture(spec.architecture)

    def check_architecture(self, architecture: str) -> None:
        known = self.architectures()
        if architecture not in known:
            raise UserError(
                f"unknown {self.library} architecture {architecture!r}{_close_matches(architecture, known)}"
            )

    def architectures(self) -> list[str]:
        raise NotImplementedError

    def named_weights(self, spec: ModelSpec) -> Any:
        """The named weights set the spec refers to; None when the weights are a file path."""
        return None

    def weights_path(self, spec: ModelSpec) -> Path:
        return Path(spec.weights).expanduser()

    def default_num_classes(self, spec: ModelSpec) -> int | None:
        """Classifier size implied by the weights themselves, when they say."""
        return None

    def build(self, spec: ModelSpec, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def preprocessing(self, spec: ModelSpec, network: nn.Module) -> Preprocessing:
        """What the network needs: ImageNet's mean/std at the data set's own size, unless
        the weights declare more (torchvision transforms, timm data config)."""
        return Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def input_description(self, spec: ModelSpec, input_size: Sequence[int]) -> str:
        return f"float RGB in [0, 1], {input_size[-2]} x {input_size[-1]}"

    def native_pooling(self, spec: ModelSpec, network: nn.Module) -> tuple[str, dict[str, Any]]:
        return _pooling_kinds(network), {}

    def describe_weights(self, spec: ModelSpec) -> str:
        path = self.weights_path(spec)
        return f"weights file {path} ({'present' if path.is_file() else 'missing'})"


SPECS: Registry[type[SpecSource]] = Registry("model spec source")


@SPECS.register("checkpoint")
class CheckpointSource(SpecSource):
    """Any checkpoint file of a torchvision architecture."""

    library = "torchvision"
    description = "any checkpoint (state dict, nested, module.-prefixed or safetensors) of a torchvision architecture"
    example = "checkpoint:resnet50:pooling=blur:runs/resnet50-blur.pt"

    def architectures(self) -> list[str]:
        import torchvision

        # Classification and semantic-segmentation models (detection/video live elsewhere).
        return torchvision.models.list_models(module=torchvision.models) + segmentation_architectures()

    def builder_arguments(self, spec: ModelSpec) -> dict[str, Any]:
        return {}

    def build(self, spec: ModelSpec, num_classes: int) -> nn.Module:
        import torchvision

        if spec.architecture in segmentation_architectures():
            # No auxiliary head (unused in eval; its weights are dropped on load) and no
            # backbone download.
            return torchvision.models.get_model(
                spec.architecture, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
            )
        return torchvision.models.get_model(
            spec.architecture, weights=None, num_classes=num_classes, **self.builder_arguments(spec)
        )


@SPECS.register("torchvision")
class TorchvisionSource(CheckpointSource):
    """torchvision's pretrained weights, by name from the hub cache or from a file."""

    description = "torchvision weights by name from the local torch hub cache (offline), or from a file"
    example = SPEC_EXAMPLE

    def validate(self, spec: ModelSpec) -> None:
        super().validate(spec)
        self.named_weights(spec)

    def named_weights(self, spec: ModelSpec) -> Any:
        """The torchvision weights enum member the spec names, or None for a file path."""
        if spec.weights_name is None:
            return None
        import torchvision

        members = torchvision.models.get_model_weights(spec.architecture)
        try:
            return members[spec.weights_name]
        except KeyError:
            known = ", ".join([*members.__members__])
            raise UserError(
                f"torchvision architecture {spec.architecture!r} has no weights {spec.weights_name!r}; known: {known}"
            ) from None

    def weights_path(self, spec: ModelSpec) -> Path:
        weights = self.named_weights(spec)
        if weights is None:
            return super().weights_path(spec)
        path, url = _hub_path(weights), weights.url
        if not path.is_file():
            raise UserError(
                f"torchvision weights {spec.architecture}:{spec.weights_name} are not in the local torch hub cache: "
                f"looked for {path}; on a machine with internet download {url} to that path (or point TORCH_HOME at a folder "
                f"holding hub/checkpoints/{path.name}), or name the file in the spec: torchvision:{spec.architecture}:<path>"
            )
        return path

    def default_num_classes(self, spec: ModelSpec) -> int | None:
        weights = self.named_weights(spec)
        return len(weights.meta["categories"]) if weights is not None else None

    def builder_arguments(self, spec: ModelSpec) -> dict[str, Any]:
        """Arguments torchvision's builders set themselves when they load pretrained weights."""
        arguments: dict[str, Any] = {}
        if spec.architecture in ("googlenet", "inception_v3"):
            # Their weights expect the input re-standardised as in the original release; the
            # auxiliary heads are in the file (and unused in eval mode).
            arguments.update(transform_input=True, aux_logits=True, init_weights=False)
        weights = self.named_weights(spec)
        if weights is not None and spec.architecture.startswith("vit_"):
            arguments["image_size"] = weights.meta["min_size"][0]
        if weights is not None and spec.architecture == "maxvit_t":
            arguments["input_size"] = weights.meta["min_size"]
        return arguments

    def preprocessing(self, spec: ModelSpec, network: nn.Module) -> Preprocessing:
        weights = self.named_weights(spec)
        if weights is None or spec.architecture in segmentation_architectures():
            # Dense prediction is scored at the label map's size: no resize or crop.
            return super().preprocessing(spec, network)
        return Preprocessing.from_torchvision(weights)

    def input_description(self, spec: ModelSpec, input_size: Sequence[int]) -> str:
        weights = self.named_weights(spec)
        transform = weights.transforms() if weights is not None else None
        if transform is None or not hasattr(transform, "crop_size"):
            return super().input_description(spec, input_size)
        crop, resize = transform.crop_size[0], transform.resize_size[0]
        return f"float RGB in [0, 1]; resize shorter side to {resize}, centre crop {crop} x {crop}"

    def describe_weights(self, spec: ModelSpec) -> str:
        weights = self.named_weights(spec)
        if weights is None:
            return super().describe_weights(spec)
        path = _hub_path(weights)
        state = "present" if path.is_file() else f"missing; download {weights.url}"
        return f"torchvision weights {weights} from the torch hub cache {path} ({state})"


@SPECS.register("antialiased")
class AntialiasedSource(SpecSource):
    """antialiased-cnns models (BlurPool throughout), from a weights file."""

    library = "antialiased_cnns"
    description = "antialiased-cnns model (BlurPool, Zhang 2019) from a weights file"
    example = "antialiased:resnet50:filter_size=4:weights/resnet50_lpf4.pth"
    options = {
        "filter_size": "BlurPool filter taps, 1..7 (default 4, antialiased-cnns' default)",
        **_NUM_CLASSES_OPTION,
    }
    supports_swap = False
    DEFAULT_FILTER_SIZE: ClassVar[int] = 4

    def architectures(self) -> list[str]:
        import antialiased_cnns

        # Every model builder of the package takes a filter_size; helper functions do not.
        return sorted(
            name
            for name, builder in vars(antialiased_cnns).items()
            if name[:1].islower()
            and inspect.isfunction(builder)
            and "filter_size" in inspect.signature(builder).parameters
        )

    def filter_size(self, spec: ModelSpec) -> int:
        size = spec.integer("filter_size", self.DEFAULT_FILTER_SIZE)
        if size is None or size not in range(1, 8):
            raise UserError(f"model spec {spec.text!r}: filter_size must be 1..7, got {size}")
        return size

    def validate(self, spec: ModelSpec) -> None:
        super().validate(spec)
        self.filter_size(spec)

    def build(self, spec: ModelSpec, num_classes: int) -> nn.Module:
        import antialiased_cnns

        builder = getattr(antialiased_cnns, spec.architecture)
        return builder(pretrained=False, filter_size=self.filter_size(spec), num_classes=num_classes)

    def native_pooling(self, spec: ModelSpec, network: nn.Module) -> tuple[str, dict[str, Any]]:
        return "blur", {"filter_size": self.filter_size(spec)}


@SPECS.register("timm")
class TimmSource(SpecSource):
    """timm models from a weights file; timm is optional."""

    library = "timm"
    description = "timm model (timm.create_model, pretrained=False) from a weights file; needs timm installed"
    example = "timm:resnet50:weights/resnet50_a1.safetensors"

    @staticmethod
    def timm() -> Any:
        try:
            import timm
        except ImportError:
            raise UserError("timm is not installed; pip install timm") from None
        return timm

    def architectures(self) -> list[str]:
        return list(self.timm().list_models())

    def check_architecture(self, architecture: str) -> None:
        # is_model is one lookup; the full list of names is built only for the error.
        if not self.timm().is_model(architecture):
            super().check_architecture(architecture)

    def build(self, spec: ModelSpec, num_classes: int) -> nn.Module:
        return self.timm().create_model(spec.architecture, pretrained=False, num_classes=num_classes)

    def preprocessing(self, spec: ModelSpec, network: nn.Module) -> Preprocessing:
        try:
            from timm.data import resolve_data_config
        except ImportError:  # an older or partial timm: the model's own config
            config = dict(getattr(network, "pretrained_cfg", None) or {})
        else:
            config = dict(resolve_data_config({}, model=network))
        return Preprocessing.from_timm_config({"mean": IMAGENET_MEAN, "std": IMAGENET_STD} | config)


def _requested_pooling(
    spec: ModelSpec, pooling: str | None, pooling_options: Mapping[str, Any] | None
) -> tuple[str | None, dict[str, Any]]:
    """Merges the spec's pooling fields with the keyword arguments; disagreement is an error."""
    if pooling is not None and spec.pooling is not None and pooling != spec.pooling:
        raise UserError(
            f"model spec {spec.text!r} says pooling={spec.pooling}, but pooling={pooling!r} was also asked for"
        )
    kind = pooling if pooling is not None else spec.pooling
    options: dict[str, Any] = dict(spec.pooling_options)
    if (options or pooling_options) and kind is None:
        raise UserError(f"pooling options for {spec.text!r} need a pooling kind (pooling=<kind>)")
    if kind is None:
        return None, {}
    for key, value in (pooling_options or {}).items():
        if (
            key in options
            and resolve_options(kind, {key: options[key]})[key] != resolve_options(kind, {key: value})[key]
        ):
            raise UserError(
                f"model spec {spec.text!r} says pooling.{key}={options[key]}, but {key}={value!r} was also asked for"
            )
        options[key] = value
    resolve_options(kind, options)  # fail fast on an unknown kind or option
    return kind, options


def _modernise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _LEGACY_DENSENET_KEY.match(key.removeprefix("module."))
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def _add_batch_norm_counters(network: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Adds the ``num_batches_tracked`` buffers files saved before torch 0.4.1 lack.

    Older releases (torchvision's DenseNets among them) have none; torch's own BatchNorm
    loading fills them in, but :func:`load_state` compares key sets first. The counter only
    matters for training with momentum=None, so the model's fresh value is used.
    """
    present = {key.removeprefix("module.") for key in state}
    for key, value in network.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in present:
            state[key] = value


def _mismatch_hint(network: nn.Module, state: Mapping[str, torch.Tensor], pooling: str | None) -> str:
    """A hint for a load failure that looks like a pooling-swap mix-up, else ''."""
    if pooling is not None:
        return f"; with pooling={pooling!r} the file must hold weights saved after the same swap, with the same options"
    modules = dict(network.named_modules())
    expected = network.state_dict()
    for key in state:
        key = key.removeprefix("module.")
        if key in expected:
            continue
        parts = key.split(".")
        for length in range(1, len(parts)):
            module = modules.get(".".join(parts[:length]))
            strided = isinstance(module, nn.Conv2d) and module.stride not in (1, (1, 1))
            if isinstance(module, REPLACEABLE) or strided:
                return "; the file seems to hold a model with swapped pooling: name its kind with pooling=<kind>"
    return ""


def load_pretrained(
    spec: str,
    *,
    pooling: str | None = None,
    pooling_options: Mapping[str, Any] | None = None,
    input_size: Sequence[int] = (3, 224, 224),
) -> tuple[nn.Module, dict[str, Any]]:
    """Loads the model ``spec`` names, offline; returns (model in eval mode, metadata).

    The model takes [0, 1] inputs (normalisation inside, :class:`PreprocessedModel`, whose
    ``preprocessing`` also declares the weights' resize/crop when they have one).
    ``pooling``/``pooling_options`` swap the pooling before loading (see the module
    docstring); ``input_size`` (C, H, W) is the swap's probe input. Metadata holds
    architecture, pooling, pooling_options, num_classes, source (the file loaded),
    dataset, preprocessing {mean, std, resize, crop, size, interpolation, input}, plus spec, library, weights and
    swapped_layers.
    """
    parsed = parse_spec(spec)
    source = SPECS.get(parsed.source)()
    source.validate(parsed)
    kind, options = _requested_pooling(parsed, pooling, pooling_options)
    if kind is not None and not source.supports_swap:
        raise UserError(
            f"{parsed.source} models already have their own pooling; pooling= applies to {', '.join(name for name in SPECS if SPECS.get(name).supports_swap)} specs"
        )
    path = source.weights_path(parsed)
    state, file_metadata = read_checkpoint(path)
    state = _modernise_keys(state)
    segmentation = parsed.architecture in segmentation_architectures()
    if segmentation:
        state = {key: value for key, value in state.items() if not key.startswith("aux_classifier.")}
    num_classes = (
        parsed.integer("num_classes")
        or source.default_num_classes(parsed)
        or int(file_metadata.get("num_classes", SEGMENTATION_NUM_CLASSES if segmentation else DEFAULT_NUM_CLASSES))
    )
    network = source.build(parsed, num_classes)
    swapped_layers: list[str] = []
    if kind is not None:
        strided = parsed.flag("strided_convolutions")
        if strided is None:
            strided = not any(isinstance(module, REPLACEABLE) for module in network.modules())
        network, report = swap_pooling(
            network, kind, input_size=input_size, include_strided_convolutions=strided, inplace=True, **options
        )
        swapped_layers = [name for name, _ in report.replaced]
        pooling_kind, resolved_options = kind, resolve_options(kind, options)
    else:
        pooling_kind, resolved_options = source.native_pooling(parsed, network)
    _add_batch_norm_counters(network, state)
    try:
        load_state(network, state, str(path))
    except CheckpointError as error:
        raise CheckpointError(f"{error}{_mismatch_hint(network, state, kind)}") from None
    preprocessing = source.preprocessing(parsed, network)
    model = PreprocessedModel(network, preprocessing).eval()
    metadata = {
        "spec": spec,
        "library": source.library,
        "architecture": parsed.architecture,
        "weights": None if source.named_weights(parsed) is None else str(source.named_weights(parsed)),
        "pooling": pooling_kind,
        "pooling_options": resolved_options,
        "swapped_layers": swapped_layers,
        "num_classes": num_classes,
        "source": str(path),
        "dataset": "imagenet" if num_classes == DEFAULT_NUM_CLASSES else "unknown",
        "preprocessing": preprocessing.to_dict() | {"input": source.input_description(parsed, input_size)},
    }
    if segmentation:
        # Logits N x classes x H x W at the input's size (PreprocessedModel takes the "out" entry).
        metadata["task"] = "segmentation"
        metadata["dataset"] = "voc2012" if num_classes == SEGMENTATION_NUM_CLASSES else "unknown"
    return model, metadata


def describe_spec(spec: str) -> str:
    """One line saying what ``spec`` would load, without reading the weights or building a model."""
    parsed = parse_spec(spec)
    source = SPECS.get(parsed.source)()
    source.validate(parsed)
    kind, options = _requested_pooling(parsed, None, None)
    text = f"{source.library} {parsed.architecture}"
    if isinstance(source, AntialiasedSource):
        text += f" (BlurPool filter_size={source.filter_size(parsed)})"
    text += f", {source.describe_weights(parsed)}"
    if kind is not None:
        settings = ", ".join(f"{key}={value}" for key, value in resolve_options(kind, options).items())
        text += f"; pooling swapped to {kind}" + (f" ({settings})" if settings else "") + " before loading"
    return text


def spec_table() -> list[dict[str, str]]:
    """One row per spec source, for listings."""
    return [
        {
            "source": name,
            "description": SPECS.get(name).description,
            "example": SPECS.get(name).example,
            "options": ", ".join(
                [*SPECS.get(name).options, *(["pooling.<option>"] if SPECS.get(name).supports_swap else [])]
            ),
        }
        for name in SPECS
    ]
