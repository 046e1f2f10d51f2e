"""``raytrade serve RUN_OR_PATH``: serve a trained policy over HTTP (Ray Serve + FastAPI).

This module only parses options; :mod:`serve.launcher` starts, waits and shuts down. Heavy
imports (ray, torch) happen inside the command, so ``raytrade --help`` stays instant. Run names
are looked up under ``$RAYTRADE_RUNS_DIR`` (default ``runs``), as ``raytrade backtest`` does.
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
    max_sessions: int = typer.Option(100_000, "--max-sessions", min=1,
                                     help="Recurrent sessions kept per API key (least recently used evicted)."),
    max_request_bars: int = typer.Option(65_536, "--max-request-bars", min=1,
                                         help="Work budget: bars per request, every series (413 past it)."),
    max_request_steps: int = typer.Option(4_096, "--max-request-steps", min=1,
                                          help="Work budget: policy steps per request, symbols x replayed bars."),
    max_connections: int = typer.Option(1024, "--max-connections", min=1,
                                        help="Open connections per server (proxy, each direct port); idle ones "
                                             "are closed first beyond it."),
    header_timeout_s: float = typer.Option(10.0, "--header-timeout-s",
                                           help="Close connections that send no complete request headers within "
                                                "this (idle keep-alive connections too)."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final | best | latest (run directories)."),
    api_key_env: str = typer.Option("RAYTRADE_API_KEY", "--api-key-env",
                                    help="Environment variable holding the API key (required); "
                                         "'name:key,name2:key2' gives each client its own key and sessions."),
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
    from serve.launcher import Launch, serve

    knobs = {"checkpoint": checkpoint, "env_id": env_id, "replicas": replicas, "num_cpus": num_cpus,
             "max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_ms / 1e3,
             "max_ongoing_requests": max_ongoing_requests, "max_queued_requests": max_queued_requests,
             "request_timeout_s": request_timeout_s, "max_body_bytes": int(max_body_mb * 2**20),
             "session_ttl_s": session_ttl_s, "max_sessions": max_sessions, "max_request_bars": max_request_bars,
             "max_request_steps": max_request_steps, "public_docs": public_docs, "access_log": access_log}
    launch = Launch(ref=run, host=host, port=port, api_key_env=api_key_env, direct_port=direct_port,
                    ray_address=ray_address, env_config_json=env_config, mlflow_uri=mlflow_uri, knobs=knobs,
                    max_connections=max_connections, header_timeout_s=header_timeout_s)
    serve(launch, echo=typer.echo, warn=lambda text: typer.secho(text, fg=typer.colors.YELLOW, err=True))
