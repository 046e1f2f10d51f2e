"""Study ``unseen_symbols``: symbols never seen in training vs symbols seen in training.

Design
    The same policy (greedy) trades, over the SAME time window (the test window of the run's time
    split by default), three groups of symbols from the run's by-symbol split: ``seen`` (the
    train symbols), ``validation`` (never trained on, but used to pick the ``best`` checkpoint)
    and ``unseen`` (the test symbols: never touched). Per group: the cross-symbol mean of every
    :data:`~app.evaluation.studies.METRICS` entry; then ``unseen - seen`` and ``validation - seen``.
    Intervals resample blocks of the window's bars jointly for every symbol of every group (the
    groups trade the same period, so their market moves are shared; see
    :mod:`app.evaluation.studies_intervals`); they are conditional on the symbols drawn. An interval
    of ``excess_return`` (agent minus buy-and-hold of the same symbol) that straddles 0 says the
    policy generalizes to new symbols as well as it trades the old ones in the same period.
    Without a time split the window is the whole data, so ``seen`` is in-sample in time too (the
    notes say so). Synthetic runs have no held-out symbols: a clear :class:`StudyError`.

Fine-tuning on one new symbol (``--fine-tune-steps N``, optional: it trains)
    One unseen symbol S (``--fine-tune-symbol``, default a seeded choice among the test symbols)
    and up to four policies, all traded greedily on S over the test window:

    * ``never_included`` -- the run's policy as it is;
    * ``fine_tuned`` -- a copy of the run's weights trained N more env steps on S alone,
      on S's TRAIN window (validated on S's validation window), with the run's own algorithm
      settings (``app.training.run.train(exp, init_from=<run policy>)``);
    * ``included`` (``--include-steps M``) -- a fresh policy trained from scratch for M steps
      on the train symbols plus S (train window; validated on the same symbols in the validation
      window); use the run's own budget for a fair comparison (it also differs from the run by
      training noise: one seed);
    * ``trained_and_fine_tuned`` (with ``--include-steps``) -- ``included`` then N steps on S.

    The extra runs are written under ``<run>/studies/unseen_symbols/runs/`` with their own MLflow
    store there, so the run's experiment and registry are untouched. No variant ever sees S's
    test window before it is evaluated on it. With one symbol there is no cross-symbol interval:
    the table gives each variant's metrics and a stationary-bootstrap interval of the mean
    per-bar excess return over buy-and-hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.evaluation import stats
from app.evaluation.backtest import backtest
from app.evaluation.studies import (
    GROUP_COLUMNS,
    METRICS,
    StudyContext,
    StudyError,
    StudyResult,
    TimeBootstrap,
    ci_methods,
    diff_rows,
    group_table,
    iter_series,
    load_context,
    market_view,
    new_figure,
    records_frame,
    series_metrics,
    symbol_frames,
    with_symbols,
    write_result,
)

STUDY = "unseen_symbols"
GROUPS = ("seen", "validation", "unseen")  # train, validation and test symbols of the split
VARIANTS = ("never_included", "fine_tuned", "included", "trained_and_fine_tuned")


def compare_symbol_groups(module: Any, env_id: str, configs: Mapping[str, dict[str, Any]],
                          periods_per_year: float, *, baseline: str = "seen", seed: int = 0,
                          n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Backtest ``module`` greedily on each group's env config (same window, other symbols).

    Returns ``(table, per_symbol)``: ``table`` has :data:`~app.evaluation.studies.GROUP_COLUMNS`
    (one row per group and metric, then ``"<group> - <baseline>"`` differences); intervals are
    joint time-block bootstraps over the window's bars, the same bars for every group, so the
    market the groups share is kept in the difference; ``per_symbol`` one row per group and
    symbol."""
    frames, bar_frames = [], []
    for group, config in configs.items():
        result = backtest(module, env_id, config, greedy=True, seed=seed, with_values=False)
        frame, bars = symbol_frames(records_frame(result), market_view(env_id, config), periods_per_year)
        frames.append(frame.assign(group=group))
        bar_frames.append(bars.assign(group=group))
    per_symbol = pd.concat(frames, ignore_index=True)
    bars = pd.concat(bar_frames, ignore_index=True)
    boot = TimeBootstrap.of(bars, "group", periods_per_year, seed, n_boot=n_boot, metrics=METRICS)
    table = group_table(per_symbol, "group", seed, bars=boot, n_boot=n_boot)
    others = [(g, baseline) for g in configs if g != baseline and baseline in configs]
    if others:
        diffs = diff_rows(per_symbol, "group", others, seed + 1, paired=False, bars=boot, n_boot=n_boot)
        table = pd.concat([table, diffs], ignore_index=True)
    return table, per_symbol


def variant_metrics(module: Any, env_id: str, config: dict[str, Any], periods_per_year: float, *,
                    seed: int = 0, n_boot: int = 1000) -> dict[str, float]:
    """One policy on one symbol's config: :data:`METRICS`, bars, and the mean per-bar excess
    return over buy-and-hold with a stationary-bootstrap interval (``excess_per_bar*``)."""
    result = backtest(module, env_id, config, greedy=True, seed=seed, with_values=False)
    series = list(iter_series(records_frame(result), market_view(env_id, config)))
    if len(series) != 1:
        raise StudyError(f"fine-tune study: expected one symbol in the config, got {len(series)}")
    s = series[0]
    excess = s.agent_returns - s.bh_returns
    ci = stats.bootstrap_ci(excess, lambda x: x.mean(axis=-1), rng=seed, n_boot=n_boot, method="stationary",
                            vectorized=True)
    return {"bars": float(len(excess)), **series_metrics(s, periods_per_year), "excess_per_bar": ci.point,
            "excess_per_bar_ci_low": ci.low, "excess_per_bar_ci_high": ci.high}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def study_experiment(exp: Any, symbols: list[str], env_steps: int, runs_dir: Path, name: str) -> Any:
    """``exp`` retargeted for a study run: trains on ``symbols`` only (no by-symbol split: every
    part uses them, each in its own time window), for ``env_steps`` env steps, with its runs and
    MLflow store under ``runs_dir``. Pure: builds the validated Experiment, trains nothing."""
    from app.config.loader import parse_experiment

    if exp.data is None:
        raise StudyError("fine-tuning on a new symbol needs a store-backed run (data section); this is synthetic")
    if env_steps < 1:
        raise StudyError(f"env_steps must be >= 1, got {env_steps}")
    raw = exp.model_dump(mode="json")
    raw["name"] = _safe(name)
    raw["data"]["symbols"] = list(symbols)
    raw["data"]["by_symbol"] = None
    raw["stopping"] = {"iterations": None, "env_steps": int(env_steps), "reward_threshold": None,
                       "patience_evaluations": None}
    runs_dir = Path(runs_dir).resolve()
    raw["tracking"] |= {"runs_dir": str(runs_dir), "mlflow_uri": f"sqlite:///{runs_dir / 'mlruns.db'}",
                        "experiment": f"{exp.name}-studies", "registered_model": raw["name"]}
    return parse_experiment(raw, where=f"{STUDY} study experiment")


#: ``train(experiment, init_from=policy_dir | None) -> outcome with .run`` (a RunDir); injected
#: by the caller (the CLI passes :func:`app.training.run.train`), so evaluation never imports
#: training (layers contract)
Trainer = Callable[..., Any]


def fine_tune_study(ctx: StudyContext, symbol: str, fine_tune_steps: int, train: Trainer, *,
                    include_steps: int = 0, seed: int = 0, n_boot: int = 1000) -> pd.DataFrame:
    """The fine-tuning variants on ``symbol`` (see the module docstring): one row per variant."""
    from app.evaluation.pipeline import load_policy

    if symbol not in ctx.symbols("test"):
        raise StudyError(f"fine-tune symbol {symbol!r} is not a test symbol of {ctx.run.name}")
    runs_dir = ctx.out_dir(STUDY) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    config = with_symbols(ctx.env_config("test"), [symbol])
    policies: dict[str, Any] = {"never_included": ctx.module}
    run_dirs: dict[str, str] = {}
    ft = train(study_experiment(ctx.exp, [symbol], fine_tune_steps, runs_dir, f"{ctx.exp.name}-ft-{symbol}"),
               init_from=ctx.run.policy_dir(ctx.which)).run
    policies["fine_tuned"], run_dirs["fine_tuned"] = load_policy(ft), str(ft.path)
    if include_steps:
        symbols = [*ctx.symbols("train"), symbol]
        inc = train(study_experiment(ctx.exp, symbols, include_steps, runs_dir, f"{ctx.exp.name}-incl-{symbol}")).run
        policies["included"], run_dirs["included"] = load_policy(inc), str(inc.path)
        both = train(study_experiment(ctx.exp, [symbol], fine_tune_steps, runs_dir,
                                      f"{ctx.exp.name}-incl-ft-{symbol}"), init_from=inc.policy_dir("final")).run
        policies["trained_and_fine_tuned"], run_dirs["trained_and_fine_tuned"] = load_policy(both), str(both.path)
    rows = []
    for variant, module in policies.items():
        m = variant_metrics(module, ctx.env_id, config, ctx.periods_per_year, seed=seed, n_boot=n_boot)
        rows.append({"variant": variant, "symbol": symbol, "fine_tune_steps": fine_tune_steps,
                     "include_steps": include_steps, "run_dir": run_dirs.get(variant, str(ctx.run.path)), **m})
    return pd.DataFrame(rows)


def run_unseen_symbols(run: Any, *, which: str = "final", window: str = "test", seed: int = 0,
                       n_boot: int = 1000, fine_tune_steps: int = 0, fine_tune_symbol: str | None = None,
                       include_steps: int = 0, train: Trainer | None = None) -> StudyResult:
    """The study on a run directory; writes ``<run>/studies/unseen_symbols/`` (``result.parquet``:
    the group table; ``per_symbol.parquet``; ``fine_tune.parquet`` with ``--fine-tune-steps``;
    ``plot.png``; ``notes.json``)."""
    if window not in ("validation", "test"):
        raise StudyError(f"window must be 'validation' or 'test' (after training), got {window!r}")
    ctx = load_context(run, which)
    groups = {"seen": ctx.symbols("train"), "validation": ctx.symbols("validation"), "unseen": ctx.symbols("test")}
    if not groups["unseen"]:
        raise StudyError(f"{ctx.run.name}: the by-symbol split has no test symbols")
    base = ctx.env_config(window)
    configs = {g: with_symbols(base, syms) for g, syms in groups.items() if syms}
    table, per_symbol = compare_symbol_groups(ctx.module, ctx.env_id, configs, ctx.periods_per_year, seed=seed,
                                              n_boot=n_boot)
    notes: dict[str, Any] = {"run": ctx.run.name, "checkpoint": which, "window": window,
                             "window_start": _ts(base.get("start_ts_ns")), "window_end": _ts(base.get("end_ts_ns")),
                             "symbols": {g: int((per_symbol["group"] == g).sum()) for g in configs},
                             "ci_method": ci_methods(table)}
    if "by_time" not in ctx.splits:
        notes["caveat"] = "no time split: the window is the whole data, so 'seen' symbols are in-sample in time"
    for g in ("seen", "unseen", "unseen - seen"):
        row = table[(table["group"] == g) & (table["metric"] == "excess_return")]
        if len(row):
            notes[f"excess_return[{g}]"] = [float(row[c].iloc[0]) for c in ("value", "ci_low", "ci_high")]
    extra = {"per_symbol": per_symbol}
    fine = None
    if fine_tune_steps:
        unseen_ok = [s for s in groups["unseen"] if s in set(per_symbol.loc[per_symbol["group"] == "unseen", "symbol"])]
        symbol = fine_tune_symbol or str(np.random.default_rng(seed).choice(sorted(unseen_ok)))
        if train is None:
            raise StudyError("fine-tuning needs a trainer (train=...)")
        fine = fine_tune_study(ctx, symbol, fine_tune_steps, train, include_steps=include_steps, seed=seed,
                               n_boot=n_boot)
        extra["fine_tune"] = fine
        notes["fine_tune"] = {r["variant"]: {k: r[k] for k in ("total_return", "excess_return", "sharpe")}
                              for r in fine.to_dict("records")}
        notes["fine_tune_ci_method"] = ("excess_per_bar: stationary bootstrap over time of one symbol's "
                                        "per-bar excess returns")
    result = StudyResult(STUDY, table, notes=notes)
    return write_result(result, ctx.out_dir(STUDY), _plot(table, fine), extra)


def _ts(ns: int | None) -> str | None:
    return None if ns is None else str(pd.Timestamp(int(ns), tz="UTC"))


def _plot(table: pd.DataFrame, fine: pd.DataFrame | None) -> Any:
    fig = new_figure(10.0 if fine is not None else 7.0, 4.0)
    panels = 2 if fine is not None else 1
    ax = fig.add_subplot(1, panels, 1)
    groups = [g for g in GROUPS if g in set(table["group"])]
    width = 0.38
    for j, metric in enumerate(("total_return", "excess_return")):
        rows = table[table["metric"] == metric].set_index("group").loc[groups]
        x = np.arange(len(groups)) + (j - 0.5) * width
        err = np.abs(np.vstack([rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]]))
        ax.bar(x, rows["value"], width, yerr=np.nan_to_num(err), capsize=3, label=metric)
    ax.axhline(0.0, color="#555555", linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)), [f"{g}\n(n={int(table[(table.group == g)].n.iloc[0])})" for g in groups])
    ax.set_ylabel("mean over symbols (95% CI)")
    ax.set_title("same window, seen vs unseen symbols")
    ax.legend(fontsize=8)
    if fine is not None:
        ax2 = fig.add_subplot(1, panels, 2)
        ax2.bar(np.arange(len(fine)), fine["excess_return"], color="#1f5fa8")
        ax2.set_xticks(np.arange(len(fine)), [v.replace("_", "\n") for v in fine["variant"]], fontsize=8)
        ax2.axhline(0.0, color="#555555", linewidth=0.8)
        ax2.set_title(f"excess return on {fine['symbol'].iloc[0]} (test window)")
    fig.tight_layout()
    return fig


__all__ = ["GROUPS", "GROUP_COLUMNS", "METRICS", "VARIANTS", "compare_symbol_groups", "fine_tune_study",
           "run_unseen_symbols", "study_experiment", "variant_metrics"]
