"""model_config validation and the model registry."""

from __future__ import annotations

import json

import pytest
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from app.models import (
    MODEL_CLASSES,
    MODEL_CONFIG_KEYS,
    MLPModule,
    default_model_config,
    module_spec,
    parse_model_config,
)
from tests.unit.models import CASES


def test_registry_names():
    assert set(MODEL_CLASSES) == {"mlp", "gru", "attention"} == set(MODEL_CONFIG_KEYS)


@pytest.mark.parametrize("name", sorted(MODEL_CLASSES))
def test_module_spec_holds_the_resolved_json_friendly_config(name):
    spec = module_spec(name, {"embed_dim": 8})
    assert isinstance(spec, RLModuleSpec) and spec.module_class is MODEL_CLASSES[name]
    assert spec.model_config == {**default_model_config(name), "embed_dim": 8}
    assert set(spec.model_config) == MODEL_CONFIG_KEYS[name]
    json.dumps(spec.model_config)


def test_defaults():
    gru = default_model_config("gru")
    assert gru["max_seq_len"] == 20 and gru["gru_hidden"] == 128
    assert default_model_config("attention")["attn_pool"] == "last"
    assert "max_seq_len" not in default_model_config("mlp")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="'lstm'"):
        module_spec("lstm", {})


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("mlp", "embed_dim", 0),
        ("mlp", "embed_dim", 1.5),
        ("mlp", "embed_dim", True),
        ("mlp", "fusion_hiddens", [64, 0]),
        ("mlp", "fusion_hiddens", "128"),
        ("mlp", "head_hiddens", 64),
        ("mlp", "activation", "sigmoid"),
        ("mlp", "dropout", 1.0),
        ("mlp", "dropout", float("nan")),
        ("mlp", "layer_norm", 1),
        ("mlp", "input_symlog", "yes"),
        ("mlp", "asset_axis", "time"),
        ("mlp", "sequence_keys", "daily_volume"),
        ("mlp", "pi_init_std", -0.1),
        ("mlp", "initial_log_std", 5.0),
        ("gru", "gru_hidden", -1),
        ("gru", "max_seq_len", 0),
        ("attention", "attn_heads", 3),  # 64 % 3 != 0
        ("attention", "attn_layers", 0),
        ("attention", "attn_pool", "max"),
    ],
)
def test_bad_values_name_the_key(name, key, value):
    with pytest.raises(ValueError, match=f"'{key}'"):
        module_spec(name, {key: value})


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="'embed_dimm'"):
        parse_model_config("mlp", {"embed_dimm": 32})


def test_key_of_another_model_is_named_with_its_owner():
    with pytest.raises(ValueError, match="'gru_hidden'.*'gru'"):
        parse_model_config("attention", {"gru_hidden": 32})


def test_rllib_generic_keys_are_ignored():
    """RLlib merges AlgorithmConfig.model_config (e.g. vf_share_layers) into ours."""
    cfg = parse_model_config("mlp", {"vf_share_layers": False, "fcnet_hiddens": [8],
                                     "max_seq_len": 20, "embed_dim": 8})
    assert cfg.embed_dim == 8


def test_bad_config_also_fails_when_rllib_builds_the_module():
    _, obs_space, act_space = CASES[0]
    spec = RLModuleSpec(module_class=MLPModule, observation_space=obs_space,
                        action_space=act_space, model_config={"fusion_hiddens": [0]})
    with pytest.raises(ValueError, match="'fusion_hiddens'"):
        spec.build()


def test_unsupported_action_space_is_a_clear_error():
    import gymnasium as gym

    _, obs_space, _ = CASES[0]
    spec = module_spec("mlp", {}, observation_space=obs_space,
                       action_space=gym.spaces.Box(-1, 1, (2, 2)))
    with pytest.raises(ValueError, match="Box action space"):
        spec.build()
