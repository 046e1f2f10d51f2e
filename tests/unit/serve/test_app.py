"""The application builder (``serve run serve.app:build_app``) and ``raytrade serve``: arguments,
options, the API key requirement; nothing here starts Ray."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.errors import ConfigError
from serve.app import build_app, options_from_args
from serve.deployment import STICKY_ROUTER, DeploymentOptions, build, http_options
from tests.unit.serve.helpers import API_KEY


def test_arguments_become_options(tmp_path):
    options, key_env = options_from_args({"checkpoint": str(tmp_path), "replicas": "2", "num_cpus": "0.5",
                                          "max_batch_size": "8", "env_config": '{"window_bars": 10}',
                                          "api_key_env": "K", "public_docs": "true"})
    assert key_env == "K" and options.ref == str(tmp_path.resolve()) and options.replicas == 2
    assert options.env_config == {"window_bars": 10} and options.public_docs and options.ongoing == 16
    assert options.torch_threads == 1 and options.tracking_uri.startswith("sqlite:////")
    with pytest.raises(ConfigError, match="bogus"):
        options_from_args({"checkpoint": "x", "bogus": "1"})
    with pytest.raises(ConfigError, match="checkpoint"):
        options_from_args({})
    with pytest.raises(ValueError, match="max_batch_size"):
        DeploymentOptions(ref="x", max_batch_size=0)


def test_the_application_carries_the_limits(monkeypatch):
    monkeypatch.delenv("RAYTRADE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="RAYTRADE_API_KEY is not set"):
        build_app({"checkpoint": "runs/x"})
    monkeypatch.setenv("RAYTRADE_API_KEY", API_KEY)
    application = build_app({"checkpoint": "runs/x", "replicas": "3", "max_queued_requests": "5", "num_cpus": "2"})
    deployment = application._bound_deployment
    config = deployment._deployment_config
    assert (config.num_replicas, config.max_queued_requests, config.max_ongoing_requests) == (3, 5, 32)
    assert config.logging_config["enable_access_log"] is False
    assert config.request_router_config.request_router_class == STICKY_ROUTER  # sessions stick to a replica
    actor = deployment._replica_config.ray_actor_options
    assert actor["num_cpus"] == 2 and actor["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "2"
    single = build(DeploymentOptions(ref="x"), None)._bound_deployment._deployment_config
    assert single.request_router_config.request_router_class != STICKY_ROUTER
    assert http_options("127.0.0.1", 8000, DeploymentOptions(ref="x", request_timeout_s=3))["request_timeout_s"] == 11


def test_cli_requires_the_key_before_starting_anything(monkeypatch):
    monkeypatch.delenv("RAYTRADE_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "runs/whatever"])
    assert result.exit_code != 0 and "RAYTRADE_API_KEY is not set" in str(result.exception)
