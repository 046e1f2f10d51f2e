"""The studies' cross-symbol intervals: joint time-block bootstraps that cover when symbols are
correlated (where a bootstrap over symbols as independent units does not), and replicates that
equal the per-symbol metrics on the original bars."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from app.evaluation.studies import (
    METRICS,
    SymbolSeries,
    diff_rows,
    group_table,
    per_symbol_means,
    series_frame,
    series_metrics,
)
from app.evaluation.studies_intervals import SYMBOL_METHOD, TimeBootstrap
from app.evaluation.studies_time import (
    MIN_BUCKET_BARS,
    NS_PER_MONTH,
    decay_slope,
    future_distance_table,
)

PPY = 252.0
DAY_NS = 86_400 * 10**9


def _market(rng: np.random.Generator, n_symbols: int, n_bars: int, rho: float = 0.25, mu: float = 0.001,
            sigma: float = 0.01) -> np.ndarray:
    """``symbols x bars`` iid-over-time returns with a common factor of weight ``rho``."""
    common = rng.normal(size=n_bars)
    idio = rng.normal(size=(n_symbols, n_bars))
    return mu + sigma * (np.sqrt(rho) * common + np.sqrt(1 - rho) * idio)


def _study(rng: np.random.Generator, n_per_group: int, n_bars: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three groups over the same bars: ``seen`` (fully invested in its symbols), ``unseen``
    (other symbols, 20 % invested) and ``half`` (the seen symbols, 50 % invested): per-symbol
    total returns and the per-bar series behind them."""
    market = _market(rng, 2 * n_per_group, n_bars)
    seen, unseen = market[:n_per_group], market[n_per_group:]
    names = [f"S{i}" for i in range(n_per_group)], [f"U{i}" for i in range(n_per_group)]
    parts = (("seen", seen, 1.0, names[0]), ("unseen", unseen, 0.2, names[1]), ("half", seen, 0.5, names[0]))
    bh = np.concatenate([r for _, r, _, _ in parts])
    weight = np.repeat([w for _, _, w, _ in parts], n_per_group)
    agent = weight[:, None] * bh
    group = np.repeat([g for g, _, _, _ in parts], n_per_group)
    symbol = np.concatenate([list(n) for _, _, _, n in parts])
    per_symbol = pd.DataFrame({"group": group, "symbol": symbol, "sample": 0,
                               "total_return": np.prod(1 + agent, axis=1) - 1})
    bars = pd.DataFrame({"group": np.repeat(group, n_bars), "symbol": np.repeat(symbol, n_bars), "sample": 0,
                         "ts_ns": np.tile(np.arange(n_bars, dtype=np.int64) * DAY_NS, len(group)),
                         "step": np.tile(np.arange(n_bars), len(group)), "agent_return": agent.ravel(),
                         "bh_return": bh.ravel(), "position": np.repeat(weight, n_bars)})
    return per_symbol, bars


def _covers(table: pd.DataFrame, group: str, truth: float) -> bool:
    row = table[(table["group"] == group) & (table["metric"] == "total_return")].iloc[0]
    return bool(row.ci_low <= truth <= row.ci_high)


def test_time_block_intervals_cover_means_and_differences_of_correlated_symbols():
    # 8 symbols per group, cross-correlation 0.25, iid over time: the expected total return of
    # a symbol held with weight w is (1 + w mu) ** T - 1, so every group mean and every
    # difference has a known value. Over 400 simulations, bootstrapping symbols as independent
    # units covered it 63 % (group mean, paired difference) and 72 % (unpaired difference) of the
    # time; resampling time blocks jointly for every symbol and group 93-94 % (a block bootstrap
    # is a little narrow on 160 bars). 80 simulations here.
    n, n_bars, mu, sims = 8, 160, 0.001, 80
    truth = {w: (1 + w * mu) ** n_bars - 1 for w in (1.0, 0.5, 0.2)}
    checks = {"seen": truth[1.0], "unseen - seen": truth[0.2] - truth[1.0], "half - seen": truth[0.5] - truth[1.0]}
    hits: dict[str, dict[str, list[bool]]] = {"time": {k: [] for k in checks}, "symbols": {k: [] for k in checks}}
    rng = np.random.default_rng(20240610)
    for sim in range(sims):
        per_symbol, bars = _study(rng, n, n_bars)
        boot = TimeBootstrap.of(bars, "group", PPY, sim, n_boot=100, metrics=["total_return"])
        for how, kw in (("time", {"bars": boot}), ("symbols", {})):
            common = {"metrics": ("total_return",), "n_boot": 100, **kw}
            table = pd.concat([
                group_table(per_symbol, "group", sim, **common),
                diff_rows(per_symbol, "group", [("unseen", "seen")], sim + 1, paired=False, **common),
                diff_rows(per_symbol, "group", [("half", "seen")], sim + 2, paired=True, **common),
            ])
            if how == "symbols":
                assert set(table["ci_method"].str.replace("paired ", "")) == {SYMBOL_METHOD}
            else:
                assert table["ci_method"].str.contains("joint across symbols and groups").all()
            for group, value in checks.items():
                hits[how][group].append(_covers(table, group, value))
    rates = {how: {g: float(np.mean(v)) for g, v in by.items()} for how, by in hits.items()}
    for group in checks:
        assert 0.85 <= rates["time"][group] <= 0.995, rates
        assert rates["symbols"][group] <= 0.8, rates  # the old intervals: the test can fail


def test_replicates_on_the_original_bars_equal_the_per_symbol_metrics():
    # unequal windows (a symbol that starts later, one that ends earlier) and two samples per
    # symbol pooled: with the identity resample, every resampled metric equals the table's value
    rng = np.random.default_rng(3)
    series, n_cal = [], 90
    for symbol, (lo, hi) in {"A": (0, 90), "B": (25, 90), "C": (0, 60)}.items():
        for sample in (0, 1):
            n = hi - lo
            equity = 1000 * np.cumprod(np.r_[1.0, 1 + rng.normal(0.001, 0.01, n)])
            close = 50 * np.cumprod(np.r_[1.0, 1 + rng.normal(0.0, 0.01, n)])
            position = rng.choice([-1.0, 0.0, 0.5, 1.0], n)
            ts = (np.arange(lo, hi, dtype=np.int64) + 1) * DAY_NS
            series.append(SymbolSeries(symbol, sample, ts, equity, close, position, np.zeros(n), np.arange(n)))
    per_symbol = pd.DataFrame([{"symbol": s.symbol, "sample": s.sample, **series_metrics(s, PPY)} for s in series])
    bars = pd.concat([series_frame(s) for s in series], ignore_index=True).assign(g="x")
    boot = TimeBootstrap.of(bars, "g", PPY, 0, n_boot=2)
    boot = dataclasses.replace(boot, idx=np.arange(n_cal)[None], _cache={})
    expected = per_symbol_means(per_symbol)
    checked = [k for k in METRICS if boot.resampled(k)]
    assert set(METRICS) - set(checked) == {"trades"} and "round trips" in boot.reason("trades")
    for metric in checked:
        got = boot.symbol_replicates("x", list(expected.index), metric)[:, 0]
        np.testing.assert_allclose(got, expected[metric].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=metric)


def test_trades_get_no_interval_and_the_table_says_why():
    rng = np.random.default_rng(1)
    per_symbol, bars = _study(rng, 3, 60)
    per_symbol["trades"] = 1.0
    table = group_table(per_symbol, "group", 0, bars=bars, periods_per_year=PPY,
                        metrics=("total_return", "trades"), n_boot=50)
    trades = table[table["metric"] == "trades"]
    assert trades["ci_low"].isna().all() and trades["ci_method"].str.contains("round trips").all()
    assert table.loc[table["metric"] == "total_return", "ci_low"].notna().all()
    short = group_table(per_symbol, "group", 0, bars=bars[bars["step"] < 10], periods_per_year=PPY,
                        metrics=("total_return",), n_boot=50)
    assert short["ci_low"].isna().all() and short["ci_method"].str.contains("too few").all()
    with pytest.raises(ValueError, match="periods_per_year"):
        group_table(per_symbol, "group", 0, bars=bars, metrics=("total_return",))


def _bucket_bars(rng: np.random.Generator, n_symbols: int, n_bars: int, mu: float) -> pd.DataFrame:
    market = _market(rng, n_symbols, n_bars, mu=mu)
    ts = np.arange(n_bars, dtype=np.int64) * DAY_NS + DAY_NS // 2
    return pd.concat([pd.DataFrame({"symbol": f"S{i}", "ts_ns": ts, "agent_return": r,
                                    "bh_return": np.zeros(n_bars)}) for i, r in enumerate(market)],
                     ignore_index=True)


def test_future_distance_bucket_and_slope_intervals_cover_with_correlated_symbols():
    # 12 correlated symbols with zero-mean returns and no decay: every one-month bucket's expected
    # excess return is 0 and so is the slope. Over 300 simulations, resampling each bucket's ~30
    # bars jointly across symbols covered 89 % (bucket mean) and 90 % (slope): a block bootstrap
    # of 30 bars is a little narrow; the bootstrap over symbols as independent units 57-58 %.
    sims, n_bars = 80, 92  # about three months of calendar days: three full buckets
    hits, old_hits, slope_hits, old_slope_hits = [], [], [], []
    rng = np.random.default_rng(7)
    for sim in range(sims):
        bars = _bucket_bars(rng, 12, n_bars, 0.0)
        table, per_symbol = future_distance_table(bars, 0, PPY, n_boot=200, seed=sim)
        first = table.iloc[0]
        hits.append(first.excess_return_ci_low <= 0.0 <= first.excess_return_ci_high)
        values = per_symbol.loc[per_symbol["bucket"] == 0, "excess_return"].to_numpy()
        boot = rng.choice(values, (200, len(values))).mean(axis=1)
        old_hits.append(bool(np.quantile(boot, 0.025) <= 0.0 <= np.quantile(boot, 0.975)))
        full = per_symbol[per_symbol["bars"] >= MIN_BUCKET_BARS]
        slope = decay_slope(full, 1, seed=sim, n_boot=200, bars=bars[bars["ts_ns"] < 3 * NS_PER_MONTH],
                            train_end_ns=0)
        slope_hits.append(slope["ci_low"] <= 0.0 <= slope["ci_high"])
        old = decay_slope(full, 1, seed=sim, n_boot=200)
        old_slope_hits.append(old["ci_low"] <= 0.0 <= old["ci_high"])
    assert first.ci_method.startswith("stationary bootstrap") and "joint" in slope["ci_method"]
    assert old["ci_method"] == SYMBOL_METHOD
    rates = {"bucket": np.mean(hits), "bucket_old": np.mean(old_hits), "slope": np.mean(slope_hits),
             "slope_old": np.mean(old_slope_hits)}
    assert 0.82 <= rates["bucket"] <= 1.0 and rates["bucket_old"] <= 0.75, rates
    assert 0.82 <= rates["slope"] <= 1.0 and rates["slope_old"] <= 0.75, rates
