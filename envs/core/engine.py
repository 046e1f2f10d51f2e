"""The one engine: B trading envs stepped at once, in numpy, with autoreset support.

One implementation of the maths, two array types. :meth:`Engine.step` is written once with
arithmetic, comparisons and a tiny ``ops`` namespace (``log``, ``sqrt``, ``where`` ...):

* ``batched=True``: state is numpy arrays ``[B]`` and ``ops`` is :class:`ArrayOps` -- the
  vector face; no Python loop over B anywhere in ``step``;
* ``batched=False``: B = 1 and state is Python floats with :class:`ScalarOps` -- the single-env
  face. Same code, no per-call numpy overhead (a step costs a few microseconds).

``tests/unit/envs`` prove the two agree step for step (states and observations bit for bit;
rewards to 1 ulp, ``math.log`` vs ``np.log``).

Execution semantics (every env): the action is chosen on bar t's close; it fills at bar t+1's
open (:func:`envs.core.costs.fill`: slippage and fee in bps); the position is marked to market
at bar t+1's close; the reward is computed there; the next observation is bar t+1's.

Extension points (CryptoFutures-v0, Portfolio-v0):

* :meth:`Engine.interpret_action` -- action -> ``(trade, target_weight)``; ``target_weight`` is
  a signed fraction of equity (``-L..L`` for futures with leverage ``L``).
* :meth:`Engine.settle` -- after the fill, before marking: funding
  (:func:`~envs.core.costs.funding_usd`), liquidation on the mark range
  (:func:`~envs.core.costs.liquidated`); returns ``terminated``.
  Read per-row data there with :meth:`Engine.make_taker` (mark OHLC, funding rate).
* :attr:`Engine.STATE` / :meth:`Engine.initial_state` -- extra per-env state (margin, leverage).
* ``_reward_<name>`` methods -- more rewards; :meth:`Engine.position_observation` -- more
  position fields; :meth:`Engine.info` -- more info keys.
* :meth:`Engine.observe_action_mask` -- a discrete env passes its mask rule from its ``__init__``:
  the observation holds ``action_mask`` (``config.action_mask``), a table lookup per step.
* Portfolio: override :meth:`Engine.step` with state ``[B, A]`` for per-asset quantities and
  ``equity = cash + (qty * px).sum(-1)``, reusing :func:`~envs.core.costs.rebalance` (pass the
  total equity), the rewards, episodes, observations and autoreset. Its single face can wrap a
  batched engine with ``num_envs=1`` (:class:`~envs.vector.EngineEnv` unbatches): same code.
* CryptoFutures-v0 (isolated margin) overrides :meth:`Engine.step` too: its fill needs the
  margin state (:func:`~envs.core.costs.isolated_rebalance`) and it marks at the mark price;
  still one polymorphic ``step`` for both faces. ``settle`` suits simpler futures variants.
  A market's ``funding_rate`` reaches the observation builder (``spec.with_funding``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, TypeAlias

import numpy as np
from gymnasium import spaces as gym_spaces

from envs.core import costs, rewards, spaces
from envs.core.config import EngineConfig
from envs.core.market import CLOSE, OPEN, MarketArrays
from envs.core.observation import (
    ACTION_MASK_KEY,
    POSITION_KEYS,
    MaskRule,
    ObservationSpec,
    action_mask_field,
    action_mask_table,
    market_observation,
    position_observation,
    prepare_features,
    validate_bars,
)
from envs.core.render import RENDER_BARS
from envs.core.resample import align_to_calendar
from envs.core.tables import ROW_VIEWS_BYTES, ObservationTables

#: A per-env state value: a numpy array ``[B]`` (``[B, A]`` per asset) in the batched engine, a
#: Python int/float/bool in the scalar one. ``step`` is ONE polymorphic piece of code over both
#: (like :mod:`envs.core.costs`), which a static union cannot follow, hence ``Any``.
PerEnv: TypeAlias = Any


class ScalarOps:
    """Maths on Python floats (B = 1)."""

    batched = False
    log = staticmethod(math.log)
    sqrt = staticmethod(math.sqrt)
    maximum = staticmethod(max)
    minimum = staticmethod(min)

    @staticmethod
    def where(cond, a, b):
        return a if cond else b


class ArrayOps:
    """Maths on numpy arrays ``[B]``."""

    batched = True
    log = np.log
    sqrt = np.sqrt
    maximum = np.maximum
    minimum = np.minimum
    where = staticmethod(np.where)


class Engine(ObservationTables):
    """Steps ``num_envs`` trading envs on one market; see the module docstring."""

    STATE: dict[str, type] = {
        "row": np.int64, "end_row": np.int64, "symbol": np.int64, "steps": np.int64,
        "bars_held": np.int64, "qty": np.float64, "cash_usd": np.float64,
        "equity_usd": np.float64, "close_usd": np.float64, "index_close": np.float64,
        "fees_paid_usd": np.float64,
        "entry_price": np.float64, "entry_index": np.float64, "dsr_mean": np.float64,
        "dsr_mean_sq": np.float64, "last_fill_price_usd": np.float64, "last_fee_usd": np.float64,
    }
    # the per-env state: one attribute per STATE key, (re)made by ``reset_state_arrays``
    row: PerEnv
    end_row: PerEnv
    symbol: PerEnv
    steps: PerEnv
    bars_held: PerEnv
    qty: PerEnv
    cash_usd: PerEnv
    equity_usd: PerEnv
    close_usd: PerEnv
    index_close: PerEnv
    fees_paid_usd: PerEnv
    entry_price: PerEnv
    entry_index: PerEnv
    dsr_mean: PerEnv
    dsr_mean_sq: PerEnv
    last_fill_price_usd: PerEnv
    last_fee_usd: PerEnv
    # each env class sets its spaces in its ``__init__``
    single_observation_space: gym_spaces.Dict
    single_action_space: gym_spaces.Space

    def __init__(self, market: MarketArrays, config: EngineConfig, spec: ObservationSpec, *,
                 index: MarketArrays | None = None, num_envs: int = 1, batched: bool = True) -> None:
        if not isinstance(market, MarketArrays):
            raise ValueError(f"market: expected MarketArrays, got {type(market).__name__}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs: must be an int >= 1, got {num_envs!r}")
        if not batched and num_envs != 1:
            raise ValueError("num_envs: the scalar (single-env) engine has exactly 1 env")
        if spec.window_bars != config.window_bars:
            raise ValueError("spec.window_bars: must equal config.window_bars")
        market.require_bars("market")
        validate_bars("market", market.ts_ns, market.ohlcv, market.offsets, market.symbols)
        idx_ts = idx_ohlc = None
        if index is not None:
            if not isinstance(index, MarketArrays) or index.n_symbols != 1:
                raise ValueError("index: expected a MarketArrays with exactly one series")
            index.require_bars("index")
            validate_bars("index", index.ts_ns, index.ohlcv)
            idx_ts, idx_ohlc = index.ts_ns, index.ohlcv
        self.market, self.index, self.config, self.spec = market, index, config, spec
        self.num_envs, self.batched = int(num_envs), batched
        self.ops = ArrayOps if batched else ScalarOps
        self._mask_table: np.ndarray | None = None  # observe_action_mask: [2, ...] flat/open rows
        self._mask_rows: tuple[np.ndarray, ...] = ()  # the same rows for the scalar face
        self._fee_rate = config.fee_bps * costs.BPS
        self._slippage_rate = config.slippage_bps * costs.BPS
        self._buy_penalty, self._dsr_eta = config.buy_penalty, config.dsr_eta
        self._base = prepare_features(market.ts_ns, market.ohlcv, market.offsets, spec, idx_ts, idx_ohlc,
                                      market.funding_rate)
        self._setup_universe(self._base.index_covered)
        self._tables = self._precompute()
        # bar prices the maths read, one row per market row plus a sentinel (row t+1 of an env
        # that has just finished): open, close, index open, index close (index aligned causally)
        n_rows = len(market.ts_ns)
        bars = np.ones((4, n_rows + 1))
        bars[0, :-1], bars[1, :-1] = market.ohlcv[:, OPEN], market.ohlcv[:, CLOSE]
        if index is not None:
            aligned, _ = align_to_calendar(market.ts_ns, index.ts_ns, index.ohlcv)
            bars[2, :-1], bars[3, :-1] = aligned[:, 0], aligned[:, 3]
        bars[:, -1] = bars[:, -2]
        self._bars = bars  # [4, R+1]: a batched step takes 4 contiguous [B] rows at once
        self._bar_rows: list[list[float]] | None = None
        self._take_bar: Callable[[Any], Any]  # rows -> (open, close, index open, index close)
        if batched:
            self._take_bar = partial(bars.take, axis=1)
        elif n_rows * (spec.market_bytes_per_row() + ROW_VIEWS_BYTES) <= self._budget_bytes:
            self._bar_rows = bars.T.tolist()  # Python floats per row: one list index per step
            self._take_bar = self._bar_rows.__getitem__
        else:
            self._bar_lo = 0
            self._bar_list: list[list[float]] = []
            self._take_bar = self._chunked_bar  # Python floats of the next CHUNK_ROWS rows at a time
        self._falses: Callable[[], Any] = (partial(np.zeros, self.num_envs, dtype=bool) if batched
                                           else bool)  # bool() is False
        self._sign = np.sign if batched else None
        self._reward = getattr(self, "_reward_" + config.reward)
        self._settles = type(self).settle is not Engine.settle
        pos = position_observation(np.array([0, 1]), np.arange(spec.max_bars_held + 1), spec)
        for a in pos.values():
            a.flags.writeable = False
        # pre-made read-only views: the scalar face indexes a tuple instead of an array
        self._owned_rows, self._held_rows = tuple(pos["owned"][:2]), tuple(pos["bars_held"])
        self._n_held = len(self._held_rows)
        self._table_items = tuple(self._tables.items()) if self._tables is not None else ()
        self._row_views: list[dict[str, np.ndarray]] | None = None
        if (not batched and self._tables is not None and n_rows * (spec.market_bytes_per_row()
                + ROW_VIEWS_BYTES) <= self._budget_bytes):
            # one dict of read-only row views per row: a step copies a dict instead of making views
            keys, tables = tuple(self._tables), tuple(self._tables.values())
            flat = (self._owned_rows[0], self._held_rows[0])  # position keys, overwritten per step
            self._row_views = [dict(zip(keys + POSITION_KEYS, views + flat, strict=True))
                               for views in zip(*tables, strict=True)]
        # the scalar face without tables: views of a chunk of its env's next rows (_gathered_row)
        self._chunk_lo, self._chunk_n = 0, 0
        self._chunk_items: tuple[tuple[str, np.ndarray], ...] = ()
        cls = type(self)
        if (not batched and cls.observe is Engine.observe
                and cls.position_observation is Engine.position_observation):
            # hot path of the single-env face, bound per instance (mypy still checks the
            # signature; it only flags assigning to a method)
            self.observe = self._observe_scalar  # type: ignore[method-assign]
        self._seq = 0
        self.reset_state_arrays()

    # --- data -----------------------------------------------------------------------------
    def _setup_universe(self, covered: np.ndarray) -> None:
        cfg, m = self.config, self.market
        warmup = cfg.warmup_bars or cfg.window_bars
        need = cfg.episode_bars or 1
        names = cfg.symbols or m.symbols
        syms: list[int] = []
        lo: list[int] = []
        hi: list[int] = []
        for name in names:
            try:
                i = m.index_of(name)
            except KeyError as e:
                raise ValueError(f"{type(cfg).__name__}.symbols: {e.args[0]}") from None
            s0, s1 = int(m.offsets[i]), int(m.offsets[i + 1])
            ts = m.ts_ns[s0:s1]
            first = s0 + warmup - 1
            if cfg.start_ts_ns is not None:
                first = max(first, s0 + int(np.searchsorted(ts, cfg.start_ts_ns, "left")))
            cov = np.flatnonzero(covered[s0:s1])
            first = max(first, s0 + int(cov[0]) if len(cov) else s1)
            last = s1 - 1
            if cfg.end_ts_ns is not None:
                last = min(last, s0 + int(np.searchsorted(ts, cfg.end_ts_ns, "right")) - 1)
            if last - first >= need:
                syms.append(i)
                lo.append(first)
                hi.append(last)
        if not syms:
            longest = int(m.lengths.max()) if m.n_symbols else 0
            raise ValueError(
                f"window longer than data: no symbol of the universe has warmup_bars ({warmup}) + "
                f"episode_bars ({cfg.episode_bars or 1}) bars (within start_ts_ns/end_ts_ns and the "
                f"index's coverage); the longest series has {longest} bars")
        self.universe = tuple(m.symbols[i] for i in syms)
        self._uni_sym = np.array(syms, dtype=np.int64)
        self._lo, self._hi = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)

    def make_taker(self, column: np.ndarray):
        """``rows -> values`` for a per-row column (plus a sentinel row for finished envs):
        a numpy gather when batched, Python floats (``.item``) in the scalar engine."""
        padded = np.append(np.asarray(column, dtype=np.float64), column[-1:])
        return padded.__getitem__ if self.batched else padded.item

    # --- episodes -------------------------------------------------------------------------
    def reset_state_arrays(self) -> None:
        """Fresh state storage (arrays already handed out in infos are never written again)."""
        for name, dtype in self.STATE.items():
            setattr(self, name, np.zeros(self.num_envs, dtype=dtype) if self.batched else dtype(0).item())

    def _sample(self, rng: np.random.Generator, k: int, options: dict | None):
        cfg = self.config
        forced = (options or {}).get("symbol")
        if forced is not None:
            names = [forced] * k if isinstance(forced, str) else list(forced)
            if len(names) != k:
                raise ValueError(f"options['symbol']: need 1 or {k} symbols, got {len(names)}")
            bad = [s for s in names if s not in self.universe]
            if bad:
                raise ValueError(f"options['symbol']: {bad} not in the eligible universe")
            u = np.array([self.universe.index(s) for s in names], dtype=np.int64)
        elif cfg.symbol_order == "random":
            u = rng.integers(len(self.universe), size=k)
        else:
            u = (self._seq + np.arange(k)) % len(self.universe)
            self._seq += k
        lo, hi = self._lo[u], self._hi[u]
        last_start = hi - (cfg.episode_bars or 1)
        start = rng.integers(lo, last_start + 1) if cfg.random_start else lo
        end = start + cfg.episode_bars if cfg.episode_bars else hi
        return self._uni_sym[u], start.astype(np.int64), end.astype(np.int64)

    def initial_state(self, symbol: np.ndarray, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
        """Per-env state at the start of an episode, ``[k]`` arrays (subclasses extend)."""
        k = len(start)
        cash = np.full(k, float(self.config.initial_cash_usd))
        zero = np.zeros(k)
        return {"row": start, "end_row": end, "symbol": symbol, "steps": np.zeros(k, np.int64),
                "bars_held": np.zeros(k, np.int64), "qty": zero, "cash_usd": cash, "equity_usd": cash,
                "close_usd": self._bars[1, start], "index_close": self._bars[3, start],
                "fees_paid_usd": zero, "entry_price": zero + 1.0,
                "entry_index": zero + 1.0, "dsr_mean": zero, "dsr_mean_sq": zero,
                "last_fill_price_usd": zero, "last_fee_usd": zero}

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None,
              options: dict | None = None) -> None:
        """New episodes for every env (``mask`` None) or where ``mask`` is True (autoreset)."""
        if mask is None:
            self.reset_state_arrays()
            idx = np.arange(self.num_envs)
        else:
            idx = np.flatnonzero(mask)
        init = self.initial_state(*self._sample(rng, len(idx), options))
        for name, values in init.items():
            if self.batched:
                getattr(self, name)[idx] = values
            else:
                setattr(self, name, values[0].item())

    # --- stepping -------------------------------------------------------------------------
    def interpret_action(self, action):
        """Action -> ``(trade, target_weight)``; default: the action IS the target weight."""
        return True, action

    def convert_action(self, action):
        return np.asarray(action) if self.batched else action

    def settle(self, row, cash_usd, qty):
        """Futures hook: funding and liquidation at ``row``; returns ``(cash, qty, terminated)``."""
        return cash_usd, qty, self._falses()

    def step(self, action):
        """Advance every env one bar; returns ``(reward, terminated, truncated)``.

        Accounting identities (``equity = cash + qty * price``, a fill moves ``notional + fee``
        out of cash) are inline; prices, fees and slippage come from :mod:`envs.core.costs`.
        """
        r1 = self.row + 1
        o1, c1, index_open1, index_close1 = self._take_bar(r1)
        qty0, cash0, equity0 = self.qty, self.cash_usd, self.equity_usd
        trade, weight = self.interpret_action(action)
        dq, price, notional, fee = costs.rebalance(trade, weight, cash0 + qty0 * o1, qty0, o1,
                                                   self._fee_rate, self._slippage_rate, self._sign)
        cash = cash0 - notional - fee
        qty = qty0 + dq
        if self._settles:
            cash, qty, terminated = self.settle(r1, cash, qty)
        else:
            terminated = self._falses() if self.batched else False
        equity = cash + qty * c1
        reward = self._reward(equity0, equity, qty0, qty, o1, c1, index_open1, index_close1)
        self.bars_held = (qty != 0.0) * ((qty0 != 0.0) * self.bars_held + 1)  # 1 on the fill bar
        self.qty, self.cash_usd, self.equity_usd = qty, cash, equity
        self.close_usd, self.index_close = c1, index_close1
        self.fees_paid_usd = self.fees_paid_usd + fee
        self.last_fill_price_usd, self.last_fee_usd = price, fee
        self.row = r1
        return reward, terminated, r1 >= self.end_row

    def step_subset(self, idx: np.ndarray, action: np.ndarray):
        """Advance only the envs ``idx`` (batched engine) one bar with ``action`` ``[len(idx)]``
        (already in the engine's units: :meth:`convert_action`'s output, e.g. the one action a
        discrete env's mask allows); the others keep their state. Returns ``(reward, terminated, truncated)`` of ``idx``.

        For :meth:`envs.vector.EngineVectorEnv.step` with ``skip_forced``: the envs inside a
        forced hold advance while the others wait for their next decision. The same ``step``
        maths runs on the gathered state; the state arrays are replaced, never written in place
        (arrays handed out in infos are never written again)."""
        if not self.batched:
            raise ValueError("step_subset: needs a batched engine")
        full = {name: getattr(self, name) for name in self.STATE}
        falses = self._falses
        for name, values in full.items():
            setattr(self, name, values[idx])
        self._falses = partial(np.zeros, len(idx), dtype=bool)
        try:
            reward, terminated, truncated = self.step(action)
        finally:
            self._falses = falses
            for name, values in full.items():
                merged = values.copy()
                merged[idx] = getattr(self, name)
                setattr(self, name, merged)
        return reward, terminated, truncated

    # --- rewards (pure maths in envs.core.rewards) ----------------------------------------
    def _reward_log_return(self, equity0, equity1, qty0, qty1, open1, close1, index_open1, index_close1):
        return rewards.log_return(equity0, equity1, self.ops)

    def _reward_linear_return(self, equity0, equity1, qty0, qty1, open1, close1, index_open1, index_close1):
        return rewards.linear_return(equity0, equity1, self.config.initial_cash_usd)

    def _reward_excess_log_return(self, equity0, equity1, qty0, qty1, open1, close1, index_open1,
                                  index_close1):
        return rewards.excess_log_return(equity0, equity1, self.index_close, index_close1, self.ops)

    def _reward_differential_sharpe(self, equity0, equity1, qty0, qty1, open1, close1, index_open1,
                                    index_close1):
        r, self.dsr_mean, self.dsr_mean_sq = rewards.differential_sharpe(
            equity1 / equity0 - 1.0, self.dsr_mean, self.dsr_mean_sq, self._dsr_eta, self.ops)
        return r

    def _reward_excess_horizon(self, equity0, equity1, qty0, qty1, open1, close1, index_open1,
                               index_close1):
        where = self.ops.where
        bought = (qty0 <= 0.0) & (qty1 > 0.0)
        self.entry_price = entry = where(bought, open1, self.entry_price)
        self.entry_index = entry_index = where(bought, index_open1, self.entry_index)
        return rewards.excess_horizon(
            qty0 > 0.0, qty1 > 0.0, bought, entry, entry_index, self.close_usd, open1, close1,
            self.index_close, index_open1, index_close1, self._buy_penalty)

    # --- observations & info --------------------------------------------------------------
    def observe_action_mask(self, rule: MaskRule | None, open_key: str) -> None:
        """Observe ``action_mask`` if ``config.action_mask`` says so (None: if there is a ``rule``,
        the env's ``EnvSpec.action_mask``; called after the spaces are set). The rule must depend
        only on whether each position is open (``position[open_key]`` 0/1): it is tabulated once
        (:func:`~envs.core.observation.action_mask_table`), looked up per step (per asset)."""
        if not self.config.observes_action_mask(discrete=rule is not None) or rule is None:
            self._mask_table, self._mask_rows = None, ()
            return
        table = action_mask_table(rule, open_key)
        self._mask_table, self._mask_rows = table, tuple(table)
        shape = (*np.shape(self.qty)[1:], *table.shape[1:])
        self.single_observation_space = gym_spaces.Dict(
            {**self.single_observation_space.spaces, **spaces.dict_space(action_mask_field(shape)).spaces})

    def mask_observation(self) -> np.ndarray:
        """``action_mask`` now: float32 ``[B, ...]`` (fresh), a read-only row in the scalar engine."""
        if self.batched:
            assert self._mask_table is not None
            return self._mask_table.take(self.qty != 0.0, axis=0)
        return self._mask_rows[1 if self.qty != 0.0 else 0]

    def position_observation(self) -> dict[str, np.ndarray]:
        if self.batched:
            return position_observation(self.qty != 0.0, self.bars_held, self.spec)
        held = self.bars_held if self.bars_held < self._n_held else -1
        return {"owned": self._owned_rows[1 if self.qty != 0.0 else 0], "bars_held": self._held_rows[held]}

    def observe(self) -> dict[str, np.ndarray]:
        """Observation at each env's current bar (views of read-only tables in scalar mode)."""
        rows = self.row
        if self._table is not None:  # batched with tables
            obs = self._block_views(np.take(self._table, rows, axis=0))  # fresh [B, F]: safe to keep
        elif self._tables is not None:
            obs = {k: t[rows] for k, t in self._table_items}
        elif self.batched:  # gather windows on the fly into fresh arrays (contiguous: faster writes)
            obs = market_observation(self._base, rows, self._fresh_fields(len(rows)), self._scratch)
        else:
            obs = self._gathered_row(rows)
        obs.update(self.position_observation())
        if self._mask_table is not None:
            obs[ACTION_MASK_KEY] = self.mask_observation()
        return obs

    def _observe_scalar(self) -> dict[str, np.ndarray]:
        """:meth:`observe` + :meth:`position_observation` for the scalar face with tables:
        the same views, fewer calls (bound in ``__init__`` unless a subclass overrides them)."""
        r = self.row
        if self._row_views is not None:
            obs = self._row_views[r].copy()
        elif self._tables is not None:
            obs = {}
            for k, t in self._table_items:  # a loop is cheaper than a comprehension on 3.11
                obs[k] = t[r]
        else:
            obs = self._gathered_row(r)
        is_open = 1 if self.qty != 0.0 else 0
        obs["owned"] = self._owned_rows[is_open]
        held = self.bars_held
        obs["bars_held"] = self._held_rows[held if held < self._n_held else -1]
        if self._mask_rows:
            obs[ACTION_MASK_KEY] = self._mask_rows[is_open]
        return obs

    # --- rendering (envs.core.render; never on the hot path) -------------------------------
    def _of(self, name: str, i: int):
        value = getattr(self, name)
        return value[i] if self.batched else value

    def render_lines(self, i: int = 0) -> list[np.ndarray]:
        """Closes of env ``i``'s symbol over its last :data:`RENDER_BARS` bars up to the current one."""
        row, sym = int(self._of("row", i)), int(self._of("symbol", i))
        lo = max(int(self.market.offsets[sym]), row - RENDER_BARS + 1)
        return [self.market.ohlcv[lo:row + 1, CLOSE]]

    def render_text(self, i: int = 0) -> str:
        """One line: symbol, bar, close, position and equity of env ``i``."""
        sym, row = self.market.symbols[int(self._of("symbol", i))], int(self._of("row", i))
        return (f"{sym} row {row} close {float(self.market.ohlcv[row, CLOSE]):.6g} position_qty "
                f"{float(self._of('qty', i)):.6g} equity_usd {float(self._of('equity_usd', i)):.2f}")

    def info(self) -> dict:
        """Accounting after the last step (arrays in batched mode; never written again)."""
        return {"equity_usd": self.equity_usd, "cash_usd": self.cash_usd, "position_qty": self.qty,
                "fees_paid_usd": self.fees_paid_usd, "fill_price_usd": self.last_fill_price_usd,
                "fee_usd": self.last_fee_usd, "bar_row": self.row}
