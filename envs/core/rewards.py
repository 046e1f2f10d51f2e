"""Rewards, selectable by name; pure functions over floats or arrays.

Like :mod:`envs.core.costs`, every function runs on Python floats (single env) and numpy arrays
(vector env). Functions that need ``log``/``sqrt``/``max`` take ``ops`` (see
:class:`envs.core.engine.ScalarOps` / :class:`envs.core.engine.ArrayOps`).

PnL-based rewards telescope, so "reward equals PnL" is an identity, not an approximation:

* ``log_return``: ``log(E_t / E_{t-1})``; the episode sum is ``log(E_T / E_0)``.
* ``linear_return``: ``(E_t - E_{t-1}) / E_0`` -- PnL in units of the initial equity (NOT the
  per-bar percentage, which would not sum to the episode's return); sum = ``(E_T - E_0) / E_0``.
* ``excess_log_return``: ``log_return`` minus the index's log return on the same bar.
* ``differential_sharpe``: Moody & Saffell's differential Sharpe ratio of per-bar returns.
* ``excess_horizon``: the original StockSwing design -- percentage gain of the stock minus
  percentage gain of the index over each hold, minus a penalty per buy, delivered causally as
  per-bar increments ``dP / P_entry - dI / I_entry`` while holding (they telescope to the gain
  from entry fill open to exit fill open) plus ``-penalty`` on the bar of the buy. Fees are not
  in it: the penalty stands for them.
"""

from __future__ import annotations

REWARDS = ("excess_horizon", "log_return", "linear_return", "excess_log_return", "differential_sharpe")
_TINY = 1e-300


def log_return(equity0, equity1, ops):
    return ops.log(ops.maximum(equity1 / equity0, _TINY))


def linear_return(equity0, equity1, initial_equity):
    return (equity1 - equity0) / initial_equity


def excess_log_return(equity0, equity1, index0, index1, ops):
    return log_return(equity0, equity1, ops) - ops.log(index1 / index0)


def differential_sharpe(ret, mean, mean_sq, eta, ops):
    """One step of the differential Sharpe ratio.

    ``mean``/``mean_sq`` are the exponential moving first and second moments of past returns
    (state, start at 0). Returns ``(reward, new_mean, new_mean_sq)``; the reward is 0 while the
    variance estimate is ~0 (first steps, flat equity).
    """
    d_mean = ret - mean
    d_sq = ret * ret - mean_sq
    var = mean_sq - mean * mean
    ok = var > 1e-12
    safe = ops.maximum(var, 1e-12)
    reward = ok * (mean_sq * d_mean - 0.5 * mean * d_sq) / (safe * ops.sqrt(safe))
    return reward, mean + eta * d_mean, mean_sq + eta * d_sq


def excess_horizon(held_before, held_after, bought, entry_price, entry_index,
                   close0, open1, close1, index_close0, index_open1, index_close1, buy_penalty):
    """Per-bar increment of (stock % gain - index % gain) over a hold, minus the buy penalty.

    ``held_before`` is the position over [close t, open t+1], ``held_after`` over
    [open t+1, close t+1]; ``entry_*`` are the opens of the fill bar of the position held after.
    """
    gap = held_before * ((open1 - close0) / entry_price - (index_open1 - index_close0) / entry_index)
    day = held_after * ((close1 - open1) / entry_price - (index_close1 - index_open1) / entry_index)
    return gap + day - buy_penalty * bought
