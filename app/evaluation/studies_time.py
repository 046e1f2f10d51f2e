"""Study ``future_distance``: performance by month after the end of the training window.

Design
    The run's policy trades (greedy) the chosen symbols (``--symbols test`` by default: never
    trained on; ``validation``, ``train`` or ``non-train`` = validation + test) from the end of the
    training window (``split_by_time.json``: ``windows.train.end``) to the end of the data. The
    observation window reaches back into the training period for the first bars (history only);
    every decision is made after the training end. Each filled bar is put in a bucket of
    ``bucket_months`` months since the training end (a month = 365.25 / 12 days), and per bucket:

    * ``agent_return``, ``bh_return``, ``excess_return``: per symbol the compounded return of the
      agent / buy-and-hold over the bucket's bars and their difference; the mean over symbols
      with a percentile interval (``*_ci_low`` / ``*_ci_high``) from a stationary bootstrap of
      the bucket's calendar bars, the same bars for every symbol (symbols move together, so
      resampling them as independent units would be too narrow); none for a bucket of fewer
      than :data:`MIN_BUCKET_BARS` bars (``ci_method`` says which);
    * ``agent_mean_return``: the mean per-bar return of the agent over every (symbol, bar);
    * ``agent_sharpe``, ``bh_sharpe``: annualized Sharpe of the equal-weight average of the
      symbols' per-bar returns within the bucket;
    * ``part``: the split window the bucket starts in (embargo, validation, test, after).

    The notes give the least-squares slope of the per-(symbol, bucket) excess return on the
    months since training end, with an interval from per-bucket time-block resamples (the slope
    refitted on each): a negative slope whose interval excludes 0 is decay. Buckets in the
    validation window were seen by checkpoint selection (``best``), never by training. Synthetic
    runs have no time split: a clear :class:`~app.evaluation.studies.StudyError`.

    The intervals are conditional on the symbols traded (another draw of the period's bars, not
    of symbols); ``ci_method`` (table column and notes) names the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from app.evaluation import metrics as m
from app.evaluation import stats
from app.evaluation.backtest import backtest
from app.evaluation.studies import (
    StudyError,
    StudyResult,
    iter_series,
    load_context,
    market_view,
    new_figure,
    records_frame,
    with_symbols,
    write_result,
)
from app.evaluation.studies_intervals import (
    SYMBOL_METHOD,
    compound_replicates,
    mean_replicates,
    slope_replicates,
)

STUDY = "future_distance"
NS_PER_MONTH = int(365.25 / 12 * 86_400 * 10**9)
SYMBOL_GROUPS = ("test", "validation", "train", "non-train")
#: fewest calendar bars in a bucket for a time-block interval (fewer: no interval, said so)
MIN_BUCKET_BARS = 10
TIME_METHOD = "stationary bootstrap over the bucket's bars, joint across symbols"
NO_BUCKET_CI = f"none: fewer than {MIN_BUCKET_BARS} bars in the bucket to resample"


def bar_returns(module: Any, env_id: str, env_config: dict[str, Any], start_ts_ns: int, *,
                seed: int = 0) -> pd.DataFrame:
    """Greedy backtest from ``start_ts_ns`` to the end of the data; one row per (symbol, bar):
    ``symbol, ts_ns, agent_return, bh_return`` (per-bar simple returns of the filled bar)."""
    config = dict(env_config) | {"start_ts_ns": int(start_ts_ns), "end_ts_ns": None}
    result = backtest(module, env_id, config, greedy=True, seed=seed, with_values=False)
    frames = [pd.DataFrame({"symbol": s.symbol, "ts_ns": s.ts_ns, "agent_return": s.agent_returns,
                            "bh_return": s.bh_returns})
              for s in iter_series(records_frame(result), market_view(env_id, config))]
    return pd.concat(frames, ignore_index=True)


def _bucketed(bars: pd.DataFrame, train_end_ns: int, bucket_months: int) -> pd.DataFrame:
    if bucket_months < 1:
        raise StudyError(f"bucket_months must be >= 1, got {bucket_months}")
    bars = bars.copy()
    bars["bucket"] = (bars["ts_ns"] - int(train_end_ns)) // (bucket_months * NS_PER_MONTH)
    return bars[bars["bucket"] >= 0]


def bucket_replicates(bars: pd.DataFrame, n_boot: int, rng: np.random.Generator
                      ) -> dict[int, tuple[np.ndarray, np.ndarray] | None]:
    """Per bucket of a bucketed bars frame: ``(agent, bh)`` compounded returns, each
    ``(symbols, n_boot)`` with the symbols sorted, over resamples of the bucket's calendar bars
    (stationary blocks, the same bars for every symbol); ``None`` for a bucket with fewer than
    :data:`MIN_BUCKET_BARS` bars."""
    out: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
    for bucket, part in bars.groupby("bucket", sort=True):
        calendar, col = np.unique(part["ts_ns"].to_numpy(np.int64), return_inverse=True)
        if len(calendar) < MIN_BUCKET_BARS:
            out[int(bucket)] = None
            continue
        symbols, row = np.unique(part["symbol"].to_numpy(), return_inverse=True)
        idx = stats.joint_time_block_indices(len(calendar), n_boot, rng)
        mats = []
        for name in ("agent_return", "bh_return"):
            mat = np.full((len(symbols), len(calendar)), np.nan)
            mat[row, col] = part[name].to_numpy(np.float64)
            mats.append(compound_replicates(mat, idx))
        out[int(bucket)] = (mats[0], mats[1])
    return out


def future_distance_table(bars: pd.DataFrame, train_end_ns: int, periods_per_year: float, *,
                          bucket_months: int = 1, windows: Mapping[str, tuple[int, int]] | None = None,
                          seed: int = 0, n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bucket :func:`bar_returns` rows by months since ``train_end_ns``; see the module docstring.

    Returns ``(table, per_symbol)``: one row per bucket, and one per (bucket, symbol)."""
    bars = _bucketed(bars, train_end_ns, bucket_months)
    growth = bars.assign(agent_return=1.0 + bars["agent_return"], bh_return=1.0 + bars["bh_return"])
    per_symbol = growth.groupby(["bucket", "symbol"], sort=True).agg(
        bars=("ts_ns", "size"), agent_return=("agent_return", "prod"),
        bh_return=("bh_return", "prod")).reset_index()
    per_symbol[["agent_return", "bh_return"]] -= 1.0
    per_symbol["excess_return"] = per_symbol["agent_return"] - per_symbol["bh_return"]
    replicates = bucket_replicates(bars, n_boot, np.random.default_rng(seed))
    rows = []
    for bucket, part in per_symbol.groupby("bucket", sort=True):
        in_bucket = bars[bars["bucket"] == bucket]
        pooled = in_bucket.groupby("ts_ns")[["agent_return", "bh_return"]].mean()
        start_ns = int(train_end_ns) + int(bucket) * bucket_months * NS_PER_MONTH
        row: dict[str, Any] = {"bucket": int(bucket), "months_from": int(bucket) * bucket_months,
                               "start": pd.Timestamp(start_ns, tz="UTC"),
                               "first_bar": pd.Timestamp(int(in_bucket["ts_ns"].min()), tz="UTC"),
                               "part": _part_of(int(in_bucket["ts_ns"].min()), windows),
                               "n_symbols": len(part), "n_bars": int(part["bars"].sum()),
                               "agent_mean_return": float(in_bucket["agent_return"].mean()),
                               "agent_sharpe": m.sharpe(pooled["agent_return"].to_numpy(), periods_per_year),
                               "bh_sharpe": m.sharpe(pooled["bh_return"].to_numpy(), periods_per_year)}
        reps = replicates[int(bucket)]
        by_name = None if reps is None else {"agent_return": reps[0], "bh_return": reps[1],
                                             "excess_return": reps[0] - reps[1]}
        for name in ("agent_return", "bh_return", "excess_return"):
            values = part[name].to_numpy()
            finite = values[np.isfinite(values)]
            point = float(finite.mean()) if finite.size else np.nan
            ci = (stats.percentile_ci(point, mean_replicates(by_name[name])) if by_name is not None
                  else stats.ConfidenceInterval(point, np.nan, np.nan, 0.95, 0))
            row |= {name: ci.point, f"{name}_ci_low": ci.low, f"{name}_ci_high": ci.high}
        row["ci_method"] = TIME_METHOD if reps is not None else NO_BUCKET_CI
        rows.append(row)
    return pd.DataFrame(rows), per_symbol


def decay_slope(per_symbol: pd.DataFrame, bucket_months: int, *, seed: int = 0, n_boot: int = 1000,
                bars: pd.DataFrame | None = None, train_end_ns: int | None = None) -> dict[str, Any]:
    """Least-squares slope of excess return per bucket on months since training end, with a
    percentile interval.

    With the per-bar ``bars`` (:func:`bar_returns`, and ``train_end_ns``), each bucket's bars are
    resampled in time blocks jointly across symbols (:func:`bucket_replicates`) and the slope
    refitted; buckets too short to resample keep their values. Without them (one number per
    symbol and bucket, no time axis), symbols are resampled as independent units, all of a
    symbol's buckets together: too narrow when symbols are correlated (``ci_method`` says so)."""
    x = per_symbol["bucket"].to_numpy(dtype=np.float64) * bucket_months
    y = per_symbol["excess_return"].to_numpy(dtype=np.float64)
    if len(np.unique(x)) < 2:
        return {"slope_per_month": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "ci_method": "none: fewer than two buckets"}
    point = float(np.polyfit(x, y, 1)[0])
    if bars is not None:
        if train_end_ns is None:
            raise StudyError("decay_slope: bars need train_end_ns")
        reps = _slope_time_replicates(per_symbol, _bucketed(bars, train_end_ns, bucket_months), x,
                                      n_boot, np.random.default_rng(seed))
        ci = stats.percentile_ci(point, reps)
        return {"slope_per_month": point, "ci_low": ci.low, "ci_high": ci.high,
                "ci_method": f"{TIME_METHOD}, within each bucket"}
    symbols = per_symbol["symbol"].to_numpy()
    names = np.unique(symbols)
    members = [np.flatnonzero(symbols == s) for s in names]
    gen = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in gen.integers(0, len(names), len(names))])
        if len(np.unique(x[idx])) >= 2:
            boot.append(np.polyfit(x[idx], y[idx], 1)[0])
    low, high = np.quantile(boot, [0.025, 0.975]) if boot else (float("nan"), float("nan"))
    return {"slope_per_month": point, "ci_low": float(low), "ci_high": float(high),
            "ci_method": SYMBOL_METHOD}


def _slope_time_replicates(per_symbol: pd.DataFrame, bars: pd.DataFrame, x: np.ndarray, n_boot: int,
                           rng: np.random.Generator) -> np.ndarray:
    """Slope replicates from :func:`bucket_replicates` (rows aligned with ``per_symbol``, which is
    sorted by bucket then symbol, as the replicates are)."""
    replicates = bucket_replicates(bars, n_boot, rng)
    y = np.repeat(per_symbol["excess_return"].to_numpy(dtype=np.float64)[:, None], n_boot, axis=1)
    lo = 0
    for bucket, part in per_symbol.groupby("bucket", sort=True):
        reps = replicates.get(int(bucket))
        if reps is not None:
            y[lo:lo + len(part)] = reps[0] - reps[1]
        lo += len(part)
    return slope_replicates(x, y)


def _part_of(ts_ns: int, windows: Mapping[str, tuple[int, int]] | None) -> str:
    if not windows:
        return ""
    for name, (lo, hi) in windows.items():
        if lo <= ts_ns < hi:
            return name
    ends = [hi for lo, hi in windows.values()]
    return "after" if ts_ns >= max(ends) else "embargo"


def run_future_distance(run: Any, *, which: str = "final", symbols: str = "test", bucket_months: int = 1,
                        seed: int = 0, n_boot: int = 1000) -> StudyResult:
    """The study on a run directory; writes ``<run>/studies/future_distance/`` (``result.parquet``:
    one row per bucket; ``per_symbol.parquet``; ``plot.png``; ``notes.json`` with the slope)."""
    if symbols not in SYMBOL_GROUPS:
        raise StudyError(f"symbols must be one of {SYMBOL_GROUPS}, got {symbols!r}")
    ctx = load_context(run, which)
    if "by_time" not in ctx.splits:
        raise StudyError(f"{ctx.run.name}: future_distance needs a time split (data.by_time) to know when "
                         "training ended" + ("; a synthetic run has none (each part is its own generated "
                                             "market), so the study does not apply" if ctx.exp.data is None else ""))
    split = ctx.splits["by_time"]
    train_end = int(split.windows["train"].end.value)
    base = ctx.env_config("test")
    if "by_symbol" in ctx.splits:
        chosen = (ctx.symbols("validation") + ctx.symbols("test") if symbols == "non-train"
                  else ctx.symbols(symbols))
        base = with_symbols(base, chosen)
    bars = bar_returns(ctx.module, ctx.env_id, base, train_end, seed=seed)
    windows = {p: (int(w.start.value), int(w.end.value)) for p, w in split.windows.items() if p != "train"}
    table, per_symbol = future_distance_table(bars, train_end, ctx.periods_per_year, bucket_months=bucket_months,
                                              windows=windows, seed=seed, n_boot=n_boot)
    slope = decay_slope(per_symbol, bucket_months, seed=seed, n_boot=n_boot, bars=bars,
                        train_end_ns=train_end)
    chosen_label = symbols if "by_symbol" in ctx.splits else "all (no by-symbol split)"
    notes = {"run": ctx.run.name, "checkpoint": which, "symbols": chosen_label, "n_symbols": int(bars.symbol.nunique()),
             "train_end": str(split.windows["train"].end), "bucket_months": bucket_months,
             "buckets": len(table), "excess_return_slope_per_month": slope,
             "ci_method": {"buckets": sorted(set(table["ci_method"])), "slope": slope["ci_method"]},
             "mean_excess_by_part": table.groupby("part")["excess_return"].mean().to_dict()}
    result = StudyResult(STUDY, table, notes=notes)
    return write_result(result, ctx.out_dir(STUDY), _plot(table, windows, train_end), {"per_symbol": per_symbol})


def _plot(table: pd.DataFrame, windows: Mapping[str, tuple[int, int]], train_end_ns: int) -> Any:
    fig = new_figure(9.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    width = float(table["months_from"].diff().min()) if len(table) > 1 else 1.0
    x = table["months_from"].to_numpy() + width / 2  # bucket centres
    ax.fill_between(x, table["excess_return_ci_low"], table["excess_return_ci_high"], color="#1f5fa8", alpha=0.2,
                    step="mid", label="excess 95% CI")
    ax.step(x, table["excess_return"], where="mid", color="#1f5fa8", label="excess over buy & hold")
    ax.plot(x, table["agent_return"], color="#138a36", linewidth=0.9, label="agent return")
    ax.plot(x, table["bh_return"], color="#e07b00", linewidth=0.9, label="buy & hold return")
    for name, (lo, _) in windows.items():
        ax.axvline((lo - train_end_ns) / NS_PER_MONTH, color="#777777", linestyle="--", linewidth=0.8)
        ax.text((lo - train_end_ns) / NS_PER_MONTH, ax.get_ylim()[1], f" {name}", fontsize=8, va="top")
    ax.axhline(0.0, color="#555555", linewidth=0.8)
    ax.set_xlabel("months since the end of the training window")
    ax.set_ylabel("mean over symbols, per bucket")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
