"""Run configuration: general keys, the keys each suite and executor owns, YAML loading, validation.

:class:`RunConfig` holds the keys every run has (models, data, seed, device, where to
write, which suites and executor). Suites and executors own their keys: each declares
them as ``options`` (key -> :class:`~robustbench_lift.options.Option`) and checks their
values in ``validate``, so adding a suite or executor never touches this module. Every
key of a YAML config is a general key or a plugin's option; unknown keys and wrong types
are refused with one line, so a typo never silently runs the default. Options read as
attributes (``config.severities``) and appear flat in :meth:`RunConfig.to_dict`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import corruptions
from robustbench_lift.errors import UserError
from robustbench_lift.evaluation.suites import SUITES
from robustbench_lift.evaluation.suites.corruption import selected_corruptions
from robustbench_lift.evaluation.suites.perturbation import selected_perturbations
from robustbench_lift.options import Option, check_value
from robustbench_lift.run.executors import EXECUTORS

__all__ = [
    "DEFAULT_SAMPLE_SIZE",
    "QUICK_SAMPLE_SIZE",
    "RunConfig",
    "check_run_name",
    "config_from_mapping",
    "load_config",
    "option_owners",
    "plugin_options",
    "selected_corruptions",
    "selected_perturbations",
    "validate",
]

# The default run evaluates 21 zoo models (7 pooling kinds x 3 training seeds) in at most
# 10 minutes on 2 CPU cores: 500 images (100 perturbation sequences, 50 attacked images)
# per model; across-seed statistics come from the three seeds, per-model intervals from
# the images. --sample-size 1000 etc. for tighter per-model intervals.
DEFAULT_SAMPLE_SIZE = 500
QUICK_SAMPLE_SIZE = 200


def plugin_options() -> dict[str, Option]:
    """Every option a registered suite or executor owns (key -> Option)."""
    found: dict[str, Option] = {}
    for owner, option_map in _owned_options():
        for key, option in option_map.items():
            if key in found and found[key] != option:
                raise ValueError(f"config key {key!r} is declared differently by two plugins ({owner})")
            found[key] = option
    return found


def option_owners(key: str) -> list[str]:
    """The plugins (``suite corruption``, ``executor ray``) that own the option ``key``."""
    return [owner for owner, option_map in _owned_options() if key in option_map]


def _owned_options() -> list[tuple[str, Mapping[str, Option]]]:
    owned: list[tuple[str, Mapping[str, Option]]] = [(f"suite {name}", SUITES.get(name).options) for name in SUITES]
    owned += [(f"executor {name}", EXECUTORS.get(name).options) for name in EXECUTORS]
    return owned


@dataclass(init=False)
class RunConfig:
    """What a benchmark run evaluates and where it writes.

    models: zoo names (``small_cnn-lift`` or ``lift``), checkpoint paths or pretrained
    specs; empty = the whole zoo.
    dataset / split / data_dir / download: the clean data (``robustbench-lift list datasets``).
    sample_size: test images drawn (seeded) from the split; null = all of it.
    suites: which suites to run (``robustbench-lift list suites``).
    profile: corruption and perturbation severity table, ``cifar`` (32 px) or ``imagenet`` (224 px).
    reference_model: the model that normalises CE/mCE and mFR; null = the max-pooling model.
    seed: the one seed every random draw derives from.
    workers: processes that generate corrupted inputs; batch_size: inference batch
    (halved automatically on out-of-memory).
    device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    threads: torch threads for inference and attacks (null = torch's default).
    precision: inference precision, ``fp32``, ``bf16`` or ``fp16`` (autocast; fp16 needs CUDA);
    attack_precision: the same for attack forward/backward passes (default fp32);
    channels_last: channels-last memory format for inference (null = on).
    output_dir / run_name: results go to ``<output_dir>/<run_name>/``; a run interrupted
    part-way resumes from its store when the same command runs again.
    executor: ``local`` (this process) or ``ray`` (cells as Ray tasks).
    options: the keys suites and executors own (``corruptions``, ``severities``,
    ``attacks``, ``ray_address``, ...), every one filled with its default; pass them as
    keyword arguments and read them as attributes.
    """

    models: list[str] = field(default_factory=list)
    dataset: str = "fashion_mnist"
    split: str = "test"
    data_dir: str | None = None
    download: bool = False
    sample_size: int | None = DEFAULT_SAMPLE_SIZE
    suites: list[str] = field(default_factory=lambda: ["corruption", "perturbation", "shift", "adversarial"])
    profile: str = "cifar"
    reference_model: str | None = None
    seed: int = 0
    workers: int = 2
    batch_size: int = 500
    device: str = "auto"
    threads: int | None = None
    precision: str = "fp32"
    attack_precision: str = "fp32"
    channels_last: bool | None = None
    output_dir: str = "reports"
    run_name: str = "builtin"
    executor: str = "local"
    options: dict[str, Any] = field(default_factory=dict)

    def __init__(self, options: Mapping[str, Any] | None = None, **values: Any) -> None:
        known = plugin_options()
        for item in dataclasses.fields(self):
            if item.name == "options":
                continue
            if item.name in values:
                setattr(self, item.name, values.pop(item.name))
            elif item.default_factory is not dataclasses.MISSING:
                setattr(self, item.name, item.default_factory())
            else:
                setattr(self, item.name, item.default)
        given = {**dict(options or {}), **values}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise UserError(
                f"unknown config key {unknown[0]!r}; known: {', '.join(sorted(general_keys() | set(known)))}"
            )
        self.options = {key: given[key] if key in given else option.default_value() for key, option in known.items()}

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: the options suites and executors own.
        options = self.__dict__.get("options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    @classmethod
    def quick(cls) -> RunConfig:
        """The small CI preset: fewer images and severities, all corruptions."""
        return cls(
            sample_size=QUICK_SAMPLE_SIZE,
            severities=[1, 3, 5],
            run_name="quick",
            perturbation_sample_size=50,
            attack_sample_size=50,
        )

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some general keys or options changed."""
        return RunConfig(**(self.to_dict() | changes))

    def to_dict(self) -> dict[str, Any]:
        """Every key, general and owned, in one flat mapping (what YAML files and run.json hold)."""
        values = {
            item.name: copy.deepcopy(getattr(self, item.name))
            for item in dataclasses.fields(self)
            if item.name != "options"
        }
        values.update(copy.deepcopy(self.options))
        return values

    @property
    def run_directory(self) -> Path:
        return Path(self.output_dir) / self.run_name


def general_keys() -> set[str]:
    """The keys :class:`RunConfig` holds itself (not owned by a plugin)."""
    return {item.name for item in dataclasses.fields(RunConfig) if item.name != "options"}


def config_from_mapping(values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from a mapping, every key checked against the general keys and the plugins' options."""
    base = base or RunConfig()
    hints = get_type_hints(RunConfig)
    options = plugin_options()
    checked = {}
    for key, value in values.items():
        if key in options:
            checked[key] = check_value(key, value, options[key].hint)
        elif key in general_keys():
            checked[key] = check_value(key, value, hints[key])
        else:
            known = ", ".join(sorted(general_keys() | set(options)))
            raise UserError(f"unknown config key {key!r}; known: {known}")
    config = base.replace(**checked)
    validate(config)
    return config


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Reads a YAML config file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not a YAML text file (it holds binary data)") from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, got {type(values).__name__}")
    return config_from_mapping(values, base)


def check_run_name(name: str) -> str:
    """The one check of a run name: a plain, printable folder name.

    Refused: empty names, path separators, a leading dot (hidden folders are the store's
    and staging's), and any control character (a newline would split log lines and
    results.csv's ``run`` column).

    Args:
        name: the run name.

    Returns:
        ``name``.

    Raises:
        UserError: one line saying what is wrong.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"run_name {name!r} must be a plain folder name (no '/', no leading '.')")
    if any(not character.isprintable() for character in name):
        raise UserError(f"run_name {name!r} must not contain control characters such as newlines or tabs")
    return name


def _check_precisions(config: RunConfig) -> None:
    """Known precision names; fp16 refused where the run's device is a CPU (``auto`` on a
    machine without CUDA too, unless Ray workers pick their own device)."""
    from robustbench_lift.evaluation.precision import check_precision

    for key in ("precision", "attack_precision"):
        check_precision(getattr(config, key), None, key)
    if "fp16" in (config.precision, config.attack_precision):
        if config.device == "auto":
            if config.executor != "local":
                return
            import torch

            device_type = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            device_type = config.device.split(":")[0]
        check_precision(config.precision, device_type)
        check_precision(config.attack_precision, device_type, "attack_precision")


def validate(config: RunConfig) -> None:
    """Checks the general keys, then lets each selected suite and the executor check its own.

    An executor's options need that executor (``ray_address`` without ``executor: ray``
    is refused); options of suites this run does not select are accepted and unused, so
    one config file serves runs of different suites.
    """
    from robustbench_lift.data.datasets import DATASETS

    if config.sample_size is not None and config.sample_size <= 0:
        raise UserError(f"sample_size must be positive, got {config.sample_size}")
    suites = [SUITES.get(suite) for suite in config.suites]
    DATASETS.get(config.dataset)
    if config.profile not in corruptions.PROFILES:
        raise UserError(f"unknown corruption profile {config.profile!r}; known: {', '.join(corruptions.PROFILES)}")
    if config.workers < 1 or config.batch_size < 1:
        raise UserError("workers and batch_size must be at least 1")
    if config.threads is not None and config.threads < 1:
        raise UserError(f"threads must be at least 1 (or null for torch's default), got {config.threads}")
    check_run_name(config.run_name)
    _check_precisions(config)
    if config.device != "auto":
        import torch

        try:
            torch.device(config.device)
        except (RuntimeError, ValueError):
            raise UserError(f"unknown device {config.device!r}; use auto, cpu, cuda or cuda:N") from None
    executor = EXECUTORS.get(config.executor)
    for name in EXECUTORS:
        if name == config.executor:
            continue
        for key, option in EXECUTORS.get(name).options.items():
            if key not in executor.options and config.options.get(key) != option.default:
                raise UserError(f"{key} needs executor {name} (--executor {name})")
    executor.validate(config)
    for suite in suites:
        suite.validate(config)
