"""Experiment YAML -> frozen typed config; every mistake names the file and the key."""

from __future__ import annotations

import pydantic
import pytest

from app.config.loader import apply_overrides, load_experiment
from app.errors import ConfigError

MINIMAL = """
name: smoke
env: {id: raytrade/SyntheticMeanReversion-v0}
"""


def write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_minimal_file_gets_documented_defaults(tmp_path):
    exp = load_experiment(write(tmp_path, MINIMAL))
    assert exp.name == "smoke" and exp.model.name == "mlp" and exp.algorithm.name == "PPO"
    assert exp.resources.num_env_runners == 0 and exp.stopping.iterations == 100


def test_config_is_frozen(tmp_path):
    exp = load_experiment(write(tmp_path, MINIMAL))
    with pytest.raises(pydantic.ValidationError):
        exp.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(("extra", "key"), [
    ("algorithm: {lrr: 0.1}", "algorithm.lrr"),
    ("algorithm: {lr: fast}", "algorithm.lr"),
    ("resources: {num_env_runners: -1}", "resources.num_env_runners"),
    ("algorithm: {train_batch_size: 64, minibatch_size: 128}", "minibatch_size"),
    ("algorithm: {lr: [[100, 0.1], [0, 0.2]]}", "algorithm.lr"),
    ("stopping: {iterations: null}", "budget"),
    ("model: {name: lstm}", "model.name"),
])
def test_bad_key_or_value_names_file_and_key(tmp_path, extra, key):
    path = write(tmp_path, MINIMAL + extra + "\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_schedules_are_piecewise_linear_lists(tmp_path):
    exp = load_experiment(write(tmp_path, MINIMAL + "algorithm: {lr: [[0, 0.001], [10000, 0.0001]]}\n"))
    assert exp.algorithm.lr == [(0, 0.001), (10000, 0.0001)]


def test_overrides_use_dotted_keys_and_yaml_values(tmp_path):
    exp = load_experiment(write(tmp_path, MINIMAL), ["algorithm.lr=0.01", "model.name=gru",
                                                      "model.config.max_seq_len=16", "seed=5"])
    assert exp.algorithm.lr == 0.01 and exp.model.name == "gru" and exp.seed == 5
    assert exp.model.config == {"max_seq_len": 16}


def test_bad_override_is_a_clear_error():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["seed"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_secrets_are_refused(tmp_path):
    path = write(tmp_path, MINIMAL + "tracking: {mlflow_uri: sqlite:///x.db, api_key: abc}\n")
    with pytest.raises(ConfigError, match="tracking.api_key.*environment"):
        load_experiment(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such experiment"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(write(tmp_path, "name: [unclosed"))
