"""``raytrade runs``: sweeps and trials from MLflow with their key metrics and sparklines of the
learning curves; ``raytrade runs compare A B`` puts two runs side by side.

The store is read by app/tracking/mlflow_tracker.py (the only module that imports mlflow) and laid
out by app/tracking/runs_view.py; this module only parses options and draws (rich, or ``--plain`` text
that pastes cleanly into a chat). Imports stay inside the commands: ``raytrade --help`` is instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from app.tracking.review import RunInfo
    from app.tracking.runs_view import Table

DEFAULT_URI = "sqlite:///mlruns.db"

runs_app = typer.Typer(
    help="MLflow runs: sweeps with their trials, key metrics and sparklines of the learning curves. "
         "`raytrade runs compare A B` compares two runs.",
    invoke_without_command=True,
    no_args_is_help=False,
)

EXPERIMENT_HELP = "Only this MLflow experiment (default: all of them)."
URI_HELP = "MLflow tracking URI (the experiment YAMLs use sqlite:///mlruns.db)."
METRIC_HELP = ("A metric to show, KEY or KEY:min where lower is better (repeatable; default "
               "env_runners/episode_return_mean and val_greedy/sharpe).")
PLAIN_HELP = "Plain aligned text, no box drawing (to paste into a chat or an issue)."
WIDTH_HELP = "Sparkline width in characters (longer histories are averaged down to it)."
JSON_HELP = ("The run registry as JSON, newest first, one entry per run (trials too): id, name, time, "
             "config hash, status, env, model, algorithm, key metrics, paths. Derived from the MLflow "
             "store and the run directories (--runs-dir), so it never disagrees with them.")
RUNS_DIR_HELP = "Run directories to join (default $RAYTRADE_RUNS_DIR or runs)."
OUT_HELP = ("Write the --json registry to this file instead (atomically, under FILE.lock, so "
            "concurrent writers and readers never see half a file).")


@runs_app.callback()
def runs_command(
    ctx: typer.Context,
    experiment: str = typer.Option(None, "--experiment", "-e", help=EXPERIMENT_HELP),
    mlflow_uri: str = typer.Option(DEFAULT_URI, "--mlflow-uri", envvar="RAYTRADE_MLFLOW_URI", help=URI_HELP),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show the newest N sweeps or standalone runs."),
    metric: list[str] = typer.Option([], "--metric", "-m", help=METRIC_HELP),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
    width: int = typer.Option(20, "--width", min=4, max=200, help=WIDTH_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    runs_dir: Path = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    out: Path = typer.Option(None, "--out", help=OUT_HELP),
) -> None:
    """List sweeps (parent run, then its trials indented) and standalone runs, newest first:
    status, start time, env steps, last and best value of each key metric and its sparkline."""
    ctx.obj = {"experiment": experiment, "mlflow_uri": mlflow_uri, "metric": metric, "plain": plain,
               "width": width}
    if ctx.invoked_subcommand is not None:
        return
    from app.tracking import runs_view as rv
    from app.tracking.mlflow_tracker import read_histories

    specs = _specs(metric)
    records = _read(mlflow_uri, experiment)
    if as_json or out is not None:
        entries = registry(records, specs, mlflow_uri, runs_dir, limit, with_unlogged=experiment is None)
        text = json.dumps(entries, indent=2)
        if out is None:
            typer.echo(text)
        else:
            write_locked(out, text + "\n")
            typer.echo(f"wrote the registry of {_count(len(entries), 'run')} to {out}")
        return
    if not records:
        typer.echo(f"{mlflow_uri}: {rv.EMPTY_STORE_HINT}")
        return
    forest = rv.tree(records)
    shown = forest[:limit]
    runs = rv.flatten_tree(shown)
    _call(read_histories, mlflow_uri, runs, [s.key for s in specs] + [rv.CLOCK_METRIC])
    table = rv.listing_table(shown, specs, width)
    where = f"experiment {experiment}" if experiment else "all experiments"
    table.title = f"runs in {mlflow_uri} ({where})"
    sweeps = sum(1 for _, children in shown if children)
    more = f" (the newest {len(shown)} of {len(forest)}: --limit)" if len(shown) < len(forest) else ""
    footer = (f"{_count(sweeps, 'sweep')}, {_count(len(shown) - sweeps, 'standalone run')}, "
              f"{_count(len(runs), 'run')} in all{more}; * = a sweep's best trial by {specs[0].title}. "
              "Compare two: raytrade runs compare A B")
    _draw(table, plain, status_col=2)
    typer.echo(footer)


@runs_app.command("compare")
def compare_command(
    ctx: typer.Context,
    run_a: str = typer.Argument(..., metavar="A", help="A run name, name prefix or run id."),
    run_b: str = typer.Argument(..., metavar="B", help="Another run name, name prefix or run id."),
    experiment: str = typer.Option(None, "--experiment", "-e", help=EXPERIMENT_HELP),
    mlflow_uri: str = typer.Option(None, "--mlflow-uri", envvar="RAYTRADE_MLFLOW_URI", help=URI_HELP),
    metric: list[str] = typer.Option([], "--metric", "-m", help=METRIC_HELP),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
    width: int = typer.Option(None, "--width", min=4, max=200, help=WIDTH_HELP),
) -> None:
    """Two runs side by side: the params that differ, then each key metric's last and best value
    and sparkline for A and B (on one scale) and the difference B - A."""
    from app.tracking import runs_view as rv
    from app.tracking.mlflow_tracker import read_histories

    shared = ctx.obj or {}  # options given before `compare` (raytrade runs --plain compare A B)
    experiment = experiment or shared.get("experiment")
    mlflow_uri = mlflow_uri or shared.get("mlflow_uri") or DEFAULT_URI
    specs = _specs(metric or shared.get("metric") or [])
    plain = plain or bool(shared.get("plain"))
    width = width or shared.get("width") or rv.SPARK_WIDTH

    records = _read(mlflow_uri, experiment)
    try:
        a, b = rv.resolve_run(run_a, records), rv.resolve_run(run_b, records)
    except rv.RunLookupError as exc:
        _fail(f"{exc} [{mlflow_uri}{f', experiment {experiment}' if experiment else ''}]")
    _call(read_histories, mlflow_uri, [a, b], [s.key for s in specs] + [rv.CLOCK_METRIC])
    by_id = {r["run_id"]: r for r in records}
    for line in rv.compare_header(a, b, by_id):
        typer.echo(line)
    params = rv.params_table(a, b)
    typer.echo("")
    if params.rows:
        _draw(params, plain)
    else:
        typer.echo(params.title)
    typer.echo("")
    _draw(rv.compare_table(a, b, specs, width), plain)


def registry(records: list[Any], specs: list[Any], uri: str, runs_dir: Path | None, limit: int,
             with_unlogged: bool = True) -> list[dict[str, Any]]:
    """The newest ``limit`` runs as registry entries: every MLflow run (joined with its run
    directory through the ``raytrade.run_dir`` tag), plus run directories under ``runs_dir`` that
    MLflow does not know (``with_unlogged``), by start time, newest first."""
    from app.tracking import review
    from app.tracking.mlflow_tracker import read_histories

    dirs = {info.path: info for info in scan_run_dirs(runs_dir)} if with_unlogged else {}
    known_ids = {r["run_id"] for r in records}
    rows: list[tuple[int, Any, RunInfo | None]] = []
    for record in records:
        info = run_info(record.get("tags", {}).get("raytrade.run_dir"), dirs)
        rows.append((record.get("start_ms") or 0, record, info))
    joined = {info.path for _, _, info in rows if info is not None}
    for path, info in dirs.items():
        if path not in joined and info.state.get("mlflow_run_id") not in known_ids:
            rows.append((info.mtime_ms or 0, None, info))
    rows.sort(key=lambda row: row[0], reverse=True)
    rows = rows[:limit]
    _call(read_histories, uri, [r for _, r, _ in rows if r is not None], [s.key for s in specs])
    return [review.registry_entry(r, info, specs, uri if r is not None else None) for _, r, info in rows]


def write_locked(path: Path, text: str, timeout: float = 60.0) -> None:
    """``text`` into ``path`` atomically while holding ``<path>.lock`` (filelock; waits up to
    ``timeout`` seconds for another writer, then raises ``filelock.Timeout``)."""
    from filelock import FileLock

    from app.atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=timeout):
        atomic_write_text(path, text)


def scan_run_dirs(runs_dir: Path | None) -> list[RunInfo]:
    """Every run directory (one with experiment.yaml) directly under ``runs_dir``."""
    from app.config.schema import default_runs_dir

    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not root.is_dir():
        return []
    found = [run_info(str(p)) for p in sorted(root.iterdir()) if (p / "experiment.yaml").is_file()]
    return [info for info in found if info is not None]


def run_info(path: str | None, cache: dict[str, RunInfo] | None = None,
             backtests: bool = False) -> RunInfo | None:
    """What a run directory holds (None: no such directory). ``backtests``: read each
    backtest's summary.parquet (pandas); otherwise only their names are listed."""
    import yaml

    from app.runs.run_dir import CHECKPOINTS, RunDir
    from app.tracking.review import RunInfo

    if not path:
        return None
    key = str(Path(path).resolve())
    if cache is not None and key in cache and not backtests:
        return cache[key]
    run = RunDir(Path(path))
    if not (run.path / "experiment.yaml").is_file():
        return None
    info = RunInfo(str(run.path), mtime_ms=(run.path / "experiment.yaml").stat().st_mtime_ns // 1_000_000)
    try:
        info.state = json.loads((run.path / "state.json").read_text())
    except (OSError, ValueError):
        info.state = {}
    try:
        info.config = yaml.safe_load((run.path / "experiment.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        info.config = {}
    info.checkpoints = {w: str(run.checkpoint_dir(w)) for w in CHECKPOINTS if run.checkpoint_dir(w).is_dir()}
    bt_root = run.path / "backtests"
    for bt in sorted(bt_root.iterdir()) if bt_root.is_dir() else []:
        if (bt / "summary.parquet").is_file():
            info.backtests[bt.name] = _summary_rows(bt / "summary.parquet") if backtests else []
    return info


def _summary_rows(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        return list(pd.read_parquet(path).to_dict("records"))
    except Exception:  # noqa: BLE001 - a broken summary is shown as empty, not a crash
        return []


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _specs(metric: list[str]) -> list[Any]:
    from app.tracking.runs_view import parse_metrics

    try:
        return parse_metrics(metric)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--metric") from None


def _read(uri: str, experiment: str | None) -> list[Any]:
    from app.tracking.mlflow_tracker import read_runs

    return _call(read_runs, uri, experiment)


def _call(fn: Any, *args: Any) -> Any:
    """A tracking read; a TrackingError (unknown experiment, broken store) is exit code 2."""
    from app.tracking.mlflow_tracker import TrackingError

    try:
        return fn(*args)
    except TrackingError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


STATUS_STYLE = {"running": "yellow", "finished": "green", "failed": "red", "killed": "magenta"}


def _draw(table: Table, plain: bool, status_col: int | None = None) -> None:
    """``--plain``: aligned text; otherwise a rich table (as wide as it needs when not a terminal,
    so a pipe or a file gets whole rows)."""
    if plain:
        from app.tracking.runs_view import render_plain

        typer.echo(render_plain(table))
        return
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table as RichTable
    from rich.text import Text

    out = RichTable(title=table.title or None, title_justify="left", header_style="bold")
    for header, align in zip(table.headers, table.align, strict=True):
        out.add_column(header, justify="right" if align == "r" else "left", no_wrap=True,
                       style="cyan" if header == "curve" else None)
    for row in table.rows:
        cells = [Text(c) for c in row.cells]
        if row.depth:
            cells[0] = Text("   " * (row.depth - 1) + ("└─ " if row.last_child else "├─ ") + row.cells[0])
        elif any(r.depth for r in table.rows):
            cells[0].stylize("bold")
        if status_col is not None and row.cells[status_col] in STATUS_STYLE:
            cells[status_col].stylize(STATUS_STYLE[row.cells[status_col]])
        out.add_row(*cells, end_section=row.end_section)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(Measurement.get(console, console.options.update_width(10_000), out).maximum, 40))
    console.print(out)
