"""``raytrade inspect RUN``: one run's review as plain text (to paste into a review or a chat
with a language model): config diff against its parent, learning curves as text charts, alerts,
action distribution, validation and backtest summaries.

RUN is an MLflow run (name, name prefix or id, as ``raytrade runs compare`` takes) or a run
directory (path or name under ``--runs-dir``). The text is laid out by app/tracking/review.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from app.cli.runs import DEFAULT_URI, EXPERIMENT_HELP, RUNS_DIR_HELP, URI_HELP

AGAINST_HELP = ("Diff the config against this run instead of the parent (default: the run's sweep, "
                "else the previous run of the same name).")


def inspect_command(
    run_ref: str = typer.Argument(..., metavar="RUN", help="A run name, name prefix, run id or run directory."),
    experiment: str = typer.Option(None, "--experiment", "-e", help=EXPERIMENT_HELP),
    mlflow_uri: str = typer.Option(DEFAULT_URI, "--mlflow-uri", envvar="RAYTRADE_MLFLOW_URI", help=URI_HELP),
    runs_dir: Path = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    against: str = typer.Option(None, "--against", help=AGAINST_HELP),
    width: int = typer.Option(60, "--width", min=10, max=200, help="Chart width in characters."),
) -> None:
    """Print a plain-text review of one run (config diff, learning curves, alerts, actions,
    validation, backtests)."""
    from app.cli.runs import _call, _fail, _read, run_info
    from app.errors import ConfigError
    from app.runs.run_dir import RunDir
    from app.tracking import review
    from app.tracking import runs_view as rv
    from app.tracking.mlflow_tracker import read_histories

    records = _read(mlflow_uri, experiment)
    record: dict[str, Any] | None = None
    info = None
    try:
        record = dict(rv.resolve_run(run_ref, records))
        record["history"] = {}
    except rv.RunLookupError as lookup:
        try:  # not an MLflow run: a run directory, joined with its MLflow run if it has one
            info = run_info(str(RunDir.find(run_ref, runs_dir).path), backtests=True)
        except ConfigError:
            _fail(f"{lookup} [{mlflow_uri}]; nor a run directory under "
                  f"{runs_dir or 'the runs dir'}")
        mlflow_id = info.state.get("mlflow_run_id") if info else None
        match = next((r for r in records if r["run_id"] == mlflow_id), None)
        record = dict(match, history={}) if match else None
    if record is not None and info is None:
        info = run_info(record.get("tags", {}).get("raytrade.run_dir"), backtests=True)
    parent, why = (None, "")
    if record is not None:
        if against:
            try:
                parent, why = rv.resolve_run(against, records), "given by --against"
            except rv.RunLookupError as exc:
                _fail(str(exc))
        else:
            parent, why = review.find_parent(record, records)
        keys = list(review.CURVE_METRICS) + [k for k in record["metrics"]
                                             if k.startswith((review.ACTION_PREFIX, *review.VALIDATION_PREFIXES))]
        _call(read_histories, mlflow_uri, [record], keys)
    typer.echo(review.review_text(record, info, parent=parent, parent_why=why, uri=mlflow_uri, width=width),
               nl=False)
    children = [r for r in records if record is not None and r.get("parent_id") == record["run_id"]]
    if children and record is not None:  # a sweep: its trials, as `raytrade runs --plain` lists them
        specs = rv.parse_metrics(None)
        _call(read_histories, mlflow_uri, children, [s.key for s in specs] + [rv.CLOCK_METRIC])
        table = rv.listing_table(rv.tree([record, *children]), specs, width // 3)
        table.title = f"## trials ({len(children)}; * = best by {specs[0].title})"
        typer.echo("\n" + rv.render_plain(table))
