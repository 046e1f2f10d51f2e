"""The bar-wise metrics of :mod:`app.evaluation.trade_stats` for many return paths at once.

Bootstrap intervals recompute every metric on thousands of resampled paths; this module does it
with whole-array numpy operations instead of one Python call per path. Each row of the input is
one path over a common calendar; ``nan`` marks a bar the path does not have (a symbol that
starts later, or a resampled bar from outside its window), and a path is the series of its
finite bars in order, exactly as if the gaps were cut out. On such a compressed path every
function here equals its scalar twin in :mod:`app.evaluation.metrics` (a unit test checks it),
with the same minimum lengths and zero-variance rules.

Round-trip statistics (trades, win rate, profit factor, holding lengths) are not here: a
time-block resample cuts round trips at every block join, so they get no bootstrap interval.
"""

from __future__ import annotations

import math

import numpy as np

from app.evaluation import metrics as m

#: the metrics :func:`path_metrics` computes (the rest of a symbol's metrics get no interval)
PATH_METRICS: tuple[str, ...] = (
    "total_return", "annualized_return", "volatility", "sharpe", "sortino", "calmar",
    "max_drawdown", "max_drawdown_duration_bars", "exposure", "pct_long", "pct_short",
    "pct_flat", "turnover",
)


def _ratio(mean: np.ndarray, risk: np.ndarray, periods_per_year: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean / risk * math.sqrt(periods_per_year)
    with np.errstate(invalid="ignore"):
        riskless = np.where(np.abs(mean) < m.ZERO_VOL, 0.0, np.sign(mean) * np.inf)
    return np.where(risk < m.ZERO_VOL, riskless, ratio)


def _ffill(values: np.ndarray, valid: np.ndarray, first: float) -> np.ndarray:
    """Each bar's value, or the last valid one before it (``first`` before any)."""
    cols = np.arange(values.shape[1])
    last = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    padded = np.concatenate([np.full((len(values), 1), first), values], axis=1)
    return np.take_along_axis(padded, last + 1, axis=1)


def return_path_metrics(returns: np.ndarray, periods_per_year: float) -> dict[str, np.ndarray]:
    """The return metrics of each row of ``returns`` (``K x T``, ``nan`` = no bar)."""
    r = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    valid = np.isfinite(r)
    r0 = np.where(valid, r, 0.0)
    n = valid.sum(axis=1)
    equity = np.cumprod(np.concatenate([np.ones((len(r), 1)), 1.0 + r0], axis=1), axis=1)
    end = equity[:, -1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean = r0.sum(axis=1) / n
        dev = np.where(valid, r - mean[:, None], 0.0)
        sd = np.sqrt((dev**2).sum(axis=1) / (n - 1))
        downside = np.sqrt((np.minimum(r0, 0.0) ** 2).sum(axis=1) / n)
        cagr = np.where(end > 0, np.abs(end) ** (periods_per_year / np.maximum(n, 1)) - 1.0, -1.0)
    ann = np.where(n >= m.min_bars_to_annualize(periods_per_year), cagr, np.nan)
    enough = n >= m.MIN_BARS
    dd = equity / np.maximum.accumulate(equity, axis=1) - 1.0
    mdd = -dd.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        calmar = np.where(mdd > 0, ann / mdd, np.where(ann > 0, np.inf, np.nan))
    calmar = np.where(np.isnan(ann), np.nan, calmar)
    return {
        "total_return": end - 1.0,
        "annualized_return": ann,
        "volatility": np.where(enough, sd * math.sqrt(periods_per_year), np.nan),
        "sharpe": np.where(enough, _ratio(mean, sd, periods_per_year), np.nan),
        "sortino": np.where(enough, _ratio(mean, downside, periods_per_year), np.nan),
        "calmar": calmar,
        "max_drawdown": mdd,
        "max_drawdown_duration_bars": _underwater_bars(
            dd, np.concatenate([np.ones((len(r), 1), bool), valid], axis=1)),
    }


def _underwater_bars(dd: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Longest run of (existing) points below a previous peak; missing points neither count
    nor end a run (as if cut out)."""
    under = (dd < 0) & points
    count = np.cumsum(under, axis=1)
    reset = np.maximum.accumulate(np.where(points & ~under, count, 0), axis=1)
    return (count - reset).max(axis=1).astype(np.float64)


def position_path_metrics(position: np.ndarray) -> dict[str, np.ndarray]:
    """Exposure, % long / short / flat and turnover of each row of ``position`` (``K x T``,
    ``nan`` = no bar), as :func:`app.evaluation.metrics.time_in_market` and
    :func:`~app.evaluation.metrics.turnover`."""
    pos = np.atleast_2d(np.asarray(position, dtype=np.float64))
    valid = np.isfinite(pos)
    n = np.maximum(valid.sum(axis=1), 1)
    sign = np.where(valid, np.sign(np.where(valid, pos, 0.0)), np.nan)
    long, short = (sign > 0).sum(axis=1) / n, (sign < 0).sum(axis=1) / n
    held = _ffill(np.where(valid, pos, 0.0), valid, 0.0)
    prev = np.concatenate([np.zeros((len(pos), 1)), held[:, :-1]], axis=1)
    change = np.where(valid, np.abs(held - prev), 0.0).sum(axis=1) / n
    return {"exposure": long + short, "pct_long": long, "pct_short": short,
            "pct_flat": (sign == 0).sum(axis=1) / n, "turnover": change}


def path_metrics(returns: np.ndarray, position: np.ndarray,
                 periods_per_year: float) -> dict[str, np.ndarray]:
    """:data:`PATH_METRICS` of each row (returns and positions on the same bars)."""
    return return_path_metrics(returns, periods_per_year) | position_path_metrics(position)
