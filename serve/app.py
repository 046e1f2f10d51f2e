"""``serve run serve.app:build_app checkpoint=REF [key=value ...]``: the application builder.

Arguments (all but ``checkpoint`` optional; unknown ones are an error naming them)::

    checkpoint=runs/smoke-...        a run, checkpoint path or models:/<name>/<version>
    which=final|best|latest          the run's checkpoint to serve
    replicas=1 num_cpus=1 max_batch_size=16 batch_wait_timeout_s=0 max_ongoing_requests=32
    max_queued_requests=64 request_timeout_s=10 max_body_bytes=4194304
    session_ttl_s=172800 max_sessions=100000 (per API key) max_request_bars=65536 max_request_steps=4096
    public_docs=false access_log=false
    api_key_env=RAYTRADE_API_KEY     the environment variable holding the API key (required)
    env_id=... env_config='{"window_bars": 50}' tracking_uri=sqlite:///mlruns.db runs_dir=runs

``serve run`` binds its proxy to 127.0.0.1:8000 by default; ``raytrade serve`` (app/cli/serve.py)
also sets the host, the port, the proxy timeout and keep-alive, turns the proxy's access log off,
and starts Ray with the connection limits (:mod:`serve.connections`); with ``serve run``, export
``serve.connections.connection_env(ConnectionLimits())`` before Ray starts for the proxy to get
them (the replicas' direct ingress gets them from the deployment either way).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from app.errors import ConfigError
from app.runs import default_runs_dir
from app.tracking.registry import absolute_tracking_uri
from serve.auth import DEFAULT_ENV, ApiKeyVerifier
from serve.deployment import DeploymentOptions, build

#: DeploymentOptions fields that ``serve run`` resolves itself; every other field (replicas,
#: batching, queue, timeouts, sessions, docs, logs...) is a knob taken as given.
_RESOLVED = {"ref", "checkpoint", "runs_dir", "tracking_uri", "env_config"}
KNOBS = tuple(f.name for f in fields(DeploymentOptions) if f.name not in _RESOLVED)


class BuildArgs(BaseModel):
    """The arguments ``serve run`` passes as strings; knobs are checked by name here and by
    value by :class:`DeploymentOptions` itself (one list of settings and defaults, not two)."""

    model_config = ConfigDict(extra="allow")

    checkpoint: str
    which: str = "final"
    tracking_uri: str | None = None
    runs_dir: str = Field(default_factory=lambda: str(default_runs_dir()))
    api_key_env: str = DEFAULT_ENV
    env_config: dict[str, Any] = {}

    @field_validator("env_config", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


def options_from_args(args: dict[str, Any]) -> tuple[DeploymentOptions, str]:
    """``serve run`` arguments -> (DeploymentOptions, the API key's environment variable)."""
    try:
        parsed = BuildArgs.model_validate(args)
        knobs = dict(parsed.model_extra or {})
        unknown = sorted(set(knobs) - set(KNOBS))
        if unknown:
            raise ConfigError(f"serve.app:build_app arguments: unknown {unknown}; known: "
                              f"{sorted({*BuildArgs.model_fields, *KNOBS})}")
        ref = parsed.checkpoint
        if not ref.startswith("models:/") and Path(ref).expanduser().exists():
            ref = str(Path(ref).expanduser().resolve())  # replicas may not share the driver's cwd
        options = TypeAdapter(DeploymentOptions).validate_python(knobs | {
            "ref": ref, "checkpoint": parsed.which, "runs_dir": str(Path(parsed.runs_dir).resolve()),
            "env_config": parsed.env_config, "tracking_uri": absolute_tracking_uri(parsed.tracking_uri)})
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ConfigError(f"serve.app:build_app arguments: {exc}") from exc
    return options, parsed.api_key_env


def build_app(args: dict[str, Any]) -> Any:
    """The Serve application for ``serve run serve.app:build_app checkpoint=...``."""
    options, key_env = options_from_args(args)
    return build(options, ApiKeyVerifier.from_env(key_env))
