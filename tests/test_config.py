"""Tests for run configuration files (robustbench_lift/run/config.py)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from robustbench_lift.errors import UserError
from robustbench_lift.run.config import RunConfig, config_from_mapping, load_config, selected_corruptions, validate

VALID = """\
models: [small_cnn-max, small_cnn-lift]
dataset: fashion_mnist
sample_size: 64
suites: [corruption]
corruptions: [gaussian_noise, fog, spatter]
severities: [1, 3]
profile: cifar
reference_model: small_cnn-max
seed: 7
workers: 1
batch_size: 32
output_dir: somewhere
run_name: my_run
"""


def write(tmp_path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def user_error(tmp_path, text: str) -> str:
    """The one-line message load_config raises for ``text``."""
    with pytest.raises(UserError) as error:
        load_config(write(tmp_path, text))
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_valid_file_sets_every_key(tmp_path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.models == ["small_cnn-max", "small_cnn-lift"]
    assert config.sample_size == 64
    assert config.suites == ["corruption"]
    assert config.corruptions == ["gaussian_noise", "fog", "spatter"]
    assert config.severities == [1, 3]
    assert config.reference_model == "small_cnn-max"
    assert (config.seed, config.workers, config.batch_size) == (7, 1, 32)
    assert str(config.run_directory) == "somewhere/my_run"
    # Keys not in the file keep their defaults.
    assert config.profile == "cifar" and config.download is False and config.data_dir is None
    assert selected_corruptions(config) == ["gaussian_noise", "fog", "spatter"]


def test_valid_file_round_trips_through_to_dict(tmp_path) -> None:
    config = load_config(write(tmp_path, VALID))
    dumped = write(tmp_path, yaml.safe_dump(config.to_dict()), "dumped.yaml")
    assert load_config(dumped) == config
    assert config_from_mapping(config.to_dict()) == config


def test_default_config_round_trips(tmp_path) -> None:
    default = RunConfig()
    validate(default)
    assert load_config(write(tmp_path, yaml.safe_dump(default.to_dict()))) == default


def test_file_overrides_its_base_only_where_it_says(tmp_path) -> None:
    config = load_config(write(tmp_path, "seed: 3\n"), RunConfig.quick())
    assert config.seed == 3
    assert config.sample_size == RunConfig.quick().sample_size != RunConfig().sample_size
    assert config.severities == [1, 3, 5]
    assert config.run_name == "quick"


def test_empty_file_is_the_base(tmp_path) -> None:
    assert load_config(write(tmp_path, "")) == RunConfig()
    assert load_config(write(tmp_path, "# only a comment\n")) == RunConfig()


def test_null_clears_an_optional_key(tmp_path) -> None:
    assert load_config(write(tmp_path, "sample_size: null\n")).sample_size is None


def test_unknown_key(tmp_path) -> None:
    message = user_error(tmp_path, "seeed: 3\n")
    assert "'seeed'" in message and "seed" in message


@pytest.mark.parametrize(
    "text, key",
    [
        ("sample_size: ten\n", "sample_size"),
        ("sample_size: 1.5\n", "sample_size"),
        ("seed: true\n", "seed"),
        ("download: yes please\n", "download"),
        ("severities: 3\n", "severities"),
        ("severities: [1, two]\n", "severities"),
        ("models: small_cnn-max\n", "models"),
        ("suites: [1]\n", "suites"),
        ("run_name: 12\n", "run_name"),
    ],
)
def test_wrong_type(tmp_path, text, key) -> None:
    assert repr(key) in user_error(tmp_path, text)


@pytest.mark.parametrize("severity", [0, 6, -1])
def test_bad_severity(tmp_path, severity) -> None:
    message = user_error(tmp_path, f"suites: [corruption]\nseverities: [1, {severity}]\n")
    assert str(severity) in message and "1..5" in message


def test_empty_severities(tmp_path) -> None:
    assert "severities" in user_error(tmp_path, "suites: [corruption]\nseverities: []\n")


@pytest.mark.parametrize("value", ["[gaussian_noise, nope]", "nope"])
def test_unknown_corruption(tmp_path, value) -> None:
    message = user_error(tmp_path, f"suites: [corruption]\ncorruptions: {value}\n")
    assert "'nope'" in message and "gaussian_noise" in message


@pytest.mark.parametrize("value", ["common", "extra", "all"])
def test_corruption_groups(tmp_path, value) -> None:
    config = load_config(write(tmp_path, f"suites: [corruption]\ncorruptions: {value}\n"))
    names = selected_corruptions(config)
    assert ("gaussian_noise" in names) == (value != "extra")
    assert ("spatter" in names) == (value != "common")
    assert len(names) == {"common": 15, "extra": 4, "all": 19}[value]


def test_unknown_suite(tmp_path) -> None:
    message = user_error(tmp_path, "suites: [corruption, nope]\n")
    assert "'nope'" in message and "corruption" in message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("profile: huge\n", "'huge'"),
        ("dataset: mnist9\n", "'mnist9'"),
        ("sample_size: 0\n", "sample_size"),
        ("workers: 0\n", "workers"),
        ("run_name: a/b\n", "run_name"),
        ("run_name: .hidden\n", "run_name"),
    ],
)
def test_bad_values(tmp_path, text, fragment) -> None:
    assert fragment in user_error(tmp_path, "suites: [corruption]\n" + text)


@pytest.mark.parametrize(
    "text",
    [
        "models: [a\nseverities: [1, 2\n",
        "seed: 1\n  bad indent: 2\n",
        "key: 'unclosed\n",
        "\tseed: 1\n",
    ],
)
def test_invalid_yaml(tmp_path, text) -> None:
    message = user_error(tmp_path, text)
    assert "not valid YAML" in message
    assert "config.yaml" in message


@pytest.mark.parametrize("bad_line", ["  x: 2", "models: [a, b]]", "\tx: 2"])
def test_invalid_yaml_names_the_line(tmp_path, bad_line) -> None:
    assert "line 3" in user_error(tmp_path, f"seed: 1\nworkers: 1\n{bad_line}\nrun_name: a\n")


@pytest.mark.parametrize("text", ["- seed\n- 3\n", "just a string\n", "42\n"])
def test_file_must_hold_a_mapping(tmp_path, text) -> None:
    assert "mapping" in user_error(tmp_path, text)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_config_from_mapping_checks_like_files() -> None:
    with pytest.raises(UserError, match="'bogus'"):
        config_from_mapping({"bogus": 1})
    with pytest.raises(UserError, match="outside 1..5"):
        config_from_mapping({"suites": ["corruption"], "severities": [9]})
    base = RunConfig(seed=5)
    assert config_from_mapping({"workers": 1}, base) == dataclasses.replace(base, workers=1)


# ---------------------------------------------------------------- plugin-owned options


@pytest.fixture
def toy_suite():
    """A new suite as a contributor adds one: its own options and validation, one registry entry."""
    from robustbench_lift.evaluation.suites import SUITES, Suite
    from robustbench_lift.options import Option

    class ToySuite(Suite):
        name = "toy"
        description = "a suite added by one module and one registry entry"
        options = {"toy_level": Option(int, 3, "how hard")}

        def validate(self, config) -> None:
            if config.toy_level > 9:
                raise UserError(f"toy_level must be at most 9, got {config.toy_level}")

    SUITES.add("toy", ToySuite())
    try:
        yield
    finally:
        del SUITES._entries["toy"]


def test_a_new_suite_brings_its_own_config_keys(toy_suite) -> None:
    assert RunConfig().toy_level == 3
    config = config_from_mapping({"suites": ["toy"], "toy_level": 5})
    assert config.toy_level == 5 and config.to_dict()["toy_level"] == 5
    with pytest.raises(UserError, match="toy_level.*integer"):
        config_from_mapping({"suites": ["toy"], "toy_level": "hard"})
    with pytest.raises(UserError, match="at most 9"):
        config_from_mapping({"suites": ["toy"], "toy_level": 12})
    # Options of a suite the run does not select are accepted and unused.
    assert config_from_mapping({"suites": ["shift"], "toy_level": 12}).toy_level == 12


def test_options_read_as_attributes_and_round_trip() -> None:
    config = RunConfig(severities=[1, 3], attacks=["fgsm"])
    assert config.severities == [1, 3] and config.attacks == ["fgsm"]
    assert config.replace(seed=4).severities == [1, 3]
    with pytest.raises(AttributeError):
        _ = config.no_such_key
    with pytest.raises(UserError, match="unknown config key 'no_such_key'"):
        RunConfig(no_such_key=1)
