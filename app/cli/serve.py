"""``raytrade serve RUN_OR_PATH``: serve a trained policy over HTTP (Ray Serve + FastAPI).

Heavy imports (ray, torch) happen inside the command, so ``raytrade --help`` stays instant.
"""

from __future__ import annotations

import typer


def serve_command(
    run: str = typer.Argument(..., help="A run directory or name under runs/, a checkpoint path, or "
                                        "models:/<name>/<version|latest>."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback unless told otherwise)."),
    port: int = typer.Option(8000, "--port"),
    replicas: int = typer.Option(1, "--replicas", min=1),
    num_cpus: float = typer.Option(1.0, "--num-cpus", help="CPUs per replica (torch threads = max(1, int))."),
    max_batch_size: int = typer.Option(16, "--max-batch-size", min=1, help="Requests per batched forward pass."),
    batch_wait_ms: float = typer.Option(0.0, "--batch-wait-ms", min=0.0,
                                        help="Wait for a batch to fill (0: take what is queued)."),
    max_ongoing_requests: int = typer.Option(None, "--max-ongoing-requests", help="Per replica (default 2x batch)."),
    max_queued_requests: int = typer.Option(64, "--max-queued-requests", help="Beyond this: 503 at once."),
    request_timeout_s: float = typer.Option(10.0, "--request-timeout-s", help="504 past it."),
    max_body_mb: float = typer.Option(4.0, "--max-body-mb", help="413 for larger request bodies."),
    session_ttl_s: float = typer.Option(172_800.0, "--session-ttl-s", help="Recurrent sessions expire after this."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final | best | latest (run directories)."),
    api_key_env: str = typer.Option("RAYTRADE_API_KEY", "--api-key-env",
                                    help="Environment variable holding the API key (required)."),
    env_id: str = typer.Option(None, "--env-id", help="Bare checkpoints only: the env the policy trades."),
    env_config: str = typer.Option(None, "--env-config", help="Bare checkpoints only: the env config as JSON."),
    mlflow_uri: str = typer.Option(None, "--mlflow-uri", help="For models:/ references (default sqlite:///mlruns.db)."),
    public_docs: bool = typer.Option(False, "--public-docs", help="Serve /docs and /openapi.json without the key."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (off by default)."),
    direct_port: int = typer.Option(None, "--direct-port",
                                    help="Also answer straight from the replica on this port (Ray Serve's direct "
                                         "ingress: no proxy hop, ~5x lower latency; replicas take ports from PORT)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Join this Ray cluster (default: start a local one)."),
) -> None:
    """Serve a trained policy: POST /v1/act, GET /v1/models, GET /v1/health, /docs. Ctrl-C stops it."""
    import json
    import os
    import signal
    import threading
    from pathlib import Path

    from app.errors import ConfigError
    from serve.auth import ApiKeyVerifier

    verifier = ApiKeyVerifier.from_env(api_key_env)  # fail before starting anything
    if direct_port is not None:
        if ray_address is not None:
            raise ConfigError("--direct-port: Ray reads the direct-ingress settings when it starts; start the "
                              "cluster with serve.direct_ingress.direct_ingress_env(...) in its environment")
        from serve.direct_ingress import direct_ingress_env

        os.environ.update(direct_ingress_env(direct_port, replicas))  # before Ray (and ray.serve) load
    from app.policy.loader import resolve
    from app.tracking.registry import absolute_tracking_uri
    from serve.deployment import DeploymentOptions, build, describe, http_options

    ref = run if run.startswith("models:/") or not Path(run).expanduser().exists() else str(Path(run).resolve())
    options = DeploymentOptions(
        ref=ref, checkpoint=checkpoint, runs_dir=str(Path("runs").resolve()), env_id=env_id,
        env_config=json.loads(env_config) if env_config else {}, tracking_uri=absolute_tracking_uri(mlflow_uri),
        replicas=replicas, num_cpus=num_cpus, max_batch_size=max_batch_size,
        batch_wait_timeout_s=batch_wait_ms / 1e3, max_ongoing_requests=max_ongoing_requests,
        max_queued_requests=max_queued_requests, request_timeout_s=request_timeout_s,
        max_body_bytes=int(max_body_mb * 2**20), session_ttl_s=session_ttl_s, public_docs=public_docs,
        access_log=access_log)
    if not ref.startswith("models:/"):
        source = resolve(ref, checkpoint=checkpoint, runs_dir=options.runs_dir, env_id=env_id,
                         env_config=options.env_config or None)
        typer.echo(f"policy {source.model_version} ({source.env_id}) from {source.policy_dir}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: binding to {host}: reachable from the network; the API key is the only "
                    "protection (put TLS in front)", fg=typer.colors.YELLOW, err=True)

    import ray
    from ray import serve

    started = not ray.is_initialized() and ray_address is None
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": str(options.torch_threads)}})
    try:
        serve.start(http_options=http_options(host, port, options),
                    logging_config={"enable_access_log": access_log, "log_level": "WARNING"})
        serve.run(build(options, verifier), name="raytrade", route_prefix="/", blocking=False)
        direct = ""
        if direct_port is not None:
            from serve.direct_ingress import replica_ports

            ports = replica_ports("127.0.0.1" if host in ("0.0.0.0", "::") else host, direct_port, replicas)
            direct = "".join(f" and http://{host}:{p} (replica {i}, direct)" for i, p in enumerate(ports))
        typer.echo(f"serving at http://{host}:{port}{direct}  (POST /v1/act, GET /v1/models, /v1/health, /docs)\n"
                   f"options: {json.dumps(describe(options) | {'ref': ref}, default=str)}\nCtrl-C stops it.")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
