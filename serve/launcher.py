"""``raytrade serve``: from command-line values to a running Serve application, and back down.

The CLI (app/cli/serve.py) only parses options into a :class:`Launch` and calls :func:`serve`.
The steps, in the order that matters:

1. the API key is read and the ports are checked free (fail before starting anything);
2. the deployment options are built (``ref`` and the runs directory made absolute: replicas do
   not share the driver's working directory) and the policy is LOADED once on the driver, so a
   missing path, a truncated checkpoint or a config mismatch is one line and exit code 2 here
   (:class:`~app.errors.ModelLoadError`), not tracebacks from every replica;
3. direct ingress and the connection limits (:mod:`serve.connections`) are configured through
   environment variables that Ray reads when it starts, so they are set before ``ray.init``;
4. Ray (a local instance unless ``ray_address``) and Serve start, the app is deployed;
5. it waits for SIGINT (Ctrl-C, also when started from a non-interactive shell, which ignores
   it by default) or SIGTERM, then drains: the app is deleted first, its replicas finishing
   their in-flight requests, then Serve shuts down, and Ray if it started it.

Heavy imports (ray, torch) stay inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import ConfigError, ModelLoadError, RaytradeError

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
    max_connections: int = 1024           # per server (the proxy, each replica's direct port)
    header_timeout_s: float = 10.0        # request headers must arrive within this; idle closes then
    max_header_bytes: int = 16 * 1024


def serve(launch: Launch, echo: Callable[[str], None] = print,
          warn: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """Serve ``launch`` until ``stop`` is set (Ctrl-C / SIGTERM by default); see the module
    docstring for the order of the steps."""
    from serve.auth import ApiKeyVerifier

    verifier = ApiKeyVerifier.from_env(launch.api_key_env)
    check_ports(launch)
    options = deployment_options(launch)
    echo(describe_policy(options))
    preload(options)
    configure_direct_ingress(launch)
    configure_connections(launch)
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


def configure_connections(launch: Launch) -> None:
    """The connection limits for Ray's proxy and direct ingress (read when Ray starts)."""
    from serve.connections import ConnectionLimits, connection_env

    try:
        limits = ConnectionLimits(launch.max_connections, launch.header_timeout_s, launch.max_header_bytes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if launch.ray_address is None:
        os.environ.update(connection_env(limits))


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound now (what the proxy will do)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(launch: Launch) -> None:
    """A port in use is one line, before Ray starts (not Serve's 80 lines of retries)."""
    if launch.ray_address is not None:
        return
    ports = [("--port", launch.port)] + ([("--direct-port", launch.direct_port)] if launch.direct_port else [])
    for flag, port in ports:
        if not port_free(launch.host, port):
            raise ConfigError(f"{flag} {port}: {launch.host}:{port} is already in use (another server?); "
                              "choose another port")


def preload(options: DeploymentOptions) -> None:
    """Load the policy here, as each replica will: every checkpoint problem is one line."""
    from serve.policy_service import PolicyService, ServiceSettings

    try:
        PolicyService.load(options.ref, ServiceSettings(), checkpoint=options.checkpoint, runs_dir=options.runs_dir,
                           env_id=options.env_id, env_config=options.env_config or None,
                           tracking_uri=options.tracking_uri)
    except RaytradeError as exc:
        raise ModelLoadError(_one_line(str(exc))) from exc
    except Exception as exc:  # noqa: BLE001 - torch/pickle/IO errors of a broken checkpoint
        raise ModelLoadError(_one_line(f"{options.ref}: cannot load the policy "
                                       f"({type(exc).__name__}: {exc})")) from exc


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


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

    try:
        source = resolve(options.ref, checkpoint=options.checkpoint, runs_dir=options.runs_dir,
                         env_id=options.env_id, env_config=options.env_config or None)
    except RaytradeError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. an absolute path the loader cannot interpret
        raise ModelLoadError(_one_line(f"{options.ref}: cannot resolve the policy ({type(exc).__name__}: {exc})")) \
            from exc
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
    deployed = False
    try:
        try:
            ray_serve.start(http_options=http_options(launch.host, launch.port, options,
                                                      keep_alive_s=max(1, int(launch.header_timeout_s))),
                            logging_config={"enable_access_log": options.access_log, "log_level": "WARNING"})
            ray_serve.run(build(options, verifier), name=APP_NAME, route_prefix="/", blocking=False)
            deployed = True
        except Exception as exc:  # noqa: BLE001 - Serve's errors carry pages of context: one line
            raise ConfigError(_one_line(f"Ray Serve could not start the app: {type(exc).__name__}: {exc}")) from exc
        echo(banner(launch, options))
        wait_for_stop(stop)
        echo("stopping: draining in-flight requests...")
    finally:
        if deployed:
            drain(ray_serve)
        ray_serve.shutdown()
        if started:
            ray.shutdown()


APP_NAME = "raytrade"


def drain(ray_serve: Any) -> None:
    """Delete the app first: Serve stops routing to its replicas and each finishes its in-flight
    requests (up to its ``graceful_shutdown_timeout_s``) before it stops."""
    with contextlib.suppress(Exception, KeyboardInterrupt):  # a second Ctrl-C skips the drain
        ray_serve.delete(APP_NAME, _blocking=True)


def wait_for_stop(stop: threading.Event | None = None) -> None:
    """Block until ``stop`` is set, or SIGTERM or SIGINT arrives (main thread only). SIGINT gets
    a handler explicitly: a shell running us in the background (``&`` in a script) starts us
    with SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def handler(*_: Any) -> None:
            if stop.is_set():  # a second signal: stop waiting for the drain
                raise KeyboardInterrupt
            stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
