"""CryptoFutures-v0: a perpetual-futures bot on hourly bars, long or short, isolated margin.

Actions
    * ``action_mode="discrete"`` (default), ``Discrete(2k+1)`` over the target levels
      ``(-size_levels[::-1], 0, size_levels)``: with ``size_levels=(0.5, 1.0)``, 0 = short at the
      full allowed leverage, 1 = short at half of it, 2 = flat, 3 = long half, 4 = long full.
    * ``action_mode="continuous"``, ``Box(-1, 1, (1,))``: the target level itself (NaN is a
      ValueError). A level moves the position only when it differs from the level held by more
      than ``min_level_change`` (or is exactly 0: close).

    Level ``a`` targets a position whose initial margin plus opening fee is ``|a| * budget``,
    so ``|notional| = |a| * budget / (1/leverage + fee)``: ``budget`` is the equity at the fill
    (``sizing="equity"``) or ``initial_cash_usd`` (``sizing="initial"``, a fixed trading
    amount). The opening part is capped by the free balance (wallet minus isolated margin, plus
    what the order's closing part releases), which therefore never goes negative. A held level
    is not re-sized as prices move; a new level is a new order.

Execution (step t -> t+1; :func:`envs.core.costs.isolated_rebalance`)
    1. The action is chosen on bar t's close and fills at bar t+1's open moved by
       ``slippage_bps`` against the trader, paying ``fee_bps`` (taker, default) of the notional;
       ``execution="maker"`` fills at the open exactly, paying ``maker_fee_bps`` (an optimistic
       resting-order model). Opening posts ``|notional| / leverage`` of isolated margin; reducing
       releases margin pro rata and realizes PnL into the wallet; the average entry price moves
       only when the position grows. A close that would lose more than the released margin
       (a gap through the liquidation price) loses the margin only; the venue covers the rest
       (``cover_usd`` in info).
    2. Funding: the rate of bar t+1 (``market.funding_rate``: the sum of the funding events in
       ``[ts, ts + 1h)``) is settled in the same step, at the END of bar t+1, on the position
       held during bar t+1 (after the fill): ``qty * mark_close[t+1] * rate``
       (:func:`~envs.core.costs.funding_usd`); positive = paid: a long pays and a short receives
       when the rate is positive, the reverse when it is negative. It moves the wallet and the
       isolated margin together, so it moves the liquidation price.
    3. Liquidation: with the margin after funding, the liquidation price
       (:func:`~envs.core.costs.liquidation_price`, maintenance rate ``maintenance_margin_bps``)
       is checked against bar t+1's mark range ``[min, max]`` of its mark OHLC, i.e. after the
       fill (a position liquidated in bar t+1 has paid bar t+1's funding). If hit, the position
       is closed at the liquidation price, no slippage; the liquidation fee
       (``liquidation_fee_bps`` of the notional there) is taken from what is left of the margin
       (the maintenance margin), never more: the loss of a position is at most its margin plus
       its trading fees and equity never goes negative. Then the episode terminates
       (``terminate_on_liquidation=True``, default) or continues flat at level 0.
    4. The book is marked at bar t+1's mark close: ``equity = wallet + qty * (mark - entry)``.
       The episode also terminates when equity falls to ``1e-6 * initial_cash_usd`` or less.

    Without ``market.funding_rate`` funding is 0; without ``market.mark_ohlc`` the mark price is
    the traded price. Both are validated (finite; mark > 0; ``|rate| < 1``).

Observation (Dict of float32, :mod:`envs.core.observation`, ``w = window_bars``)
    ``hourly_hloc``, ``4h_hloc``, ``daily_hloc`` ``[w, 4]``: log ratios to the latest close; the
    newest 4h and daily bars are PARTIAL (from the hours up to t only); ``hourly_volume``,
    ``daily_volume`` ``[w]``; ``funding_bps`` ``[w]``: funding settled at each of the last ``w``
    bars in bps; position (``[1]`` each): ``side`` (-1/0/1), ``size`` (share of the allowed
    leverage in use), ``entry_distance`` (mark / entry - 1), ``unrealized_pnl`` (over equity),
    ``margin_ratio`` (maintenance margin over margin balance: liquidation at 1), ``bars_held``
    (bars since the position was opened; a flip opens a new one).

Rewards (``reward=``): ``log_return`` (default, ``log(E_t / E_t-1)``: sums to
    ``log(E_T / E_0)``; floored where a liquidation leaves nothing), ``linear_return``
    (``(E_t - E_t-1) / initial_cash_usd``: sums to the PnL over the initial balance),
    ``differential_sharpe``.

Episodes: as StockSwing (seeded symbol and start, ``episode_bars`` steps, ``options={"symbol"}``).
    Without a market, a seeded synthetic one (``synthetic``: "gbm" is
    :func:`envs.synthetic.generate_perpetual`; "rare_event", "regime", "noise" have planted edges
    of both signs, :mod:`envs.synthetic_perps`; ``market_seed``, ``synthetic_params``) is used,
    so ``gym.make("raytrade/CryptoFutures-v0")`` needs no argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from gymnasium import spaces as gym_spaces

from envs import synthetic as synthetic_markets
from envs.core import costs, from_bars, spaces
from envs.core.engine import Engine, EngineConfig, PerEnv
from envs.core.market import CLOSE, OPEN, MarketArrays
from envs.core.observation import (
    ACTION_MASK_KEY,
    FUTURES_POSITION_KEYS,
    ObservationSpec,
    futures_position_fields,
    futures_position_observation,
    futures_position_values,
    validate_bars,
)
from envs.core.render import check_render_mode
from envs.core.spec import (
    EnvSpec,
    Position,
    action_mask_fields,
    bars_held_bound,
    check_fields,
    config_from,
    space_shapes,
)
from envs.vector import EngineEnv, EngineVectorEnv

ACTION_MODES = ("discrete", "continuous")
SIZINGS = ("equity", "initial")
EXECUTIONS = ("taker", "maker")
REWARDS = ("log_return", "linear_return", "differential_sharpe")
RUIN_FRACTION = 1e-6
# rows of the futures price table [6, R + 1] (last column: a sentinel for finished envs)
F_OPEN, F_CLOSE, F_MARK_LOW, F_MARK_HIGH, F_MARK_CLOSE, F_FUNDING = range(6)


def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


@dataclass(frozen=True, kw_only=True)
class CryptoFuturesConfig(EngineConfig):
    """CryptoFutures settings (plus every :class:`~envs.core.engine.EngineConfig` field).

    Attributes:
        fee_bps: taker fee, bps of the notional (default 5); ``slippage_bps`` (default 2).
        maker_fee_bps: fee of ``execution="maker"`` fills (no slippage).
        execution: "taker" (fill at the open with slippage) or "maker".
        leverage: allowed leverage (> 0); level 1 uses all of it.
        maintenance_margin_bps: maintenance margin rate (bps of the notional at the mark);
            must be below ``1e4 / leverage``.
        liquidation_fee_bps: liquidation fee, bps of the notional at the liquidation price,
            capped at what is left of the margin.
        action_mode: "discrete" or "continuous"; size_levels: the discrete levels per side,
            increasing, in (0, 1]; min_level_change: continuous dead band.
        sizing: "equity" (budget = equity at the fill) or "initial" (initial_cash_usd).
        terminate_on_liquidation: end the episode at a liquidation (else continue flat).
        clip_log_ratio, funding_clip_bps: observation bounds.
        synthetic: kind of the synthetic market used when none is given
            (:data:`envs.synthetic.PERP_KINDS`); market_seed: its seed; synthetic_params: its
            knobs and ``n_symbols``/``n_bars`` (None: the kind's defaults).
    """

    reward: str = "log_return"
    fee_bps: float = 5.0
    slippage_bps: float = 2.0
    window_bars: int = 48
    episode_bars: int | None = 720
    maker_fee_bps: float = 2.0
    execution: str = "taker"
    leverage: float = 3.0
    maintenance_margin_bps: float = 50.0
    liquidation_fee_bps: float = 30.0
    action_mode: str = "discrete"
    size_levels: tuple[float, ...] = (0.5, 1.0)
    min_level_change: float = 0.05
    sizing: str = "equity"
    terminate_on_liquidation: bool = True
    clip_log_ratio: float = 10.0
    funding_clip_bps: float = 100.0
    synthetic: str = "gbm"
    market_seed: int = 0
    synthetic_params: dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.size_levels, list):
            object.__setattr__(self, "size_levels", tuple(self.size_levels))
        if self.reward not in REWARDS:
            self._fail("reward", f"must be one of {REWARDS}")
        for name, low, high in (("maker_fee_bps", 0.0, 1e4), ("maintenance_margin_bps", 0.0, 1e4),
                                ("liquidation_fee_bps", 0.0, 1e4), ("min_level_change", 0.0, 2.0)):
            if not _is_number(getattr(self, name)) or not low <= getattr(self, name) < high:
                self._fail(name, f"must be a finite number in [{low:g}, {high:g})")
        if not _is_number(self.leverage) or not 0 < self.leverage <= 1000:
            self._fail("leverage", "must be a finite number in (0, 1000]")
        if self.maintenance_margin_bps * 1e-4 * self.leverage >= 1:
            self._fail("maintenance_margin_bps", f"must be < 1/leverage = {1e4 / self.leverage:g} bps "
                       "(else a fresh position is liquidated at once)")
        for name, allowed in (("execution", EXECUTIONS), ("action_mode", ACTION_MODES), ("sizing", SIZINGS)):
            if getattr(self, name) not in allowed:
                self._fail(name, f"must be one of {allowed}")
        levels = self.size_levels
        if (not isinstance(levels, tuple) or not levels or not all(_is_number(v) and 0 < v <= 1 for v in levels)
                or any(b <= a for a, b in zip(levels, levels[1:], strict=False))):
            self._fail("size_levels", "must be a non-empty increasing tuple of numbers in (0, 1]")
        if not isinstance(self.terminate_on_liquidation, bool):
            self._fail("terminate_on_liquidation", "must be a bool")
        for name in ("clip_log_ratio", "funding_clip_bps"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                self._fail(name, "must be a finite number > 0")
        if isinstance(self.market_seed, bool) or not isinstance(self.market_seed, int) or self.market_seed < 0:
            self._fail("market_seed", "must be an int >= 0")
        if self.synthetic not in synthetic_markets.PERP_KINDS:
            self._fail("synthetic", f"must be one of {synthetic_markets.PERP_KINDS}")
        synthetic_markets.check_config_params(self, perpetual=True)

    @property
    def levels(self) -> tuple[float, ...]:
        """Target level of each discrete action."""
        return (*(-v for v in reversed(self.size_levels)), 0.0, *self.size_levels)

    @property
    def cost_model(self) -> costs.CostModel:
        maker = self.execution == "maker"
        return costs.CostModel(fee_bps=self.maker_fee_bps if maker else self.fee_bps,
                               slippage_bps=0.0 if maker else self.slippage_bps,
                               maintenance_margin_bps=self.maintenance_margin_bps)

    def observation_spec(self, max_bars_held: int) -> ObservationSpec:
        return ObservationSpec(window_bars=self.window_bars, bar_name="hourly", periods=("H4", "D"),
                               volume_periods=("D",), with_index=False, with_funding=True,
                               clip_log_ratio=float(self.clip_log_ratio), funding_clip_bps=float(self.funding_clip_bps),
                               max_bars_held=max_bars_held)


def validate_futures_arrays(market: MarketArrays) -> None:
    """Funding and mark arrays, when present: finite rates in (-1, 1), positive finite marks."""
    if market.funding_rate is not None:
        rate = np.asarray(market.funding_rate)
        bad = ~np.isfinite(rate) | (np.abs(np.nan_to_num(rate)) >= 1)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise ValueError(f"market.funding_rate: must be finite and in (-1, 1), row {r} has {rate[r]}")
    if market.mark_ohlc is not None:
        validate_bars("market.mark_ohlc", market.ts_ns, np.asarray(market.mark_ohlc), market.offsets,
                      market.symbols, check_order=False)  # its timestamps are the market's


class CryptoFuturesEngine(Engine):
    """The engine with isolated-margin perpetual futures (see the module docstring).

    ``step`` is overridden: a futures fill needs the margin state (sizing caps, entry price,
    margin release) and marks at the mark price, which ``interpret_action`` / ``settle`` do not
    see. It is still one polymorphic ``step`` for both faces.
    """

    STATE = {**Engine.STATE, "margin_usd": np.float64, "mark_usd": np.float64, "level": np.float64,
             "liq_price_usd": np.float64, "funding_paid_usd": np.float64, "last_trade_qty": np.float64,
             "last_funding_usd": np.float64, "last_liq_fee_usd": np.float64, "last_cover_usd": np.float64,
             "liquidated": np.bool_}
    config: CryptoFuturesConfig
    # the extra per-env state (see ``Engine``'s state annotations)
    margin_usd: PerEnv
    mark_usd: PerEnv
    level: PerEnv
    liq_price_usd: PerEnv
    funding_paid_usd: PerEnv
    last_trade_qty: PerEnv
    last_funding_usd: PerEnv
    last_liq_fee_usd: PerEnv
    last_cover_usd: PerEnv
    liquidated: PerEnv

    def __init__(self, market: MarketArrays, config: CryptoFuturesConfig, **kwargs: Any) -> None:
        if not isinstance(market, MarketArrays):
            raise ValueError(f"market: expected MarketArrays, got {type(market).__name__}")
        market.require_bars("market")
        validate_bars("market", market.ts_ns, market.ohlcv, market.offsets, market.symbols)
        validate_futures_arrays(market)
        spec = config.observation_spec(max(int(market.lengths.max(initial=1)), 1))
        super().__init__(market, config, spec, **kwargs)
        self.single_observation_space = spaces.dict_space(
            {**{k: v for k, v in spec.fields().items() if k != "owned"}, **futures_position_fields(spec)})
        self._levels = config.levels
        if config.action_mode == "discrete":
            self.single_action_space = spaces.discrete(len(self._levels))
            self._min_change = 0.0
        else:
            self.single_action_space = spaces.box(-1.0, 1.0, (1,))
            self._min_change = float(config.min_level_change)
        self._levels_arr = np.array(self._levels)
        self.observe_action_mask(partial(action_mask, n_actions=len(self._levels))
                                 if config.action_mode == "discrete" else None, "qty")
        if not self.batched and config.action_mode == "discrete":  # hot path of the single face
            # bound per instance (mypy still checks the signature; it only flags assigning methods)
            self.convert_action = spaces.discrete_action(  # type: ignore[method-assign]
                len(self._levels), self._levels)
        cost = config.cost_model
        self._fee_rate, self._slippage_rate = cost.fee_rate, cost.slippage_rate
        self._mmr, self._liq_fee_rate = cost.maintenance_margin_rate, config.liquidation_fee_bps * costs.BPS
        self._leverage, self._initial = float(config.leverage), float(config.initial_cash_usd)
        self._equity_sizing, self._ruin_usd = config.sizing == "equity", RUIN_FRACTION * self._initial
        self._terminate_on_liq, self._clip = config.terminate_on_liquidation, float(config.clip_log_ratio)
        self._min: Callable[[Any, Any], Any] = np.minimum if self.batched else min
        self._max: Callable[[Any, Any], Any] = np.maximum if self.batched else max
        n = len(market.ts_ns)
        mark = market.ohlcv[:, :4] if market.mark_ohlc is None else np.asarray(market.mark_ohlc, np.float64)
        table = np.zeros((6, n + 1))
        table[F_OPEN, :-1], table[F_CLOSE, :-1] = market.ohlcv[:, OPEN], market.ohlcv[:, CLOSE]
        table[F_MARK_LOW, :-1], table[F_MARK_HIGH, :-1] = mark.min(axis=1), mark.max(axis=1)
        table[F_MARK_CLOSE, :-1] = mark[:, CLOSE]
        if market.funding_rate is not None:
            table[F_FUNDING, :-1] = market.funding_rate
        table[:, -1] = table[:, -2]
        table[F_FUNDING, -1] = 0.0
        self._fut = table
        self._take_fut: Callable[[Any], Any]  # rows -> the 6 table rows at them
        if self.batched:
            self._take_fut = lambda rows: table.take(rows, axis=1)
        else:
            rows = table.T.tolist()  # Python floats per row (~200 bytes a row)
            self._take_fut = rows.__getitem__
        zero = np.zeros(1, dtype=np.float32)
        zero.flags.writeable = False
        self._flat_position = dict.fromkeys(FUTURES_POSITION_KEYS, zero)

    # --- episodes & actions ---------------------------------------------------------------
    def initial_state(self, symbol, start, end):
        state = super().initial_state(symbol, start, end)
        k = len(start)
        zero = np.zeros(k)
        state.update(entry_price=zero, margin_usd=zero, mark_usd=self._fut[F_MARK_CLOSE, start], level=zero,
                     liq_price_usd=zero, funding_paid_usd=zero, last_trade_qty=zero, last_funding_usd=zero,
                     last_liq_fee_usd=zero, last_cover_usd=zero, liquidated=np.zeros(k, dtype=bool))
        return state

    def convert_action(self, action):
        """Action -> target level (a float, or ``[B]`` float64 in the batched engine). Actions
        outside the space are a ValueError (a discrete index out of range, a wrong shape, NaN);
        continuous levels beyond [-1, 1] are clipped (gymnasium's ClipAction convention)."""
        if self.single_action_space.shape == ():  # discrete
            if self.batched:
                return self._levels_arr.take(spaces.discrete_actions(action, self.num_envs, len(self._levels)))
            return spaces.discrete_action(len(self._levels), self._levels)(action)  # bound in __init__
        if self.batched:
            level = spaces.box_actions(action, (self.num_envs, 1)).reshape(self.num_envs)
            return np.clip(level, -1.0, 1.0)
        value = float(spaces.box_actions(action, (1,))[0])
        return min(max(value, -1.0), 1.0)

    # --- the step ---------------------------------------------------------------------------
    def step(self, level):
        """Advance every env one bar (``level`` from :meth:`convert_action`); see the module
        docstring for the order: fill, funding, liquidation, mark."""
        r1 = self.row + 1
        o1, c1, mark_low, mark_high, mark_close, rate = self._take_fut(r1)
        qty0, cash0, equity0, held = self.qty, self.cash_usd, self.equity_usd, self.level
        margin0, entry0 = self.margin_usd, self.entry_price
        trade = (abs(level - held) > self._min_change) | ((level == 0.0) & (held != 0.0))
        budget = cash0 + qty0 * o1 if self._equity_sizing else self._initial
        mn, mx = self._min, self._max
        if trade is not False:  # arrays, or a scalar order
            qty, dq, price, notional, fee, margin, entry, cover = costs.isolated_rebalance(
                trade, level * budget, qty0, entry0, margin0, cash0 + qty0 * entry0 - margin0, o1, self._leverage,
                self._fee_rate, self._slippage_rate, self._sign, mn, mx)
        else:  # scalar hold: exactly what isolated_rebalance returns without a trade, cheaper
            qty, dq, price, notional, fee, margin, entry, cover = qty0, 0.0, o1, 0.0, 0.0, margin0, entry0, 0.0
        funding = costs.funding_usd(qty, mark_close, rate)
        margin = margin - funding
        liq = costs.liquidation_price(entry, qty, margin, self._mmr)
        hit = costs.liquidated(qty, liq, mark_low, mark_high)
        liq_notional = liq_fee = 0.0
        if hit is not False:  # arrays, or a scalar liquidation
            liq_notional, liq_fee, liq_cover = costs.liquidation_close(qty, entry, margin, liq, self._liq_fee_rate,
                                                                       mn, mx)
            liq_fee = hit * liq_fee
            cover = cover + hit * liq_cover
        cash = cash0 - notional - fee - funding - hit * liq_notional - liq_fee + cover
        alive = 1 - hit
        qty = qty * alive
        equity = cash + qty * mark_close
        terminated = (hit & self._terminate_on_liq) | (equity <= self._ruin_usd)
        reward = self._reward(mx(equity0, self._ruin_usd), equity, qty0, qty, o1, mark_close, 1.0, 1.0)
        same_side = ((qty0 > 0.0) & (qty > 0.0)) | ((qty0 < 0.0) & (qty < 0.0))
        self.bars_held = (qty != 0.0) * (same_side * self.bars_held + 1)
        self.level = (trade * level + (1 - trade) * held) * alive
        self.qty, self.cash_usd, self.equity_usd = qty, cash, equity
        self.margin_usd, self.entry_price, self.liq_price_usd = margin * alive, entry * alive, liq
        self.close_usd, self.mark_usd = c1, mark_close
        self.fees_paid_usd = self.fees_paid_usd + fee + liq_fee
        self.funding_paid_usd = self.funding_paid_usd + funding
        self.last_fill_price_usd, self.last_fee_usd, self.last_trade_qty = price, fee, dq
        self.last_funding_usd, self.last_liq_fee_usd, self.last_cover_usd = funding, liq_fee, cover
        self.liquidated = hit
        self.row = r1
        return reward, terminated, r1 >= self.end_row

    # --- observations & info --------------------------------------------------------------
    def position_observation(self) -> dict[str, np.ndarray]:
        if self.batched:
            return futures_position_observation(
                self.qty, self.mark_usd, self.entry_price, self.margin_usd, self.equity_usd, self.bars_held,
                leverage=self._leverage, maintenance_margin_rate=self._mmr, spec=self.spec)
        held = self.bars_held
        if self.qty == 0.0:
            out = self._flat_position.copy()
        else:
            values = futures_position_values(self.qty, self.mark_usd, self.entry_price, self.margin_usd,
                                             self.equity_usd, self._leverage, self._mmr, self._clip)
            block = np.array(values, dtype=np.float32)
            out = {"side": block[0:1], "size": block[1:2], "entry_distance": block[2:3],
                   "unrealized_pnl": block[3:4], "margin_ratio": block[4:5]}
        out["bars_held"] = self._held_rows[held if held < self._n_held else -1]
        return out

    def observe(self) -> dict[str, np.ndarray]:
        if self._row_views is None:
            return super().observe()
        obs = self._row_views[self.row].copy()  # read-only market views of the row
        del obs["owned"]
        obs.update(self.position_observation())
        if self._mask_rows:
            obs[ACTION_MASK_KEY] = self.mask_observation()
        return obs

    def info(self) -> dict:
        """Accounting after the last step (arrays in batched mode; never written again).

        ``cash_usd`` is the engine's cash (``wallet_usd - qty * entry``: ``equity = cash + qty *
        mark``); ``liquidation_price_usd`` is that of the position held through the last bar (the
        closing price where ``liquidated``); ``funding_usd`` > 0 was paid, < 0 received."""
        return {"equity_usd": self.equity_usd, "cash_usd": self.cash_usd,
                "wallet_usd": self.cash_usd + self.qty * self.entry_price, "margin_usd": self.margin_usd,
                "position_qty": self.qty, "position_level": self.level, "entry_price_usd": self.entry_price,
                "mark_price_usd": self.mark_usd, "liquidation_price_usd": self.liq_price_usd,
                "trade_qty": self.last_trade_qty, "fill_price_usd": self.last_fill_price_usd,
                "fee_usd": self.last_fee_usd, "funding_usd": self.last_funding_usd, "liquidated": self.liquidated,
                "liquidation_fee_usd": self.last_liq_fee_usd, "cover_usd": self.last_cover_usd,
                "fees_paid_usd": self.fees_paid_usd, "funding_paid_usd": self.funding_paid_usd, "bar_row": self.row}


def _resolve(market: MarketArrays | None, config: CryptoFuturesConfig | None,
             overrides: Mapping) -> tuple[MarketArrays, CryptoFuturesConfig]:
    if config is None:
        config = CryptoFuturesConfig.from_mapping(dict(overrides))
    elif overrides:
        config = config.with_overrides(**overrides)
    if market is None:
        market = synthetic_markets.generate_perpetual_for(config).market
    return market, config


CLIENT_POSITION_KEYS = ("qty", "entry_price_usd", "margin_usd", "equity_usd", "mark_price_usd", "bars_held")


def action_mask(position: Position, *, n_actions: int) -> np.ndarray:
    """Every level is valid in every position (the held level is the no-op; any other is an
    order): bool ``[..., n_actions]`` of True for ``qty`` ``[...]``."""
    qty = np.asarray(position["qty"])
    return np.ones((*qty.shape, n_actions), dtype=bool)


def env_spec(config: CryptoFuturesConfig | dict | None = None, observation_space: gym_spaces.Dict | None = None,
             env_id: str = "raytrade/CryptoFutures-v0") -> EnvSpec:
    """CryptoFutures' :class:`~envs.core.spec.EnvSpec` (``bars_held`` bound from the space).

    A client describes a position by ``qty`` (signed), and when it is open ``entry_price_usd``,
    ``margin_usd`` (isolated) and ``equity_usd``; ``mark_price_usd`` defaults to the bar's close."""
    cfg = config_from(CryptoFuturesConfig, {}, config)
    shapes = space_shapes(observation_space)
    obs_spec = cfg.observation_spec(bars_held_bound(observation_space))
    fields = {k: shape for k, (shape, _, _) in obs_spec.fields().items() if k != "owned"}
    fields |= {k: shape for k, (shape, _, _) in futures_position_fields(obs_spec).items()}
    discrete = cfg.action_mode == "discrete"
    fields |= action_mask_fields(cfg, shapes, (len(cfg.levels),) if discrete else None)
    check_fields(env_id, fields, shapes)
    return EnvSpec(
        env_id, "futures", cfg, obs_spec, fields,
        tuple(f"level {v:+g}" for v in cfg.levels) if discrete else None, position_keys=CLIENT_POSITION_KEYS,
        size_key="qty", open_keys=("entry_price_usd", "margin_usd", "equity_usd"),
        position_defaults={"mark_price_usd": math.nan},
        build_observation=partial(from_bars.futures, obs_spec, leverage=float(cfg.leverage),
                                  maintenance_margin_rate=cfg.cost_model.maintenance_margin_rate),
        action_mask=partial(action_mask, n_actions=len(cfg.levels)) if discrete else None)


class CryptoFuturesEnv(EngineEnv):
    env_spec = staticmethod(env_spec)

    def __init__(self, market: MarketArrays | None = None, index: MarketArrays | None = None,
                 config: CryptoFuturesConfig | None = None, render_mode: str | None = None, **overrides) -> None:
        """``index`` is accepted for a uniform env signature (RLlib creators) and not observed."""
        check_render_mode("CryptoFuturesEnv", render_mode)
        market, config = _resolve(market, config, overrides)
        super().__init__(CryptoFuturesEngine(market, config, num_envs=1, batched=False), render_mode)
        self.config = config


class CryptoFuturesVectorEnv(EngineVectorEnv):
    """CryptoFutures-v0 as a native VectorEnv of ``num_envs`` envs (one numpy engine)."""

    def __init__(self, num_envs: int = 1, market: MarketArrays | None = None, index: MarketArrays | None = None,
                 config: CryptoFuturesConfig | None = None, render_mode: str | None = None, **overrides) -> None:
        check_render_mode("CryptoFuturesVectorEnv", render_mode)
        market, config = _resolve(market, config, overrides)
        super().__init__(CryptoFuturesEngine(market, config, num_envs=num_envs, batched=True), render_mode)
        self.config = config


CryptoFuturesEnv.__doc__ = __doc__  # the env documents its semantics (gymnasium convention)
