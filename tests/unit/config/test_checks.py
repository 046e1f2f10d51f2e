"""Env ids, env config keys and model config keys are checked when the file is loaded (before
Ray starts), and numeric hyperparameters are bounded; every error names the file and the key."""

from __future__ import annotations

import pytest

import envs
from app.config.checks import config_class
from app.config.loader import load_experiment, parse_experiment
from app.errors import ConfigError
from envs.core.config import EngineConfig

BASE = "name: checks\nenv: {id: raytrade/SyntheticMeanReversion-v0}\n"


def load_with(tmp_path, extra: str):
    path = tmp_path / "exp.yaml"
    path.write_text(BASE + extra + "\n")
    return path, lambda: load_experiment(path)


@pytest.mark.parametrize(("extra", "key", "why"), [
    ("env: {id: raytrade/StockSwing-v9}", "env.id", "not a raytrade env"),
    ("env: {id: CartPole-v1}", "env.id", "not a raytrade env"),
    ("env: {id: raytrade/StockSwing-v0, config: {windw_bars: 10}}", "env.config", "windw_bars"),
    ("env: {id: raytrade/StockSwing-v0, config: {window_bars: 0}}", "env.config", "window_bars"),
    ("env: {id: raytrade/CryptoFutures-v0, config: {mode: buy_only}}", "env.config", "mode"),
    ("env: {id: raytrade/Portfolio-v0, config: {horizon_bars: 5}}", "env.config", "horizon_bars"),
    ("model: {name: mlp, config: {embed_dimm: 8}}", "model.config", "embed_dimm"),
    ("model: {name: mlp, config: {gru_hidden: 8}}", "model.config", "belongs to model 'gru'"),
    ("model: {name: attention, config: {attn_dim: 10, attn_heads: 4}}", "model.config", "attn_heads"),
    ("curriculum: {stages: [{name: easy, env: {fee_bp: 0}}]}", "curriculum.stages.0.env", "fee_bp"),
])
def test_bad_env_and_model_sections_name_the_file_and_the_key(tmp_path, extra, key, why):
    text = BASE.replace("env: {id: raytrade/SyntheticMeanReversion-v0}\n", "") if extra.startswith("env") else BASE
    path = tmp_path / "exp.yaml"
    path.write_text(text + extra + "\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(path) in str(err.value) and key in str(err.value) and why in str(err.value)


@pytest.mark.parametrize("extra", [
    "env: {id: raytrade/StockSwing-v0, config: {window_bars: 20, mode: swing, symbols: [A, B]}}",
    "env: {id: raytrade/CryptoFutures-v0, config: {leverage: 2.0}}",
    "model: {name: gru, config: {gru_hidden: 16, max_seq_len: 8, vf_share_layers: true}}",
    "curriculum: {stages: [{name: easy, env: {fee_bps: 0}}, {name: real, env: {fee_bps: 10}}]}",
])
def test_valid_sections_pass(tmp_path, extra):
    text = BASE.replace("env: {id: raytrade/SyntheticMeanReversion-v0}\n", "") if extra.startswith("env") else BASE
    path = tmp_path / "exp.yaml"
    path.write_text(text + extra + "\n")
    load_experiment(path)


def test_saved_runs_are_checked_the_same_way():
    with pytest.raises(ConfigError, match="run/experiment.yaml: env.config.*windw_bars"):
        parse_experiment({"name": "r", "env": {"id": "raytrade/StockSwing-v0", "config": {"windw_bars": 3}}},
                         where="run/experiment.yaml")


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_every_raytrade_env_declares_its_config_dataclass(env_id):
    cls = config_class(env_id)
    assert issubclass(cls, EngineConfig)
    cls.from_mapping({})  # the defaults are valid


@pytest.mark.parametrize(("extra", "key"), [
    ("algorithm: {lr: -0.001}", "algorithm.lr"),
    ("algorithm: {lr: 0}", "algorithm.lr"),
    ("algorithm: {lr: .inf}", "algorithm.lr"),
    ("algorithm: {lr: .nan}", "algorithm.lr"),
    ("algorithm: {lr: [[0, 0.001], [1000, -0.001]]}", "algorithm.lr"),
    ("algorithm: {entropy_coeff: -0.01}", "algorithm.entropy_coeff"),
    ("algorithm: {entropy_coeff: [[0, 0.01], [1000, -0.01]]}", "algorithm.entropy_coeff"),
    ("algorithm: {gamma: 0}", "algorithm.gamma"),
    ("algorithm: {gamma: 1.01}", "algorithm.gamma"),
    ("algorithm: {lambda_: -0.1}", "algorithm.lambda_"),
    ("algorithm: {lambda_: 1.1}", "algorithm.lambda_"),
    ("algorithm: {clip_param: 0}", "algorithm.clip_param"),
    ("algorithm: {train_batch_size: 0}", "algorithm.train_batch_size"),
    ("algorithm: {minibatch_size: -1}", "algorithm.minibatch_size"),
    ("algorithm: {num_epochs: 0}", "algorithm.num_epochs"),
])
def test_out_of_range_hyperparameters_are_refused(tmp_path, extra, key):
    path, load = load_with(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        load()
    assert str(path) in str(err.value) and key in str(err.value)


def test_boundary_hyperparameters_are_accepted(tmp_path):
    _, load = load_with(tmp_path, "algorithm: {lr: 1.0e-6, entropy_coeff: [[0, 0.01], [1000, 0.0]], "
                                  "gamma: 1.0, lambda_: 0.0}")
    exp = load()
    assert exp.algorithm.entropy_coeff == [(0, 0.01), (1000, 0.0)] and exp.algorithm.gamma == 1.0
