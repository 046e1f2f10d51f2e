"""Round trips, win rate, profit factor, action frequencies and the complete per-symbol metric set.

Pure numpy, same conventions as :mod:`app.evaluation.metrics`: ``equity_usd`` has ``n + 1``
points, ``position[i]`` is the signed exposure held during bar ``i`` (from ``equity_usd[i]`` to
``equity_usd[i + 1]``), ``actions[i]`` the action that produced it.

Definitions
-----------
* **Round trip (trade)**: a maximal run of bars with the same non-zero sign of ``position``,
  from entry to exit. Scaling in or out without changing side continues the trade; a flip
  from long to short closes one trade and opens another. A position still open at the end
  counts as a trade closed at the last bar.
* **Trade PnL**: the equity change over the bars the position is held, *plus the first flat
  bar after it*. A flat bar has no exposure of its own, so whatever equity moves in it belongs
  to the closing trade: in the raytrade envs (an action at bar ``t`` fills at the open of
  ``t + 1``) that bar carries the exit fee, the slippage and the gap up to the exit fill.
  A trade closed by a flip, or at the end of the data, has no such bar.
  ``pnl_usd = E[exit] - E[entry]``, ``return = E[exit] / E[entry] - 1`` (same sign).
* **Win rate** = fraction of round trips with ``pnl_usd > 0`` (``nan`` with no trades).
* **Profit factor** = gross profit / gross loss of round trips,
  ``sum(pnl | pnl > 0) / -sum(pnl | pnl < 0)``: ``inf`` when there is profit and no loss,
  ``nan`` with no trades (or only zero-PnL trades, 0 / 0).
* **Action frequencies**: fraction of bars on which each discrete action was chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.evaluation import metrics as m
from envs.core import costs

#: metrics that depend only on the equity curve (computable for any return series)
RETURN_METRICS: tuple[str, ...] = (
    "total_return", "annualized_return", "volatility", "sharpe", "sortino", "calmar",
    "max_drawdown", "max_drawdown_duration_bars",
)
#: metrics of positions and round trips
POSITION_METRICS: tuple[str, ...] = (
    "trades", "win_rate", "profit_factor", "exposure", "turnover", "pct_long", "pct_short",
    "pct_flat", "mean_long_bars", "mean_short_bars",
)


@dataclass(frozen=True)
class RoundTrips:
    """One entry per round trip, in time order. Bars are indices into ``position``."""

    side: np.ndarray  # +1 long, -1 short
    entry_bar: np.ndarray  # first bar held
    exit_bar: np.ndarray  # one past the last bar held (== len(position) if still open)
    pnl_usd: np.ndarray
    ret: np.ndarray  # fractional return of the equity over the trade

    def __len__(self) -> int:
        return len(self.side)

    @property
    def bars(self) -> np.ndarray:
        return self.exit_bar - self.entry_bar


def round_trips(equity_usd: np.ndarray, position: np.ndarray) -> RoundTrips:
    """Split ``position`` into round trips and price each one from ``equity_usd`` (see module doc)."""
    equity = np.asarray(equity_usd, dtype=np.float64)
    sign = np.sign(np.asarray(position, dtype=np.float64))
    n = len(sign)
    if len(equity) != n + 1:
        raise ValueError(f"round_trips: need len(equity_usd) == len(position) + 1, "
                         f"got {len(equity)} and {n}")
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return RoundTrips(empty, empty, empty, np.zeros(0), np.zeros(0))
    starts = np.r_[0, np.flatnonzero(np.diff(sign) != 0) + 1]
    ends = np.r_[starts[1:], n]
    held = sign[starts] != 0
    starts, ends, side = starts[held], ends[held], sign[starts][held].astype(np.int64)
    # charge the first flat bar after a trade to it (exit fill, fee, gap); not after a flip
    flat_after = np.zeros(len(ends), dtype=bool)
    inside = ends < n
    flat_after[inside] = sign[ends[inside]] == 0
    exit_point = ends + flat_after
    pnl = equity[exit_point] - equity[starts]
    return RoundTrips(side, starts, ends, pnl, equity[exit_point] / equity[starts] - 1.0)


def win_rate(trades: RoundTrips) -> float:
    """Fraction of round trips with positive PnL; ``nan`` if there are none."""
    return float(np.mean(trades.pnl_usd > 0)) if len(trades) else float("nan")


def profit_factor(trades: RoundTrips) -> float:
    """Gross profit / gross loss of round trips; ``inf`` with no loss, ``nan`` with no trades."""
    gain = float(trades.pnl_usd[trades.pnl_usd > 0].sum())
    loss = float(-trades.pnl_usd[trades.pnl_usd < 0].sum())
    if loss > 0:
        return gain / loss
    return float("inf") if gain > 0 else float("nan")


def action_frequencies(actions: np.ndarray, num_actions: int | None = None) -> np.ndarray:
    """Fraction of bars on which each discrete action ``0 .. num_actions - 1`` was chosen.

    ``actions`` must be one integer-valued action per bar, shape ``(n,)`` or ``(n, 1)`` (for
    continuous actions pass a discretization, e.g. ``np.sign(a) + 1``). ``num_actions``
    defaults to ``max(actions) + 1``.
    """
    a = np.asarray(actions)
    if a.ndim > 1 and a.shape[1:] != (1,) * (a.ndim - 1):
        raise ValueError(f"action_frequencies: one discrete action per bar, got shape {a.shape}")
    a = a.reshape(-1)
    if a.size and not np.all(np.equal(np.mod(a, 1), 0)):
        raise ValueError("action_frequencies: actions must be integer-valued (discrete)")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise ValueError("action_frequencies: actions must be >= 0")
    size = num_actions if num_actions is not None else (int(a.max()) + 1 if a.size else 0)
    if a.size and a.max() >= size:
        raise ValueError(f"action_frequencies: action {int(a.max())} >= num_actions={size}")
    return np.bincount(a, minlength=size)[:size] / max(a.size, 1)


def return_metrics(equity_usd: np.ndarray, periods_per_year: float) -> dict[str, float]:
    """The :data:`RETURN_METRICS` of one equity curve."""
    rets = m.simple_returns(equity_usd)
    return {
        "total_return": m.total_return(equity_usd),
        "annualized_return": m.annualized_return(equity_usd, periods_per_year),
        "volatility": m.volatility(rets, periods_per_year),
        "sharpe": m.sharpe(rets, periods_per_year),
        "sortino": m.sortino(rets, periods_per_year),
        "calmar": m.calmar(equity_usd, periods_per_year),
        "max_drawdown": m.max_drawdown(equity_usd),
        "max_drawdown_duration_bars": float(m.max_drawdown_duration_bars(equity_usd)),
    }


def backtest_metrics(equity_usd: np.ndarray, position: np.ndarray, periods_per_year: float,
                     actions: np.ndarray | None = None,
                     action_names: Sequence[str] | None = None) -> dict[str, float]:
    """Every per-symbol metric: :data:`RETURN_METRICS`, :data:`POSITION_METRICS` and, when
    ``actions`` are given, ``action_freq_<name>`` for each discrete action (names default to
    the action index; ``action_names`` also fixes the number of actions).

    ``turnover`` is in the units of ``position``: pass weights (position value / equity) for
    turnover as a fraction of equity per bar.
    """
    equity = np.asarray(equity_usd, dtype=np.float64)
    pos = np.asarray(position, dtype=np.float64)
    trades = round_trips(equity, pos)
    mean_long, mean_short = m.mean_holding_bars(pos)
    out = return_metrics(equity, periods_per_year)
    out |= {"trades": float(len(trades)), "win_rate": win_rate(trades),
            "profit_factor": profit_factor(trades)}
    out |= m.time_in_market(pos)
    out |= {"turnover": m.turnover(pos), "mean_long_bars": mean_long, "mean_short_bars": mean_short}
    if actions is not None:
        freqs = action_frequencies(actions, len(action_names) if action_names is not None else None)
        names = list(action_names) if action_names is not None else [str(i) for i in range(len(freqs))]
        out |= {f"action_freq_{name}": float(f) for name, f in zip(names, freqs, strict=True)}
    return out


def buy_and_hold_equity(close_usd: np.ndarray, cost: costs.CostModel | None = None) -> np.ndarray:
    """Equity (starting at 1) of buying at ``close_usd[0]`` and selling at ``close_usd[-1]``.

    With ``cost`` the entry and the exit pay the env's fee and slippage
    (:func:`envs.core.costs.target_qty` and :func:`~envs.core.costs.fill`, as the agent's first
    buy of weight 1 and its last sale): the entry cost shows in the first bar's return, the exit
    cost in the last. ``None``: frictionless ``close / close[0]``.
    """
    close = np.asarray(close_usd, dtype=np.float64)
    if cost is None or len(close) < 2:
        return close / close[0]
    qty = costs.target_qty(1.0, 1.0, close[0], 0.0, cost.fee_rate, cost.slippage_rate)
    _, notional, fee = costs.fill(qty, close[0], cost.fee_rate, cost.slippage_rate)
    cash = 1.0 - notional - fee
    equity = cash + qty * close
    _, notional_out, fee_out = costs.fill(-qty, close[-1], cost.fee_rate, cost.slippage_rate)
    equity[0], equity[-1] = 1.0, cash - notional_out - fee_out
    return equity


def buy_and_hold_metrics(close_usd: np.ndarray, periods_per_year: float,
                         cost: costs.CostModel | None = None) -> dict[str, float]:
    """:func:`backtest_metrics` of :func:`buy_and_hold_equity` (costs charged when ``cost`` is
    given): a long position of weight 1 on every bar, one trade."""
    equity = buy_and_hold_equity(close_usd, cost)
    return backtest_metrics(equity, np.ones(len(equity) - 1), periods_per_year)


def gross_pnl(equity_usd: np.ndarray, position: np.ndarray) -> tuple[float, float]:
    """``(gross profit, gross loss)`` of the round trips, both >= 0, in units of the equity's
    start (so symbols of any account size add up): the parts of :func:`profit_factor`."""
    equity = np.asarray(equity_usd, dtype=np.float64)
    pnl = round_trips(equity / equity[0], position).pnl_usd
    return float(pnl[pnl > 0].sum()), float(-pnl[pnl < 0].sum())


def pooled_profit_factor(gains: np.ndarray, losses: np.ndarray) -> float:
    """Profit factor of several symbols' trades together: ``sum(gains) / sum(losses)``; ``inf``
    with profit and no loss, ``nan`` with neither (as :func:`profit_factor`)."""
    gain, loss = float(np.sum(gains)), float(np.sum(losses))
    if loss > 0:
        return gain / loss
    return float("inf") if gain > 0 else float("nan")
