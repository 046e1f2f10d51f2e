"""``raytrade backtest``: a trained run on a split, with a report and a summary table."""

from __future__ import annotations

from pathlib import Path

import typer


def backtest_command(
    run: str = typer.Argument(..., help="A run directory, or its name under runs/."),
    split: str = typer.Option("test", "--split", help="train | validation | test (default: unseen test data)."),
    stochastic: int = typer.Option(0, "--stochastic", help="Sample the policy N times instead of greedy."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final | best | latest"),
    seed: int = typer.Option(0, "--seed"),
    store: Path = typer.Option(None, "--store", envvar="RAYTRADE_STORE",
                               help="Read bars from this store instead of the run's own."),
    symbols: str = typer.Option(None, "--symbols", help="Trade these symbols (comma-separated) instead of "
                                "the split's."),
    start: str = typer.Option(None, "--start", help="Trade from this UTC date (YYYY-MM-DD, inclusive)."),
    end: str = typer.Option(None, "--end", help="Trade up to this UTC date (exclusive)."),
    data_spec: Path = typer.Option(None, "--data-spec", help="A YAML file with store, dataset, index, "
                                   "symbols, start, end (the options above win over it)."),
) -> None:
    """Backtest a trained policy: per-bar records, metrics vs buy-and-hold and the index, HTML report.
    With --store/--symbols/--start/--end/--data-spec it trades other data (the run is not copied):
    the output directory gets a data-<hash> suffix and data_spec.json records what was traded."""
    from app.cli.render import print_headline
    from app.config.loader import data_selection
    from app.evaluation.pipeline import backtest_run
    from app.runs.run_dir import RunDir
    from app.tracking.mlflow_tracker import MlflowTracker

    selection = data_selection(data_spec, store=store, symbols=symbols, start=start, end=end)
    run_dir = RunDir.find(run)
    state = run_dir.state()
    tracker = None
    if state.mlflow_run_id:
        raw = run_dir.experiment_raw()["tracking"]
        tracker = MlflowTracker(raw["mlflow_uri"], raw["experiment"], run_dir.name, run_id=state.mlflow_run_id)
    report = backtest_run(run_dir, part=split, greedy=stochastic == 0, samples=max(stochastic, 1), seed=seed,
                          which=checkpoint, tracker=tracker, data=selection)
    if tracker is not None:
        tracker.end("FINISHED")
    print_headline(report.headline(), title=f"{run_dir.name} on the {split} split")
    typer.echo(f"{report.result.decisions:,} decisions in {report.result.seconds:.2f} s "
               f"({report.result.decisions_per_s:,.0f}/s)\nreport: {report.out_dir / 'report.html'}\n"
               f"data: {report.out_dir / 'data_spec.json'}")
