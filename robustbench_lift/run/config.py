"""Run configuration: defaults, YAML loading and validation.

Every key of a YAML config is a field of :class:`RunConfig`; unknown keys and wrong
types are refused with one line, so a typo never silently runs the default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union, get_args, get_origin, get_type_hints

from robustbench_lift.errors import UserError

DEFAULT_SAMPLE_SIZE = 1000
QUICK_SAMPLE_SIZE = 200


@dataclass
class RunConfig:
    """What a benchmark run evaluates and where it writes.

    models: zoo names (``small_cnn-lift`` or ``lift``) or checkpoint paths; empty = the whole zoo.
    dataset / split / data_dir / download: the clean data (see ``robustbench_lift.data.datasets``).
    sample_size: test images drawn (seeded) from the split; null = all of it.
    suites: which suites to run (``robustbench-lift list suites``).
    corruptions: names, or ``common`` / ``extra`` / ``all``; severities: subset of 1..5.
    profile: corruption severity table, ``cifar`` (32 px) or ``imagenet`` (224 px).
    reference_model: the model that normalises CE/mCE; null = the max-pooling model.
    seed: the one seed every random draw derives from.
    workers: processes that generate corrupted inputs; batch_size: inference batch
    (halved automatically on out-of-memory).
    device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    threads: torch threads for inference and attacks (null = torch's default).
    output_dir / run_name: results go to ``<output_dir>/<run_name>/``; a run interrupted
    part-way resumes from its store when the same command runs again (see runner).
    executor: ``local`` (this process) or ``ray`` (cells as Ray tasks); ray_address: the
    Ray cluster to attach to (null = start a local one).
    cache_dir: folder caching the corruption suite's generated inputs (null = no cache).
    corruption_data / corruption_layout: a pre-made corruption set (CIFAR-10-C style) to
    read instead of generating (null = generate); layout null = detect it.
    perturbation_data / perturbation_layout: the same for perturbation sequences.
    perturbations / difficulty / perturbation_sample_size: the perturbation suite
    (names or ``main`` / ``extra`` / ``all``; frames compared ``difficulty`` apart;
    sequences drawn from the first images of the sample).
    shift_max: largest shift (px) of the shift-consistency suite.
    attacks / attack_epsilons / attack_sample_size: the adversarial suite (attack names;
    epsilons per attack name, null = each attack's default grid; images attacked).
    """

    models: List[str] = field(default_factory=list)
    dataset: str = "fashion_mnist"
    split: str = "test"
    data_dir: Optional[str] = None
    download: bool = False
    sample_size: Optional[int] = DEFAULT_SAMPLE_SIZE
    suites: List[str] = field(default_factory=lambda: ["corruption", "perturbation", "shift", "adversarial"])
    corruptions: Union[str, List[str]] = "all"
    severities: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    profile: str = "cifar"
    reference_model: Optional[str] = None
    seed: int = 0
    workers: int = 2
    batch_size: int = 500
    device: str = "auto"
    threads: Optional[int] = None
    output_dir: str = "reports"
    run_name: str = "builtin"
    executor: str = "local"
    ray_address: Optional[str] = None
    cache_dir: Optional[str] = None
    corruption_data: Optional[str] = None
    corruption_layout: Optional[str] = None
    perturbation_data: Optional[str] = None
    perturbation_layout: Optional[str] = None
    perturbations: Union[str, List[str]] = "all"
    difficulty: int = 1
    perturbation_sample_size: Optional[int] = 200
    shift_max: int = 4
    attacks: List[str] = field(default_factory=lambda: ["fgsm", "pgd_linf", "pgd_l2", "deepfool_l2", "cw_l2"])
    attack_epsilons: Optional[Dict[str, List[float]]] = None
    attack_sample_size: Optional[int] = 100

    @classmethod
    def quick(cls) -> "RunConfig":
        """The small CI preset: fewer images and severities, all corruptions."""
        return cls(sample_size=QUICK_SAMPLE_SIZE, severities=[1, 3, 5], run_name="quick", perturbation_sample_size=50, attack_sample_size=50)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_directory(self) -> Path:
        return Path(self.output_dir) / self.run_name


def _check_type(name: str, value: Any, expected: Any) -> Any:
    origin = get_origin(expected)
    if origin is Union:
        options = get_args(expected)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(name, value, option)
            except UserError as error:
                errors.append(str(error))
        raise UserError(errors[0] if errors else f"config key {name!r} has the wrong type")
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise UserError(f"config key {name!r} must be a mapping, got {type(value).__name__}")
        key_type, item_type = get_args(expected)
        return {_check_type(name, key, key_type): _check_type(name, item, item_type) for key, item in value.items()}
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {name!r} must be a number, got {value!r}")
        return float(value)
    if origin in (list, List):
        if not isinstance(value, list):
            raise UserError(f"config key {name!r} must be a list, got {type(value).__name__}")
        (item_type,) = get_args(expected)
        return [_check_type(name, item, item_type) for item in value]
    if expected is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key {name!r} must be true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {name!r} must be an integer, got {value!r}")
        return value
    if expected is str:
        if not isinstance(value, str):
            raise UserError(f"config key {name!r} must be a string, got {value!r}")
        return value
    return value


def config_from_mapping(values: Dict[str, Any], base: Optional[RunConfig] = None) -> RunConfig:
    """A RunConfig from a mapping, every key checked against the dataclass's fields."""
    base = base or RunConfig()
    hints = get_type_hints(RunConfig)
    known = {item.name for item in dataclasses.fields(RunConfig)}
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"unknown config key {key!r}; known: {', '.join(sorted(known))}")
        checked[key] = _check_type(key, value, hints[key])
    config = dataclasses.replace(base, **checked)
    validate(config)
    return config


def load_config(path: str | Path, base: Optional[RunConfig] = None) -> RunConfig:
    """Reads a YAML config file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, got {type(values).__name__}")
    return config_from_mapping(values, base)


def validate(config: RunConfig) -> None:
    """Checks values that types alone do not (ranges, names of suites and corruptions)."""
    import corruptions
    from robustbench_lift.data.datasets import DATASETS
    from robustbench_lift.evaluation.suites.base import SUITES

    if config.sample_size is not None and config.sample_size <= 0:
        raise UserError(f"sample_size must be positive, got {config.sample_size}")
    for severity in config.severities:
        if severity not in corruptions.SEVERITIES:
            raise UserError(f"severity {severity} outside 1..5")
    if not config.severities:
        raise UserError("severities must not be empty")
    for suite in config.suites:
        SUITES.get(suite)
    DATASETS.get(config.dataset)
    if config.profile not in corruptions.PROFILES:
        raise UserError(f"unknown corruption profile {config.profile!r}; known: {', '.join(corruptions.PROFILES)}")
    selected_corruptions(config)
    if config.workers < 1 or config.batch_size < 1:
        raise UserError("workers and batch_size must be at least 1")
    if not config.run_name or "/" in config.run_name or config.run_name.startswith("."):
        raise UserError(f"run_name {config.run_name!r} must be a plain folder name")
    for key in ("perturbation_sample_size", "attack_sample_size"):
        value = getattr(config, key)
        if value is not None and value <= 0:
            raise UserError(f"{key} must be positive, got {value}")
    if config.device != "auto":
        import torch

        try:
            torch.device(config.device)
        except (RuntimeError, ValueError):
            raise UserError(f"unknown device {config.device!r}; use auto, cpu, cuda or cuda:N") from None
    from robustbench_lift.run.executors import EXECUTORS

    EXECUTORS.get(config.executor)
    if config.ray_address is not None and config.executor != "ray":
        raise UserError("ray_address needs executor ray (--executor ray)")
    for key in ("corruption_data", "perturbation_data"):
        value = getattr(config, key)
        if value is not None and not Path(value).is_dir():
            raise UserError(f"{key} {value} is not a folder")
    for key in ("corruption_layout", "perturbation_layout"):
        if getattr(config, key) is not None and getattr(config, key.replace("_layout", "_data")) is None:
            raise UserError(f"{key} needs {key.replace('_layout', '_data')} (the folder to read)")
    if config.difficulty < 1:
        raise UserError(f"difficulty must be at least 1, got {config.difficulty}")
    if config.shift_max < 1:
        raise UserError(f"shift_max must be at least 1, got {config.shift_max}")
    if "perturbation" in config.suites:
        from corruptions.perturbations import validate_difficulty

        validate_difficulty(selected_perturbations(config), config.difficulty, config.profile)
    if "adversarial" in config.suites:
        from robustbench_lift.evaluation.attacks.base import ATTACKS, validate_epsilons

        for attack in config.attacks:
            ATTACKS.get(attack)
        for attack, epsilons in (config.attack_epsilons or {}).items():
            validate_epsilons(ATTACKS.get(attack).norm, epsilons)


def _select(value: Union[str, List[str]], subsets: tuple[str, ...], names_of: Callable[[str], List[str]], what: str) -> List[str]:
    """Expands a subset name (``all``...) or validates a list of names against the known ones."""
    names = [value] if isinstance(value, str) else list(value)
    if len(names) == 1 and names[0] in subsets:
        return names_of(names[0])
    known = names_of("all")
    for name in names:
        if name not in known:
            raise UserError(f"unknown {what} {name!r}; known: {', '.join(known)}")
    return names


def selected_corruptions(config: RunConfig) -> List[str]:
    """The corruption names a config asks for, validated."""
    import corruptions

    return _select(config.corruptions, ("common", "extra", "all"), corruptions.corruption_names, "corruption")


def selected_perturbations(config: RunConfig) -> List[str]:
    """The perturbation names a config asks for, validated."""
    from corruptions import perturbations

    return _select(config.perturbations, ("main", "extra", "all"), perturbations.perturbation_names, "perturbation")
