"""cluster.yaml passes Ray's own cluster-config validator (offline: no cloud credentials, no Ray
started) and its node types carry what tune_configs/cluster_example.yaml asks for."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from app.config.loader import load_experiment

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster.yaml"
EXAMPLE = ROOT / "tune_configs" / "cluster_example.yaml"


def _validated(raw: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))  # fills in the AWS defaults, merges setup commands
    validate_config(config)  # Ray's JSON schema + its own consistency checks
    return config


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


@pytest.fixture(scope="module")
def config(raw) -> dict:
    return _validated(raw)


def _types(config: dict, resource: str) -> dict[str, dict]:
    return {name: t for name, t in config["available_node_types"].items() if t["resources"].get(resource, 0) > 0}


def test_ray_validates_cluster_yaml(config):
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]


def test_the_validator_really_runs(raw):
    import jsonschema

    broken = copy.deepcopy(raw)
    broken["available_node_types"]["learner_gpu"]["resources"]["GPU"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        _validated(broken)
    broken = copy.deepcopy(raw)
    broken["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError):
        _validated(broken)


def test_head_runs_the_driver_only(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["max_workers"] == 0
    assert head["resources"].get("GPU", 0) == 0
    assert "learner" not in head["resources"] and "rollout" not in head["resources"]


def test_learner_node_type_has_a_gpu_and_the_learner_resource(config):
    learners = _types(config, "learner")
    assert learners, "a node type must carry the `learner` resource"
    for name, node in learners.items():
        assert node["resources"].get("GPU", 0) >= 1, name
        assert node["node_config"]["InstanceType"].startswith(("g", "p")), name  # a GPU instance
        assert node["max_workers"] >= 1, name


def test_rollout_node_types_are_cpu_only(config):
    rollouts = _types(config, "rollout")
    assert rollouts, "a node type must carry the `rollout` resource"
    for name, node in rollouts.items():
        assert node["resources"].get("GPU", 0) == 0, name
        assert "learner" not in node["resources"], name
        assert node["resources"]["rollout"] <= node["resources"]["CPU"], name
        assert node["max_workers"] >= 1, name


def test_setup_installs_cpu_torch_on_cpu_nodes_and_cuda_torch_on_the_gpu_node(config):
    cpu_setup = config["worker_setup_commands"]  # setup_commands merged in by prepare_config
    assert any("torch==2.13.0" in c and "whl/cpu" in c for c in cpu_setup)
    assert any("torch==2.13.0" in c and "whl/cpu" in c for c in config["head_setup_commands"])
    for name, node in _types(config, "learner").items():
        gpu_setup = node["worker_setup_commands"]  # replaces the global list on this node type
        assert any("torch==2.13.0" in c and "whl/cpu" not in c for c in gpu_setup), name
        assert any("pip install" in c and "-e ~/raytrade" in c for c in gpu_setup), name
    assert any("pip install" in c and "-e ~/raytrade" in c for c in cpu_setup)
    assert config["file_mounts"]["~/raytrade"] == "."


def test_token_auth_on_every_node(config):
    assert "~/.ray/auth_token" in config["file_mounts"]
    for command in config["head_start_ray_commands"][-1:] + config["worker_start_ray_commands"][-1:]:
        assert "RAY_AUTH_MODE=token" in command
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]


def test_cluster_example_fits_the_node_types(config):
    exp = load_experiment(EXAMPLE)
    res = exp.resources
    assert res.custom_resources_per_env_runner == {"rollout": 1}
    assert res.custom_resources_per_learner == {"learner": 1}
    assert res.num_learners >= 1 and res.num_gpus_per_learner == 1

    def fits(node: dict, demand: dict[str, float]) -> bool:
        return all(node["resources"].get(k, 0) >= v for k, v in demand.items() if v)

    runner = {"CPU": res.num_cpus_per_env_runner, **res.custom_resources_per_env_runner}
    learner = {"CPU": res.num_cpus_per_learner, "GPU": res.num_gpus_per_learner, **res.custom_resources_per_learner}
    types = config["available_node_types"]
    assert [n for n, t in types.items() if fits(t, runner)] == list(_types(config, "rollout"))
    assert [n for n, t in types.items() if fits(t, learner)] == list(_types(config, "learner"))

    def capacity(demand: dict[str, float], node: dict) -> int:
        per_node = min(math.floor(node["resources"].get(k, 0) / v) for k, v in demand.items() if v)
        return per_node * node["max_workers"]

    assert sum(capacity(runner, t) for t in _types(config, "rollout").values()) >= res.num_env_runners
    assert sum(capacity(learner, t) for t in _types(config, "learner").values()) >= res.num_learners
