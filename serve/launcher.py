"""``raytrade serve``: from command-line values to a running Serve application, and back down.

The CLI (app/cli/serve.py) only parses options into a :class:`Launch` and calls :func:`serve`.
The steps, in the order that matters:

1. the API key is read (fail before starting anything);
2. direct ingress, when asked for, is configured through environment variables that Ray reads
   when it starts, so they are set before ``ray`` / ``ray.serve`` are imported;
3. the deployment options are built (``ref`` and the runs directory made absolute: replicas do
   not share the driver's working directory) and the policy is resolved once on the driver, so
   a bad reference fails here rather than in every replica;
4. Ray (a local instance unless ``ray_address``) and Serve start, the app is deployed;
5. it waits for Ctrl-C or SIGTERM, then shuts Serve down, and Ray if it started it.

Heavy imports (ray, torch) stay inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import ConfigError

if TYPE_CHECKING:
    from serve.auth import ApiKeyVerifier
    from serve.deployment import DeploymentOptions

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::")


@dataclass(frozen=True)
class Launch:
    """What ``raytrade serve`` was asked for: where to listen, what to serve, how."""

    ref: str
    host: str = "127.0.0.1"
    port: int = 8000
    api_key_env: str = "RAYTRADE_API_KEY"
    direct_port: int | None = None
    ray_address: str | None = None
    runs_dir: Path | None = None          # default: app.runs.default_runs_dir()
    env_config_json: str | None = None    # bare checkpoints only
    mlflow_uri: str | None = None
    #: DeploymentOptions fields taken as given (replicas, batching, queue, timeouts, ...)
    knobs: dict[str, Any] = field(default_factory=dict)


def serve(launch: Launch, echo: Callable[[str], None] = print,
          warn: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """Serve ``launch`` until ``stop`` is set (Ctrl-C / SIGTERM by default); see the module
    docstring for the order of the steps."""
    from serve.auth import ApiKeyVerifier

    verifier = ApiKeyVerifier.from_env(launch.api_key_env)
    configure_direct_ingress(launch)
    options = deployment_options(launch)
    echo(describe_policy(options))
    warning = exposure_warning(launch.host)
    if warning:
        warn(warning)
    run_until_stopped(launch, options, verifier, echo, stop)


def configure_direct_ingress(launch: Launch) -> None:
    """Set Ray Serve's direct-ingress variables (read when Ray starts) for ``--direct-port``."""
    if launch.direct_port is None:
        return
    if launch.ray_address is not None:
        raise ConfigError("--direct-port: Ray reads the direct-ingress settings when it starts; start the "
                          "cluster with serve.direct_ingress.direct_ingress_env(...) in its environment")
    from serve.direct_ingress import direct_ingress_env

    replicas = int(launch.knobs.get("replicas", 1))
    os.environ.update(direct_ingress_env(launch.direct_port, replicas))  # before Ray (and ray.serve) load


def resolve_ref(ref: str) -> str:
    """A registered model as given; an existing path made absolute; anything else (a run name)
    as given, for the policy loader to look up under the runs directory."""
    if ref.startswith("models:/") or not Path(ref).expanduser().exists():
        return ref
    return str(Path(ref).expanduser().resolve())


def deployment_options(launch: Launch) -> DeploymentOptions:
    """The deployment's options (validated by :class:`DeploymentOptions` itself)."""
    from app.runs import default_runs_dir
    from app.tracking.registry import absolute_tracking_uri
    from serve.deployment import DeploymentOptions

    try:
        env_config = json.loads(launch.env_config_json) if launch.env_config_json else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--env-config: not valid JSON: {exc}") from exc
    if not isinstance(env_config, dict):
        raise ConfigError(f"--env-config: expected a JSON object, got {launch.env_config_json!r}")
    runs_dir = Path(launch.runs_dir) if launch.runs_dir is not None else default_runs_dir()
    try:
        return DeploymentOptions(ref=resolve_ref(launch.ref), runs_dir=str(runs_dir.expanduser().resolve()),
                                 env_config=env_config, tracking_uri=absolute_tracking_uri(launch.mlflow_uri),
                                 **launch.knobs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def describe_policy(options: DeploymentOptions) -> str:
    """What will be served (resolving the reference once, on the driver: a bad one fails here)."""
    if options.ref.startswith("models:/"):
        return f"policy {options.ref} (fetched from the model registry by each replica)"
    from app.policy.loader import resolve

    source = resolve(options.ref, checkpoint=options.checkpoint, runs_dir=options.runs_dir,
                     env_id=options.env_id, env_config=options.env_config or None)
    return f"policy {source.model_version} ({source.env_id}) from {source.policy_dir}"


def exposure_warning(host: str) -> str | None:
    """A warning when binding beyond loopback (the API key is then the only protection)."""
    if host in LOOPBACK:
        return None
    return (f"warning: binding to {host}: reachable from the network; the API key is the only protection "
            "(put TLS in front)")


def banner(launch: Launch, options: DeploymentOptions) -> str:
    """The lines printed once the app is up: URLs (direct-ingress ports too) and the options."""
    from serve.deployment import describe

    direct = ""
    if launch.direct_port is not None:
        from serve.direct_ingress import replica_ports

        bind = "127.0.0.1" if launch.host in WILDCARD else launch.host
        ports = replica_ports(bind, launch.direct_port, options.replicas)
        direct = "".join(f" and http://{launch.host}:{p} (replica {i}, direct)" for i, p in enumerate(ports))
    return (f"serving at http://{launch.host}:{launch.port}{direct}  (POST /v1/act, GET /v1/models, "
            f"/v1/health, /docs)\noptions: {json.dumps(describe(options) | {'ref': options.ref}, default=str)}\n"
            "Ctrl-C stops it.")


def run_until_stopped(launch: Launch, options: DeploymentOptions, verifier: ApiKeyVerifier,
                      echo: Callable[[str], None], stop: threading.Event | None = None) -> None:
    """Start Ray (unless connected to one) and Serve, deploy, wait for ``stop``, shut down
    what was started (Serve always; Ray only if this call started it)."""
    import ray
    from ray import serve as ray_serve

    from serve.deployment import build, http_options

    started = not ray.is_initialized() and launch.ray_address is None
    if not ray.is_initialized():
        ray.init(address=launch.ray_address, include_dashboard=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": str(options.torch_threads)}})
    try:
        ray_serve.start(http_options=http_options(launch.host, launch.port, options),
                        logging_config={"enable_access_log": options.access_log, "log_level": "WARNING"})
        ray_serve.run(build(options, verifier), name="raytrade", route_prefix="/", blocking=False)
        echo(banner(launch, options))
        wait_for_stop(stop)
    finally:
        ray_serve.shutdown()
        if started:
            ray.shutdown()


def wait_for_stop(stop: threading.Event | None = None) -> None:
    """Block until ``stop`` is set, SIGTERM arrives (main thread only) or Ctrl-C."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
