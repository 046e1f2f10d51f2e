"""``raytrade backtest``: a trained run on a split, with a report and a summary table."""

from __future__ import annotations

import typer


def backtest_command(
    run: str = typer.Argument(..., help="A run directory, or its name under runs/."),
    split: str = typer.Option("test", "--split", help="train | validation | test (default: unseen test data)."),
    stochastic: int = typer.Option(0, "--stochastic", help="Sample the policy N times instead of greedy."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final | best | latest"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Backtest a trained policy: per-bar records, metrics vs buy-and-hold and the index, HTML report."""
    from app.cli.render import print_headline
    from app.evaluation.pipeline import backtest_run
    from app.runs.run_dir import RunDir
    from app.tracking.mlflow_tracker import MlflowTracker

    run_dir = RunDir.find(run)
    state = run_dir.state()
    tracker = None
    if state.mlflow_run_id:
        raw = run_dir.experiment_raw()["tracking"]
        tracker = MlflowTracker(raw["mlflow_uri"], raw["experiment"], run_dir.name, run_id=state.mlflow_run_id)
    report = backtest_run(run_dir, part=split, greedy=stochastic == 0, samples=max(stochastic, 1), seed=seed,
                          which=checkpoint, tracker=tracker)
    if tracker is not None:
        tracker.end("FINISHED")
    print_headline(report.headline(), title=f"{run_dir.name} on the {split} split")
    typer.echo(f"{report.result.decisions:,} decisions in {report.result.seconds:.2f} s "
               f"({report.result.decisions_per_s:,.0f}/s)\nreport: {report.out_dir / 'report.html'}")
