"""The portfolio engine: N assets with shared equity, per-asset state ``[B, A]``, one calendar.

A batched :class:`~envs.core.engine.Engine` (the single env is its B = 1 view) whose per-asset
quantities are ``[B, A]`` arrays and whose equity is ``cash + (qty * price).sum(-1)``. It reuses
the base engine's universe eligibility, precomputed observation tables (the one observation
builder), rewards, resets and autoreset; fills, fees, slippage, margin and funding come from
:mod:`envs.core.costs`.

Calendar: the assets of a market are put on ONE calendar, the union of their timestamps
(:func:`align_market`). Each asset owns a dense series from its first to its last bar; where it
has no bar at a calendar time, a *gap bar* is filled flat at its last close with zero volume
(causal). Orders for an asset whose next bar is a gap bar are not filled (they wait).

Margin (cross margin: every position shares the equity). After the fill and funding, the book
is marked at every asset's adverse extreme of the bar (lows for longs, highs for shorts; the
mark OHLC when the market carries it). Where that worst-case equity falls to the maintenance
margin of the gross notional there (:func:`~envs.core.costs.maintenance_margin_usd`), every
position is closed at those prices (slippage and fee), cash is floored at 0 (the exchange's
insurance fund absorbs a deficit) and the episode terminates. A book already under maintenance
at the next open (a gap) is liquidated at the open instead, before any order fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from gymnasium import spaces as gym_spaces

from envs.core import costs, spaces
from envs.core.engine import Engine
from envs.core.market import CLOSE, OPEN, VOLUME, MarketArrays
from envs.core.observation import (
    ACTION_MASK_KEY,
    POSITION_KEYS,
    market_observation,
    portfolio_position_fields,
    portfolio_position_observation,
    validate_bars,
)
from envs.core.portfolio_config import PortfolioConfig
from envs.core.render import RENDER_BARS
from envs.core.resample import align_to_calendar

# rows of the per-row price table ``[K, R + 1]`` (the last column is a sentinel)
P_OPEN, P_CLOSE, P_MARK_OPEN, P_MARK_HIGH, P_MARK_LOW, P_FUNDING, P_LIVE = range(7)
LEVERAGE_TOLERANCE = 1e-12  # relative slack of the leverage check (floating-point rounding)
_TINY = 1e-300
_sum = np.add.reduce  # ndarray.sum without its Python wrapper (hot path)


@dataclass(frozen=True, eq=False)
class Calendar:
    """Assets on one calendar (see the module docstring).

    Attributes:
        market: the dense market: each asset's series spans its first to its last bar.
        ts_ns: int64 ``[C]``, the union of the assets' timestamps.
        first: int64 ``[S]``, calendar index of each asset's first bar (its row 0).
        live: bool ``[R]``, the row is a real bar (False: a gap bar filled flat).
    """

    market: MarketArrays
    ts_ns: np.ndarray
    first: np.ndarray
    live: np.ndarray


def validate_market(market: MarketArrays) -> None:
    """Clear errors for arrays a portfolio cannot use (NaN, non-positive prices, duplicates)."""
    if not isinstance(market, MarketArrays):
        raise ValueError(f"market: expected MarketArrays, got {type(market).__name__}")
    market.require_bars("market")
    validate_bars("market", market.ts_ns, market.ohlcv, market.offsets, market.symbols)
    dup = sorted({s for s in market.symbols if market.symbols.count(s) > 1})
    if dup:
        raise ValueError(f"market.symbols: duplicate symbols {dup}")
    if market.funding_rate is not None and not np.isfinite(market.funding_rate).all():
        r = int(np.flatnonzero(~np.isfinite(market.funding_rate))[0])
        raise ValueError(f"market.funding_rate: NaN or inf at row {r}")
    if market.mark_ohlc is not None and not (np.isfinite(market.mark_ohlc) & (market.mark_ohlc > 0)).all():
        r = int(np.flatnonzero(~(np.isfinite(market.mark_ohlc) & (market.mark_ohlc > 0)).all(1))[0])
        raise ValueError(f"market.mark_ohlc: prices must be finite and > 0, row {r} has "
                         f"{market.mark_ohlc[r].tolist()}")


def align_market(market: MarketArrays, symbols: tuple[str, ...]) -> Calendar:
    """``symbols`` of ``market`` on the union of their timestamps, gaps filled flat (causal)."""
    idx = [market.index_of(s) for s in symbols]
    cal = np.unique(np.concatenate([market.ts_ns[market.rows(i)] for i in idx]))
    src_parts, grid_parts, first = [], [], []
    for i in idx:
        rows = market.rows(i)
        ts = market.ts_ns[rows]
        lo, hi = np.searchsorted(cal, ts[[0, -1]]) if len(ts) else (0, -1)
        grid = cal[lo:hi + 1]
        src_parts.append(rows.start + np.searchsorted(ts, grid, "right") - 1)  # last bar at or before
        grid_parts.append(grid)
        first.append(int(lo))
    src, ts_ns = np.concatenate(src_parts).astype(np.int64), np.concatenate(grid_parts).astype(np.int64)
    live = market.ts_ns[src] == ts_ns
    gap = ~live
    ohlcv = market.ohlcv[src]
    ohlcv[gap, :4] = ohlcv[gap, CLOSE][:, None]
    ohlcv[gap, VOLUME] = 0.0
    funding = None if market.funding_rate is None else np.where(live, market.funding_rate[src], 0.0)
    mark = None if market.mark_ohlc is None else market.mark_ohlc[src]
    if mark is not None:
        mark[gap] = mark[gap, 3][:, None]
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in grid_parts])]).astype(np.int64)
    dense = MarketArrays(tuple(symbols), offsets, ts_ns, ohlcv, funding, mark)
    return Calendar(dense, cal.astype(np.int64), np.array(first, dtype=np.int64), live)


def action_mask(position: Mapping[str, Any], *, n_choices: int) -> np.ndarray:
    """Portfolio's mask rule (``envs.portfolio.action_mask``, ``EnvSpec.action_mask``): every
    side of every asset is valid in every position (the held side is the no-op): bool
    ``[..., n_assets, n_choices]`` of True for ``qty`` ``[..., n_assets]``."""
    qty = np.asarray(position["qty"])
    return np.ones((*qty.shape, n_choices), dtype=bool)


class PortfolioEngine(Engine):
    """Steps ``num_envs`` portfolios of ``n_assets`` assets; see the module docstring.

    Configured by a :class:`~envs.core.portfolio_config.PortfolioConfig` (fields read here:
    ``n_assets``, ``action_mode``, ``max_leverage``, ``allow_short``, ``maintenance_margin_bps``,
    ``rebalance_band``, ``with_index``, ``clip_log_ratio``).
    """

    PER_ASSET = {"assets": np.int64, "row0": np.int64, "qty": np.float64, "close_usd": np.float64,
                 "bars_held": np.int64, "fill_price_usd": np.float64}
    STATE = {"cal_row": np.int64, "end_cal_row": np.int64, "cash_usd": np.float64,
             "equity_usd": np.float64, "index_close": np.float64, "fees_paid_usd": np.float64,
             "fee_usd": np.float64, "funding_usd": np.float64, "exposure_at_fill": np.float64,
             "liquidated": np.bool_, "dsr_mean": np.float64, "dsr_mean_sq": np.float64, **PER_ASSET}
    config: PortfolioConfig
    # state beyond ``Engine``'s (always arrays: this engine is batched): [B], per asset [B, A]
    cal_row: np.ndarray
    end_cal_row: np.ndarray
    fee_usd: np.ndarray
    funding_usd: np.ndarray
    exposure_at_fill: np.ndarray
    liquidated: np.ndarray
    assets: np.ndarray
    row0: np.ndarray
    fill_price_usd: np.ndarray

    def __init__(self, market: MarketArrays, config: PortfolioConfig, *, index: MarketArrays | None = None,
                 num_envs: int = 1) -> None:
        validate_market(market)
        names = config.symbols or market.symbols
        for s in names:
            if s not in market.symbols:
                raise ValueError(f"{type(config).__name__}.symbols: symbol {s!r} not in market "
                                 f"({market.n_symbols} symbols)")
        self._names = tuple(names)
        self._cal = align_market(market, self._names)
        spec = config.observation_spec(max(len(self._cal.ts_ns), 1), with_funding=market.funding_rate is not None)
        super().__init__(self._cal.market, config, spec, index=index, num_envs=num_envs, batched=True)
        self._price_table(self._cal.market)
        self._lev = float(config.max_leverage)
        self._mmr = config.maintenance_margin_bps * costs.BPS
        # cost of trading one unit of notional at the mark (slippage + fee), and the largest
        # notional-at-mark per unit of sizing equity (a sell's fill price is below the mark)
        self._unit_cost = self._slippage_rate + self._fee_rate * (1.0 + self._slippage_rate)
        self._rho = 1.0 / ((1.0 - self._slippage_rate) * (1.0 + self._fee_rate))
        self._continuous = config.action_mode == "continuous"
        self._band = float(config.rebalance_band)
        self._side_offset = 1 if config.allow_short else 0
        self._n_choices = 3 if config.allow_short else 2
        self._w = self._lev / self.n_assets
        self._a_low = -1.0 if config.allow_short else 0.0
        self._initial = float(config.initial_cash_usd)
        self._layout3 = tuple((k, a, b, shape if len(shape) == 2 else (*shape, 1))
                              for k, (a, b, shape) in self._layout.items())
        self.single_observation_space, self.single_action_space = self._spaces()
        self.observe_action_mask(None if self._continuous else partial(action_mask, n_choices=self._n_choices),
                                 "qty")

    # --- data -----------------------------------------------------------------------------
    def _price_table(self, dense: MarketArrays) -> None:
        ohlcv = dense.ohlcv
        mark = dense.mark_ohlc if dense.mark_ohlc is not None else ohlcv[:, :4]
        px = np.zeros((7, len(ohlcv) + 1))
        px[P_OPEN, :-1], px[P_CLOSE, :-1] = ohlcv[:, OPEN], ohlcv[:, CLOSE]
        px[P_MARK_OPEN, :-1], px[P_MARK_HIGH, :-1], px[P_MARK_LOW, :-1] = mark[:, 0], mark[:, 1], mark[:, 2]
        if dense.funding_rate is not None:
            px[P_FUNDING, :-1] = dense.funding_rate
        px[P_LIVE, :-1] = self._cal.live
        px[:, -1] = px[:, -2] if len(ohlcv) else 1.0  # sentinel: row t+1 of a finished env
        self._px, self._has_funding = px, dense.funding_rate is not None
        index = np.ones((2, len(self._cal.ts_ns) + 1))
        if self.index is not None:
            aligned, _ = align_to_calendar(self._cal.ts_ns, self.index.ts_ns, self.index.ohlcv)
            index[0, :-1], index[1, :-1] = aligned[:, 0], aligned[:, 3]
            index[:, -1] = index[:, -2]
        self._index_cal = index

    def _setup_universe(self, covered: np.ndarray) -> None:
        super()._setup_universe(covered)  # per-asset eligible rows of the dense market
        cfg, m = self.config, self.market
        if cfg.n_assets is None and len(self.universe) < len(self._names):
            short = [s for s in self._names if s not in self.universe]
            raise ValueError(f"{type(cfg).__name__}.n_assets: None trades every symbol, but {short} lack "
                             f"warmup_bars + episode_bars bars of data (set n_assets to sample subsets)")
        n = self.n_assets = cfg.n_assets or len(self._names)
        if n > len(self.universe):
            cfg._fail("n_assets", f"only {len(self.universe)} symbols have enough data")
        off, first = m.offsets[self._uni_sym], self._cal.first[self._uni_sym]
        self._lo_c, self._hi_c = first + self._lo - off, first + self._hi - off
        self._row0_u = off - first  # the asset's row at calendar index c is row0 + c
        self._need = cfg.episode_bars or 1
        edges = np.zeros(len(self._cal.ts_ns) + 1, dtype=np.int64)
        np.add.at(edges, self._lo_c, 1)
        np.add.at(edges, self._hi_c - self._need + 1, -1)
        self._starts = np.flatnonzero(np.cumsum(edges)[:-1] >= n)
        if not len(self._starts):
            raise ValueError(f"{type(cfg).__name__}.n_assets: no window of warmup_bars + episode_bars "
                             f"bars where {n} assets all have data")

    def _spaces(self) -> tuple[gym_spaces.Dict, gym_spaces.Space]:
        n, f32 = self.n_assets, np.float32
        obs = spaces.dict_space({k: ((n, *shape), lo, hi) for k, (shape, lo, hi) in self.market_fields().items()})
        for key, (low, high) in portfolio_position_fields(n, self._lev, self.spec).items():
            obs[key] = gym_spaces.Box(low, high, dtype=f32)
        if self._continuous:
            return obs, gym_spaces.Box(f32(self._a_low), f32(1.0), (n,), dtype=f32)
        return obs, gym_spaces.MultiDiscrete([self._n_choices] * n)

    # --- episodes -------------------------------------------------------------------------
    def reset_state_arrays(self) -> None:
        shape = (self.num_envs, self.n_assets)
        for name, dtype in self.STATE.items():
            setattr(self, name, np.zeros(shape if name in self.PER_ASSET else self.num_envs, dtype=dtype))

    def _sample(self, rng: np.random.Generator, k: int, options: dict | None):
        cfg, n, need = self.config, self.n_assets, self._need
        forced = (options or {}).get("symbols")
        if forced is not None:
            names = [forced] if isinstance(forced, str) else list(forced)
            bad = [s for s in names if s not in self.universe]
            if len(names) != n or len(set(names)) != n or bad:
                raise ValueError(f"options['symbols']: need {n} distinct symbols of the eligible "
                                 f"universe, got {names}" + (f" ({bad} not eligible)" if bad else ""))
            u = np.array(sorted(self.universe.index(s) for s in names), dtype=np.int64)
            lo, hi = int(self._lo_c[u].max()), int(self._hi_c[u].min()) - need
            if lo > hi:
                raise ValueError(f"options['symbols']: {names} share no window of episode_bars bars")
            start = rng.integers(lo, hi + 1, size=k) if cfg.random_start else np.full(k, lo)
            u = np.broadcast_to(u, (k, n)).copy()
        else:
            starts = self._starts
            start = starts[rng.integers(len(starts), size=k)] if cfg.random_start else np.full(k, starts[0])
            n_uni = len(self.universe)
            if n == n_uni:
                u = np.broadcast_to(np.arange(n_uni), (k, n)).copy()
            else:  # a uniform subset of the assets with data over the episode (universe order)
                ok = (self._lo_c <= start[:, None]) & (start[:, None] <= self._hi_c - need)
                keys = np.where(ok, rng.random((k, n_uni)), 2.0)
                u = np.sort(np.argsort(keys, axis=1, kind="stable")[:, :n], axis=1)
        end = start + cfg.episode_bars if cfg.episode_bars else self._hi_c[u].min(axis=1)
        return u, start.astype(np.int64), end.astype(np.int64)

    def initial_state(self, assets: np.ndarray, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
        k, n = assets.shape
        row0 = self._row0_u[assets]
        cash = np.full(k, self._initial)
        zero, zeros = np.zeros(k), np.zeros((k, n))
        return {"cal_row": start, "end_cal_row": end, "assets": assets, "row0": row0, "qty": zeros,
                "close_usd": self._px[P_CLOSE, row0 + start[:, None]], "bars_held": np.zeros((k, n), np.int64),
                "fill_price_usd": zeros, "cash_usd": cash, "equity_usd": cash,
                "index_close": self._index_cal[1, start], "fees_paid_usd": zero, "fee_usd": zero,
                "funding_usd": zero, "exposure_at_fill": zero, "liquidated": np.zeros(k, bool),
                "dsr_mean": zero, "dsr_mean_sq": zero}

    # --- stepping -------------------------------------------------------------------------
    def convert_action(self, action):
        a = np.asarray(action)
        if a.shape != (self.num_envs, self.n_assets):
            raise ValueError(f"action: expected shape {(self.num_envs, self.n_assets)} (envs, assets), "
                             f"got {a.shape}")
        if self._continuous:
            if not np.isfinite(a).all():
                raise ValueError("action: target weights must be finite")
        elif a.dtype.kind not in "iub" or a.min() < 0 or a.max() >= self._n_choices:
            raise ValueError(f"action: expected ints in [0, {self._n_choices}), got {a.tolist()}")
        return a

    def target_weights(self, action, value_usd, equity_usd):
        """Action -> ``(trade [B, A], target weight [B, A])``, weights signed fractions of equity
        with ``sum(|w|) <= max_leverage``.

        Discrete: ``w = (action - 1) * max_leverage / n_assets`` (long-only: ``action * ...``);
        an asset trades only where the wanted side differs from the held side (a held position
        is not topped up as its weight drifts). Continuous: ``w = max_leverage * a / max(1,
        sum(|a|))`` with ``a`` clipped to the action bounds; an asset trades where ``|w -
        current weight| > rebalance_band``.
        """
        if self._continuous:
            a = np.clip(action, self._a_low, 1.0)
            w = a * (self._lev / np.maximum(np.abs(a).sum(-1, keepdims=True), 1.0))
            return np.abs(w - value_usd / equity_usd[:, None]) > self._band, w
        side = action - self._side_offset
        return side != np.sign(value_usd), side * self._w

    def _liquidate(self, mask, cash, qty, ref_price):
        """Close every position where ``mask`` at ``ref_price`` (slippage, fee); cash floored at 0.
        Returns ``(cash, qty, fee, fill_price)``."""
        price, notional, fee = costs.fill(-qty * mask[:, None], ref_price, self._fee_rate, self._slippage_rate)
        fee = _sum(fee, -1)
        cash = cash - _sum(notional, -1) - fee
        return np.where(mask, np.maximum(cash, 0.0), cash), qty * ~mask[:, None], fee, price

    def _fill(self, trade, weight, sizing_equity, qty0, cash0, open1):
        """:func:`~envs.core.costs.rebalance` of every asset; the book after it, marked at ``open1``."""
        dq, price, notional, fee = costs.rebalance(trade, weight, sizing_equity[:, None], qty0, open1,
                                                   self._fee_rate, self._slippage_rate, np.sign)
        qty = qty0 + dq
        fee = _sum(fee, -1)
        cash = cash0 - _sum(notional, -1) - fee
        value = qty * open1
        return qty, cash, price * (dq != 0.0), fee, cash + _sum(value, -1), _sum(np.abs(value), -1)

    def step(self, action):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._step(action)

    def _step(self, action):
        c1 = self.cal_row + 1
        px = self._px.take(self.row0 + c1[:, None], axis=1)  # [K, B, A]
        o1, close1 = px[P_OPEN], px[P_CLOSE]
        index_open1, index_close1 = self._index_cal.take(c1, axis=1)
        qty0, cash0, lev, mmr = self.qty, self.cash_usd, self._lev, self._mmr
        value0 = qty0 * o1
        equity_open, gross0 = cash0 + _sum(value0, -1), _sum(np.abs(value0), -1)
        can_trade = px[P_LIVE] > 0.0
        # a book under maintenance at the open (a gap through the margin) is liquidated there
        liq_open = (gross0 > 0.0) & (equity_open <= costs.maintenance_margin_usd(gross0, mmr))
        fees, price_liq = 0.0, None
        if liq_open.any():
            cash0, qty0, fees, price_liq = self._liquidate(liq_open, cash0, qty0, o1)
            value0 = qty0 * o1
            equity_open = cash0 + _sum(value0, -1)
            can_trade = can_trade & ~liq_open[:, None]
        trade, weight = self.target_weights(action, value0, equity_open)
        trade = trade & can_trade
        qty, cash, fill_price, fee, equity_fill, gross = self._fill(trade, weight, equity_open, qty0, cash0, o1)
        over = gross > lev * equity_fill * (1.0 + LEVERAGE_TOLERANCE)
        if over.any():  # rebalance every asset, its target sized so that gross <= L * equity after costs
            trade = np.where(over[:, None], can_trade, trade)
            abs0 = np.abs(value0)
            held, traded0 = _sum(abs0 * ~trade, -1), _sum(abs0 * trade, -1)
            w_sum = _sum(np.abs(weight) * trade, -1)
            c = self._unit_cost
            bound = (lev * (equity_open - c * traded0) - held) / (w_sum * self._rho * (1.0 + lev * c))
            bound = np.maximum(np.where(w_sum > 0.0, np.minimum(bound, equity_open), equity_open), 0.0)
            qty, cash, fill_price, fee, equity_fill, gross = self._fill(
                trade, weight, np.where(over, bound, equity_open), qty0, cash0, o1)
        fees = fees + fee
        if price_liq is not None:
            fill_price = np.where(liq_open[:, None], price_liq * (self.qty != 0.0), fill_price)
        funding = np.zeros(self.num_envs)
        if self._has_funding:  # after the fill, on the position held at the funding time
            funding = _sum(costs.funding_usd(qty, px[P_MARK_OPEN], px[P_FUNDING]), -1)
            cash = cash - funding
        worst = np.where(qty > 0.0, px[P_MARK_LOW], px[P_MARK_HIGH])
        value_w = qty * worst
        gross_w = _sum(np.abs(value_w), -1)
        liq = (gross_w > 0.0) & (cash + _sum(value_w, -1) <= costs.maintenance_margin_usd(gross_w, mmr))
        if liq.any():
            held_before = qty != 0.0
            cash, qty, fee_liq, price_liq = self._liquidate(liq, cash, qty, worst)
            fees = fees + fee_liq
            fill_price = np.where(liq[:, None] & held_before, price_liq, fill_price)
        terminated = liq_open | liq
        equity = cash + _sum(qty * close1, -1)
        reward = self._reward(self.equity_usd, equity, qty0, qty, o1, close1, index_open1, index_close1)
        sign = np.sign(qty)
        self.bars_held = (sign != 0.0) * ((sign == np.sign(qty0)) * self.bars_held + 1)
        self.qty, self.cash_usd, self.equity_usd, self.close_usd = qty, cash, equity, close1
        self.index_close, self.fees_paid_usd = index_close1, self.fees_paid_usd + fees
        self.fee_usd, self.funding_usd = fees, funding
        self.fill_price_usd, self.liquidated = fill_price, terminated
        self.exposure_at_fill = gross / np.maximum(equity_fill, _TINY)
        self.cal_row = c1
        return reward, terminated, c1 >= self.end_cal_row

    # --- observations & info --------------------------------------------------------------
    def observe(self) -> dict[str, np.ndarray]:
        """Per-asset market windows ``[B, A, w, F]`` (the one builder's fields; volume and funding
        with a trailing axis of 1), ``positions`` ``[B, A, 2]`` and ``portfolio`` ``[B, 3]``
        (:func:`~envs.core.observation.portfolio_position_observation`)."""
        rows = (self.row0 + self.cal_row[:, None]).reshape(-1)
        b, n = self.num_envs, self.n_assets
        if self._table is not None:
            block = np.take(self._table, rows, axis=0).reshape(b, n, self._width)
            obs = {k: block[:, :, lo:hi].reshape(b, n, *shape) for k, lo, hi, shape in self._layout3}
        else:  # gathered into fresh contiguous arrays [B * A, ...]
            fields = market_observation(self._base, rows, self._fresh_fields(len(rows)), self._scratch)
            obs = {k: fields[k].reshape(b, n, *shape) for k, _, _, shape in self._layout3}
        obs.update(portfolio_position_observation(self.qty, self.close_usd, self.cash_usd, self.equity_usd,
                                                  self.bars_held, initial_cash_usd=self._initial,
                                                  max_leverage=self._lev, spec=self.spec))
        if self._mask_table is not None:
            obs[ACTION_MASK_KEY] = self.mask_observation()  # [B, A, n_choices]
        return obs

    def render_lines(self, i: int = 0) -> list[np.ndarray]:
        """Each asset's closes over the last :data:`RENDER_BARS` calendar bars, over the first shown."""
        out = []
        for a, asset in enumerate(self.assets[i]):
            row = int(self.row0[i, a] + self.cal_row[i])
            lo = max(int(self.market.offsets[self._uni_sym[asset]]), row - RENDER_BARS + 1)
            close = self.market.ohlcv[lo:row + 1, CLOSE]
            out.append(close / close[0])
        return out

    def render_text(self, i: int = 0) -> str:
        """One line: bar time, equity, cash and each asset's quantity of env ``i``."""
        held = ", ".join(f"{self.universe[a]} {q:.6g}" for a, q in zip(self.assets[i], self.qty[i], strict=True))
        return (f"ts_ns {int(self._cal.ts_ns[min(int(self.cal_row[i]), len(self._cal.ts_ns) - 1)])} equity_usd "
                f"{float(self.equity_usd[i]):.2f} cash_usd {float(self.cash_usd[i]):.2f} qty [{held}]")

    def market_fields(self) -> dict[str, tuple[tuple[int, ...], float, float]]:
        """``{key: (shape per asset, low, high)}`` of the per-asset market windows."""
        return {k: ((self.spec.window_bars, 4 if "hloc" in k else 1), lo, hi)
                for k, (_, lo, hi) in self.spec.fields().items() if k not in POSITION_KEYS}

    def info(self) -> dict:
        """Accounting after the last step, ``[B]`` (``[B, A]`` per asset); never written again."""
        return {"equity_usd": self.equity_usd, "cash_usd": self.cash_usd, "position_qty": self.qty,
                "fill_price_usd": self.fill_price_usd, "fee_usd": self.fee_usd,
                "fees_paid_usd": self.fees_paid_usd, "funding_usd": self.funding_usd,
                "exposure_at_fill": self.exposure_at_fill, "liquidated": self.liquidated,
                "assets": self.assets.copy(), "bar_ts_ns": self._cal.ts_ns[np.minimum(
                    self.cal_row, len(self._cal.ts_ns) - 1)]}
