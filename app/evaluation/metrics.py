"""Trading metrics from an equity curve and a position series (pure numpy, no pandas).

Conventions: ``equity_usd[0]`` is the equity before the first bar's return, so a series of
``n + 1`` equities gives ``n`` simple returns; ``position`` is the signed exposure held during
each of those ``n`` bars (units, weight or sign: only its sign and changes matter here);
``periods_per_year`` annualizes (252 for daily stock bars, 8760 for hourly crypto).

Definitions (``r_t`` per-bar simple returns, ``n`` bars, ``P = periods_per_year``):

* total return ``E_n / E_0 - 1``; annualized (CAGR) ``(E_n / E_0) ** (P / n) - 1``;
* volatility ``std(r, ddof=1) * sqrt(P)``; Sharpe ``mean(r) / std(r, ddof=1) * sqrt(P)``
  (risk-free 0); Sortino ``mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(P)`` (downside deviation
  over all ``n`` bars, target 0, as in Sortino & Price 1994 and quantstats);
* drawdown ``E_t / max_{s<=t} E_s - 1``; max drawdown its largest magnitude, a positive
  fraction; Calmar ``annualized return / max drawdown`` (Young 1991; here over the whole
  series, not the customary trailing 36 months);
* exposure, % long / short / flat: fractions of bars by the sign of ``position``;
  turnover: mean ``|position_t - position_{t-1}|`` per bar, starting from flat.

Conventions for degenerate series (the references disagree; these are ours, tested):

* **Minimum lengths.** Volatility, Sharpe and Sortino need ``n >= MIN_BARS`` (20) bars; the
  compounding statistics (annualized return, Calmar) need ``n >= min_bars_to_annualize(P)``,
  at least 20 bars *and* one month of bars (``P / 12``): a one-bar +1 % would otherwise
  annualize to +1127 % at ``P = 252``. Below the minimum they are ``nan``. (GIPS forbids
  annualizing less than a year; a month is our compromise for short test splits.)
* **Zero variance** is decided in return units (``std < ZERO_VOL = 1e-12`` per bar), so it
  does not depend on the equity's scale (the float noise of a flat equity of 1 or of 1e8 is
  far below it). A zero-variance stream has Sharpe ``0`` when its mean is also below
  ``ZERO_VOL`` (a flat account: no return, no risk) and ``+-inf`` otherwise (riskless drift).
* **Sortino with no losing bar** (downside deviation below ``ZERO_VOL``) is ``+inf`` when the
  mean is positive, as empyrical gives (the quantstats release pinned here gives ``nan``), and ``0``
  for a flat stream (same rule as Sharpe).
* Calmar: ``inf`` with no drawdown and a positive return, ``nan`` for 0 / 0.

Round trips, win rate, profit factor and the complete per-symbol metric set live in
:mod:`app.evaluation.trade_stats`.
"""

from __future__ import annotations

import math

import numpy as np

#: fewest bars for volatility, Sharpe and Sortino (and for annualizing, see the module doc)
MIN_BARS = 20
#: per-bar standard deviation (return units) below which a stream counts as riskless
ZERO_VOL = 1e-12


def min_bars_to_annualize(periods_per_year: float) -> int:
    """Fewest bars for a compounded annual figure: ``MIN_BARS`` and one month of bars."""
    return max(MIN_BARS, math.ceil(periods_per_year / 12))


def simple_returns(equity_usd: np.ndarray) -> np.ndarray:
    equity_usd = np.asarray(equity_usd, dtype=np.float64)
    return equity_usd[1:] / equity_usd[:-1] - 1.0


def total_return(equity_usd: np.ndarray) -> float:
    return float(equity_usd[-1] / equity_usd[0] - 1.0)


def annualized_return(equity_usd: np.ndarray, periods_per_year: float) -> float:
    """CAGR ``(E_n / E_0) ** (P / n) - 1``; ``nan`` below :func:`min_bars_to_annualize`,
    ``-1`` when the equity is wiped out."""
    n = len(equity_usd) - 1
    if n < min_bars_to_annualize(periods_per_year):
        return float("nan")
    if equity_usd[-1] <= 0:
        return -1.0
    return float((equity_usd[-1] / equity_usd[0]) ** (periods_per_year / n) - 1.0)


def volatility(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualized standard deviation (ddof=1); ``nan`` below ``MIN_BARS`` bars."""
    if len(returns) < MIN_BARS:
        return float("nan")
    return float(np.std(returns, ddof=1) * math.sqrt(periods_per_year))


def _ratio(mean: float, risk: float, periods_per_year: float) -> float:
    """``mean / risk * sqrt(P)`` with the zero-risk rule of the module doc."""
    if risk < ZERO_VOL:
        return 0.0 if abs(mean) < ZERO_VOL else math.copysign(math.inf, mean)
    return float(mean / risk * math.sqrt(periods_per_year))


def sharpe(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualized Sharpe ratio of per-bar simple returns (risk-free 0); see the module doc for
    short and zero-variance streams."""
    if len(returns) < MIN_BARS:
        return float("nan")
    return _ratio(float(np.mean(returns)), float(np.std(returns, ddof=1)), periods_per_year)


def sortino(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualized Sortino ratio (target 0, downside deviation over all bars); ``+inf`` with no
    losing bar and a positive mean."""
    if len(returns) < MIN_BARS:
        return float("nan")
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
    return _ratio(float(np.mean(returns)), downside, periods_per_year)


def drawdown(equity_usd: np.ndarray) -> np.ndarray:
    """Drawdown at each point, as a fraction below the running peak (0 at a new high)."""
    equity_usd = np.asarray(equity_usd, dtype=np.float64)
    return equity_usd / np.maximum.accumulate(equity_usd) - 1.0


def max_drawdown(equity_usd: np.ndarray) -> float:
    """Largest peak-to-trough loss as a positive fraction (0.25 = -25 %)."""
    return float(-drawdown(equity_usd).min())


def max_drawdown_duration_bars(equity_usd: np.ndarray) -> int:
    """Longest stretch of bars spent below a previous peak."""
    under = drawdown(equity_usd) < 0
    count = np.cumsum(under)
    run = count - np.maximum.accumulate(np.where(under, 0, count))
    return int(run.max()) if len(run) else 0


def holding_lengths(position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths (bars) of each maximal run of long and of short positions."""
    sign = np.sign(np.asarray(position, dtype=np.float64))
    if len(sign) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    change = np.flatnonzero(np.diff(sign) != 0) + 1
    starts = np.r_[0, change]
    lengths = np.diff(np.r_[starts, len(sign)])
    run_sign = sign[starts]
    return lengths[run_sign > 0], lengths[run_sign < 0]


def calmar(equity_usd: np.ndarray, periods_per_year: float) -> float:
    """Calmar ratio: annualized return / max drawdown.

    ``inf`` when the equity never fell below a previous peak and the return is positive,
    ``nan`` when it also did not grow (0 / 0) or the series is too short to annualize.
    """
    ann, mdd = annualized_return(equity_usd, periods_per_year), max_drawdown(equity_usd)
    if math.isnan(ann):
        return float("nan")
    if mdd == 0.0:
        return float("inf") if ann > 0 else float("nan")
    return float(ann / mdd)


def time_in_market(position: np.ndarray) -> dict[str, float]:
    """Fractions of bars long, short and flat, and exposure (long + short), by ``sign(position)``."""
    sign = np.sign(np.asarray(position, dtype=np.float64))
    n = len(sign)
    if n == 0:
        return {"exposure": 0.0, "pct_long": 0.0, "pct_short": 0.0, "pct_flat": 0.0}
    long, short = float(np.sum(sign > 0) / n), float(np.sum(sign < 0) / n)
    return {"exposure": long + short, "pct_long": long, "pct_short": short,
            "pct_flat": float(np.sum(sign == 0) / n)}


def mean_holding_bars(position: np.ndarray) -> tuple[float, float]:
    """Mean length (bars) of long runs and of short runs; ``nan`` for a side never held."""
    longs, shorts = holding_lengths(position)
    return (float(longs.mean()) if len(longs) else float("nan"),
            float(shorts.mean()) if len(shorts) else float("nan"))


def turnover(position: np.ndarray) -> float:
    """Mean absolute change in position per bar (a position of 1 bought and sold = 2 / n)."""
    pos = np.asarray(position, dtype=np.float64)
    return float(np.abs(np.diff(np.r_[0.0, pos])).mean()) if len(pos) else 0.0


def episode_metrics(equity_usd: np.ndarray, position: np.ndarray, periods_per_year: float) -> dict[str, float]:
    """The per-episode trading metrics training logs (the backtest adds more)."""
    rets = simple_returns(equity_usd)
    sign = np.sign(np.asarray(position, dtype=np.float64))
    longs, shorts = holding_lengths(position)
    n = max(len(sign), 1)
    return {
        "return": total_return(equity_usd),
        "sharpe": sharpe(rets, periods_per_year),
        "max_drawdown": max_drawdown(equity_usd),
        "exposure": float(np.mean(sign != 0)) if len(sign) else 0.0,
        "turnover": turnover(sign),
        "pct_long": float(np.sum(sign > 0) / n),
        "pct_short": float(np.sum(sign < 0) / n),
        "pct_flat": float(np.sum(sign == 0) / n),
        "mean_holding_bars": float(np.mean(np.r_[longs, shorts])) if len(longs) + len(shorts) else 0.0,
    }
