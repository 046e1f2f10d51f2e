"""``raytrade dashboard``: runs, learning curves and backtests in a browser (:mod:`app.ui.dashboard`)."""

from __future__ import annotations

from pathlib import Path

import typer


def dashboard_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback unless told otherwise)."),
    port: int = typer.Option(8050, "--port"),
    mlflow_uri: str = typer.Option("sqlite:///mlruns.db", "--mlflow-uri", envvar="RAYTRADE_MLFLOW_URI",
                                   help="MLflow tracking URI (the experiment YAMLs use sqlite:///mlruns.db)."),
    runs_dir: Path = typer.Option(None, "--runs-dir", envvar="RAYTRADE_RUNS_DIR", help="Run directories (default runs)."),
    store: Path = typer.Option(None, "--store", help="Read bars from this store instead of the one each backtest "
                                                    "recorded."),
    trader_state: Path = typer.Option(Path("trading_state"), "--trader-state",
                                      help="The live traders' state databases (<account>.sqlite), read-only."),
    api_key_env: str = typer.Option("RAYTRADE_API_KEY", "--api-key-env",
                                    help="Environment variable holding the API key (required, >= 16 characters)."),
) -> None:
    """Serve the dashboard: runs and sweeps from MLflow, learning curves, two runs compared, and a
    backtest explorer (candles with the agent's trades, probabilities, value, equity). Sign in
    with the API key (the same scheme as `raytrade serve`). Ctrl-C stops it."""
    import uvicorn

    from app.runs import default_runs_dir
    from app.ui.dashboard import create_app
    from app.ui.dashboard_auth import ApiKeyVerifier
    from app.ui.dashboard_data import Sources

    verifier = ApiKeyVerifier.from_env(api_key_env)
    src = Sources(mlflow_uri, Path(runs_dir) if runs_dir is not None else default_runs_dir(), store, trader_state)
    typer.echo(f"raytrade dashboard on http://{host}:{port}/ (sign in with ${api_key_env}); runs from {src.runs_dir}, "
               f"MLflow {mlflow_uri}")
    uvicorn.run(create_app(src, verifier), host=host, port=port, log_level="warning", access_log=False)
