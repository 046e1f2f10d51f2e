"""``raytrade evaluate STUDY RUN``: evaluation studies of a trained run, one command each."""

from __future__ import annotations

from pathlib import Path

import typer

evaluate_app = typer.Typer(
    help="Evaluation studies of a trained run, one command each. Each writes "
         "<run>/studies/<study>/ (result.parquet, notes.json, plot.png where a picture helps). "
         "See app/evaluation/studies*.py for the designs.",
    no_args_is_help=True,
)
RUN_ARG = typer.Argument(..., help="A run directory, or its name under runs/.")
CHECKPOINT_OPT = typer.Option("final", "--checkpoint", help="final | best | latest")
SEED_OPT = typer.Option(0, "--seed", help="Seeds the backtests, samples and bootstrap.")
N_BOOT_OPT = typer.Option(1000, "--n-boot", min=100, help="Bootstrap resamples per interval.")
PART_OPT = typer.Option("test", "--split", help="train | validation | test (default: unseen test data).")
STORE_OPT = typer.Option(None, "--store", envvar="RAYTRADE_STORE",
                         help="Read bars from this store instead of the run's own data.store.")


def _find(run: str, store: Path | None = None):
    from app.runs.run_dir import RunDir

    return RunDir.find(run).with_store(store)


def _study(fn, **kwargs):
    """Run a study; a study that does not apply (StudyError) is a clear error, exit code 2."""
    from app.evaluation.studies import StudyError

    try:
        return fn(**kwargs)
    except StudyError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _show(result, columns: list[str] | None = None, where=None, title: str = "") -> None:
    import pandas as pd

    table = result.table if where is None else result.table[where(result.table)]
    with pd.option_context("display.max_rows", 200, "display.width", 160, "display.float_format", "{:.4g}".format):
        shown = table[columns] if columns else table
        typer.echo(f"{title}\n{shown.to_string(index=False)}".strip())
    typer.echo(f"written: {result.out_dir}")


@evaluate_app.command("unseen-symbols")
def unseen_symbols_command(
    run: str = RUN_ARG,
    window: str = typer.Option("test", "--window", help="Time window all groups trade: validation | test."),
    fine_tune_steps: int = typer.Option(0, "--fine-tune-steps", min=0, help="Also fine-tune a copy of the policy "
                                        "on one new symbol for N env steps (trains; 0 = skip)."),
    fine_tune_symbol: str = typer.Option(None, "--fine-tune-symbol", help="The new (test) symbol; default: a "
                                         "seeded choice."),
    include_steps: int = typer.Option(0, "--include-steps", min=0, help="With --fine-tune-steps: also train from "
                                      "scratch with the symbol included (M env steps), then fine-tune that."),
    checkpoint: str = CHECKPOINT_OPT, seed: int = SEED_OPT, n_boot: int = N_BOOT_OPT,
    store: Path = STORE_OPT,
) -> None:
    """Seen (train) vs unseen (test) symbols over the same window, with bootstrap CIs; optionally the
    effect of fine-tuning on a new symbol (never included / fine-tuned / included / both)."""
    from app.evaluation.studies_symbols import run_unseen_symbols
    from app.training.run import train

    if include_steps and not fine_tune_steps:
        raise typer.BadParameter("--include-steps needs --fine-tune-steps", param_hint="--include-steps")
    result = _study(run_unseen_symbols, run=_find(run, store), which=checkpoint, window=window, seed=seed,
                    n_boot=n_boot, fine_tune_steps=fine_tune_steps, fine_tune_symbol=fine_tune_symbol,
                    include_steps=include_steps, train=train)
    keep = ["total_return", "sharpe", "bh_total_return", "excess_return"]
    _show(result, ["group", "metric", "value", "ci_low", "ci_high", "n"], lambda t: t["metric"].isin(keep),
          "unseen vs seen symbols (mean over symbols, 95% CI)")
    if "fine_tune" in result.notes:
        for variant, values in result.notes["fine_tune"].items():
            typer.echo(f"  {variant:24s} " + "  ".join(f"{k}={v:.4g}" for k, v in values.items()))


@evaluate_app.command("future-distance")
def future_distance_command(
    run: str = RUN_ARG,
    symbols: str = typer.Option("test", "--symbols", help="test | validation | train | non-train"),
    bucket_months: int = typer.Option(1, "--bucket-months", min=1, help="Months per bucket."),
    checkpoint: str = CHECKPOINT_OPT, seed: int = SEED_OPT, n_boot: int = N_BOOT_OPT,
    store: Path = STORE_OPT,
) -> None:
    """Performance by month after the end of the training window (runs with a time split only)."""
    from app.evaluation.studies_time import run_future_distance

    result = _study(run_future_distance, run=_find(run, store), which=checkpoint, symbols=symbols,
                    bucket_months=bucket_months, seed=seed, n_boot=n_boot)
    _show(result, ["months_from", "part", "n_symbols", "agent_return", "bh_return", "excess_return",
                   "excess_return_ci_low", "excess_return_ci_high", "agent_sharpe"],
          title="by months since the end of training (mean over symbols)")
    slope = result.notes["excess_return_slope_per_month"]
    typer.echo(f"excess return slope: {slope['slope_per_month']:.4g} per month "
               f"(95% CI {slope['ci_low']:.4g} .. {slope['ci_high']:.4g})")


@evaluate_app.command("history-length")
def history_length_command(
    run: str = RUN_ARG,
    windows: str = typer.Option("5,10,20,50", "--windows", help="Bars of history to keep, comma-separated "
                                "(the full window is always added)."),
    scope: str = typer.Option("time", "--scope", help="time: every window cut to about k bars of time (k bars, "
                              "k/5 weeks, k/21 months); entries: k entries of every window; bars: only the "
                              "bar-level windows."),
    fill: str = typer.Option("neutral", "--fill", help="neutral: 0 log ratio / 1 relative volume; repeat: the "
                             "oldest kept entry (the builder's own padding)."),
    split: str = PART_OPT, checkpoint: str = CHECKPOINT_OPT, seed: int = SEED_OPT, n_boot: int = N_BOOT_OPT,
    store: Path = STORE_OPT,
) -> None:
    """Performance vs the observation history the policy is allowed to see (masking study, not
    retraining: `raytrade tune` over env.config.window_bars retrains per window)."""
    from app.evaluation.studies_policy import run_history_length

    try:
        ks = [int(k) for k in windows.split(",") if k.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected integers like 5,10,20, got {windows!r}", param_hint="--windows") from None
    result = _study(run_history_length, run=_find(run, store), which=checkpoint, part=split, windows=ks, scope=scope,
                    fill=fill, seed=seed, n_boot=n_boot)
    keep = ["total_return", "excess_return", "sharpe", "action_agreement"]
    _show(result, ["window_bars", "kind", "metric", "value", "ci_low", "ci_high"],
          lambda t: t["metric"].isin(keep), "history kept (bars) -> performance (mean over symbols, 95% CI)")


@evaluate_app.command("greedy-vs-stochastic")
def greedy_vs_stochastic_command(
    run: str = RUN_ARG,
    samples: int = typer.Option(8, "--samples", min=1, help="Stochastic samples per symbol."),
    split: str = PART_OPT, checkpoint: str = CHECKPOINT_OPT, seed: int = SEED_OPT, n_boot: int = N_BOOT_OPT,
    store: Path = STORE_OPT,
) -> None:
    """The greedy policy vs N stochastic samples of it over the same part, side by side with CIs."""
    from app.evaluation.studies_policy import run_greedy_vs_stochastic

    result = _study(run_greedy_vs_stochastic, run=_find(run, store), which=checkpoint, part=split, samples=samples,
                    seed=seed, n_boot=n_boot)
    keep = ["total_return", "excess_return", "sharpe", "max_drawdown", "trades", "mean_max_prob"]
    _show(result, ["group", "metric", "value", "ci_low", "ci_high", "sample_std"], lambda t: t["metric"].isin(keep),
          "greedy vs stochastic (mean over symbols, samples pooled, 95% CI)")


@evaluate_app.command("lookahead")
def lookahead_command(
    run: str = RUN_ARG,
    symbols: list[str] = typer.Option([], "--symbol", help="A symbol to check (repeatable; default: a seeded "
                                      "sample of --n-symbols)."),
    n_symbols: int = typer.Option(3, "--n-symbols", min=1, help="Symbols to sample."),
    n_decisions: int = typer.Option(20, "--n-decisions", min=1, help="Decision bars to sample per symbol."),
    atol: float = typer.Option(1e-6, "--atol", help="Tolerance on probabilities and logits."),
    split: str = PART_OPT, checkpoint: str = CHECKPOINT_OPT, seed: int = SEED_OPT, store: Path = STORE_OPT,
) -> None:
    """Rerun sampled decisions on data truncated at the decision bar; list every decision (or
    observation) that changes. Exit code 1 if any does."""
    from app.evaluation.studies_lookahead import run_lookahead

    result = _study(run_lookahead, run=_find(run, store), which=checkpoint, part=split, symbols=symbols or None,
                    n_symbols=n_symbols, n_decisions=n_decisions, seed=seed, atol=atol)
    notes = result.notes
    typer.echo(f"{notes['decisions']} decisions on {', '.join(notes['symbols'])}: {notes['decision_changed']} "
               f"decisions and {notes['obs_changed']} observations changed when the future was removed")
    if not notes["all_match_backtest"] or not notes["all_same_start"]:
        typer.secho("warning: the replay did not reproduce the backtest exactly (see matches_backtest / "
                    "same_start in result.parquet)", fg=typer.colors.YELLOW, err=True)
    if notes["leaks"]:
        _show(result, ["symbol", "decision_ts", "action_full", "action_truncated", "max_prob_diff", "obs_max_diff",
                       "fields_changed"], lambda t: t["leak"], "LOOK-AHEAD: decisions that change")
        raise typer.Exit(1)
    typer.echo(f"no look-ahead found. written: {result.out_dir}")


for _name, _fn in (("unseen_symbols", unseen_symbols_command), ("future_distance", future_distance_command),
                   ("history_length", history_length_command), ("greedy_vs_stochastic", greedy_vs_stochastic_command)):
    evaluate_app.command(_name, hidden=True)(_fn)  # the study names as the Python API spells them
