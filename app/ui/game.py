"""The backtrading game's state: a person trades one hidden symbol, bar by bar, through the env.

Nothing here draws (:mod:`app.ui.game_view` does) or reads files (:mod:`app.ui.game_setup`
does): a :class:`GameSession` is built from market arrays and an env config, so the maths of
every fill, fee and mark is the env's own (``envs/stock_swing.py``, ``envs/crypto_futures.py``
through :func:`envs.make_creator`), for the player, for the agent and for buy-and-hold alike.

Semantics (the env's): a key press is the decision at the close of the bar on screen; it fills
at the next bar's open, with slippage and fee, and the position is marked at that bar's close.

* Stocks (StockSwing, ``mode="swing"``): ``B`` buys ``buy_fraction`` of equity if flat, ``S``
  sells the whole position if one is held; both are ignored otherwise (as the env does).
* Crypto (CryptoFutures, discrete levels short / flat / long): ``B`` moves one level up (short
  -> flat -> long), ``S`` one level down.

Three tracks are played on the same bars from the same start: the player's, buy-and-hold
(bought on the first bar, held; the same costs), and with a trained run the agent's (its own
env config, greedy, :class:`app.policy.BatchedPolicy`; played to the end when the game starts
and shown as the player goes, or only at the end: ``reveal``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import envs
from envs.core.market import CLOSE, MarketArrays
from envs.core.resample import align_to_calendar

STOCK, FUTURES = "stock", "futures"
REVEALS = ("live", "end")
#: the futures game trades one size per side: actions 0 = short, 1 = flat, 2 = long
FUTURES_LEVELS = (1.0,)
SHORT, FLAT, LONG = 0, 1, 2
HOLD, BUY, SELL = 0, 1, 2
#: what a policy is built from: the agent env's action space -> an object with ``act(obs)``
PolicyFactory = Callable[[Any], Any]


def env_kind(env_id: str) -> str:
    """``stock`` (StockSwing family) or ``futures`` (CryptoFutures family) for a raytrade env id."""
    if env_id == envs.STOCK_SWING or env_id in envs.SYNTHETIC_IDS or env_id in envs.SYNTHETIC_EDGE_IDS:
        return STOCK
    if env_id == envs.CRYPTO_FUTURES or env_id in envs.SYNTHETIC_PERP_IDS:
        return FUTURES
    raise ValueError(f"the game trades StockSwing or CryptoFutures envs, not {env_id!r}")


def player_env_id(kind: str) -> str:
    return envs.STOCK_SWING if kind == STOCK else envs.CRYPTO_FUTURES


def player_overrides(kind: str) -> dict[str, Any]:
    """What the player's env changes in the run's env config: only the action semantics (swing
    for stocks, one level per side for futures); costs, sizing and windows stay the run's."""
    if kind == STOCK:
        return {"mode": "swing", "reward": "log_return"}
    return {"action_mode": "discrete", "size_levels": FUTURES_LEVELS}


@dataclass(frozen=True)
class Mark:
    """An entry or exit: the step it was decided at, the fill's bar row, side and fill price."""

    step: int
    row: int
    side: str  # "buy" | "sell"
    price: float


@dataclass
class Track:
    """One trader's path: equity after each step (``equity[0]`` the initial cash), marks, actions."""

    equity: list[float]
    marks: list[Mark] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    probs: list[list[float]] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    fees_usd: float = 0.0

    def ret(self, step: int | None = None) -> float:
        """Return after ``step`` steps (None: so far)."""
        eq = self.equity if step is None else self.equity[: step + 1]
        return eq[-1] / eq[0] - 1.0


class _Stepper:
    """A single-face env plus the bookkeeping every track shares."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.engine = env.engine

    def step(self, action: Any, track: Track, step: int) -> bool:
        qty0 = float(np.sum(self.engine.qty))
        _, _, terminated, truncated, info = self.env.step(action)
        qty1 = float(np.sum(info["position_qty"]))
        track.equity.append(float(info["equity_usd"]))
        track.fees_usd += float(info["fee_usd"])
        track.actions.append(int(np.asarray(action).reshape(-1)[0]))
        if qty1 != qty0:
            track.marks.append(Mark(step, int(info["bar_row"]), "buy" if qty1 > qty0 else "sell",
                                    float(info["fill_price_usd"])))
        return bool(terminated or truncated)


class GameSession:
    """One game: the player's env, buy-and-hold and (optionally) the agent, on one symbol.

    ``step()``/``buy()``/``sell()`` advance the player one bar; ``week()`` holds for
    ``week_bars``. ``done`` once the episode's ``play_bars`` are played (or ``finish()``).
    """

    def __init__(self, market: MarketArrays, index: MarketArrays | None, *, env_id: str,
                 env_config: Mapping[str, Any], seed: int = 0, symbol: str | None = None,
                 play_bars: int = 120, view_bars: int = 60, week_bars: int | None = None,
                 policy_factory: PolicyFactory | None = None, agent_env_id: str | None = None,
                 reveal: str = "live") -> None:
        if reveal not in REVEALS:
            raise ValueError(f"reveal: one of {REVEALS}, got {reveal!r}")
        self.kind = env_kind(agent_env_id or env_id)
        self.seed, self.reveal, self.view_bars = seed, reveal, int(view_bars)
        base = {k: v for k, v in env_config.items() if k not in ("data", "market", "index", "num_envs")}
        window = int(base.get("window_bars", 50))
        warmup = max(window, int(base.get("warmup_bars") or window), self.view_bars)
        common = base | {"episode_bars": int(play_bars), "warmup_bars": warmup, "random_start": True,
                         "symbol_order": "random", "precompute_max_mb": 0.0, "vector_info": True}
        rng = np.random.default_rng(seed)
        if symbol is not None and symbol not in market.symbols:
            shown = ", ".join(market.symbols[:8]) + (" ..." if market.n_symbols > 8 else "")
            raise ValueError(f"symbol {symbol!r}: not among this market's {market.n_symbols} symbols ({shown})")
        if symbol is None:  # the universe of symbols long enough for this game, then one at random
            probe = envs.make_creator(env_id)(common | {"market": market, "index": index})
            universe = list(probe.engine.universe)
            symbol = universe[int(rng.integers(len(universe)))]
        self.symbol = symbol
        self.market = market.select([symbol])
        self.index = index
        cfg = common | {"symbols": (symbol,)} | player_overrides(self.kind)
        self._player_cfg = cfg
        make = envs.make_creator(player_env_id(self.kind))
        self._player = _Stepper(make(cfg | {"market": self.market, "index": index}))
        seed_i = int(rng.integers(2**31))
        self._player.env.reset(seed=seed_i)
        self.start_row = int(self._player.engine.row)
        self.play_bars = int(play_bars)
        self.row = self.start_row
        self.step_count = 0
        self.done = False
        cash = float(self._player.engine.equity_usd)
        self.player = Track([cash])
        self.week_bars = int(week_bars or (5 if _bar_ns(self.market) >= 86_400 * 10**9 else 24))
        self.buy_hold = self._play_buy_hold(make, seed_i)
        self.agent: Track | None = None
        if policy_factory is not None:
            self.agent = self._play_agent(agent_env_id or env_id, base, policy_factory)
        ts = self.market.ts_ns
        self.index_close = (align_to_calendar(ts, index.ts_ns, index.ohlcv)[0][:, 3] if index is not None
                            else self.market.ohlcv[:, CLOSE])

    # --- the other tracks, played to the end at the start ---------------------------------
    def _play_buy_hold(self, make: Callable[[dict], Any], seed_i: int) -> Track:
        env = _Stepper(make(self._player_cfg | {"market": self.market, "index": self.index}))
        env.env.reset(seed=seed_i)
        if int(env.engine.row) != self.start_row:
            raise RuntimeError("buy-and-hold did not start on the player's bar")
        track = Track([float(env.engine.equity_usd)])
        first, hold = (BUY, HOLD) if self.kind == STOCK else (LONG, LONG)
        for k in range(self.play_bars):
            if env.step(first if k == 0 else hold, track, k):
                break
        return track

    def _play_agent(self, env_id: str, base: dict[str, Any], policy_factory: PolicyFactory) -> Track:
        """The agent on the same bars: its own env config (e.g. buy_only), batched face of 1."""
        cfg = base | {"market": self.market, "index": self.index, "symbols": (self.symbol,),
                      "episode_bars": self.play_bars, "random_start": False, "num_envs": 1,
                      "start_ts_ns": int(self.market.ts_ns[self.start_row]), "vector_info": True}
        env = envs.make_creator(env_id)(cfg)
        obs, _ = env.reset(seed=self.seed)
        if int(env.engine.row[0]) != self.start_row:
            raise RuntimeError(f"the agent's env starts at row {int(env.engine.row[0])}, the game at "
                               f"{self.start_row}: their warmup or window differs")
        policy = policy_factory(env.single_action_space)
        track = Track([float(env.engine.equity_usd[0])])
        for k in range(self.play_bars):
            qty0 = float(env.engine.qty[0])
            decision = policy.act(obs)
            obs, _, terminated, truncated, info = env.step(decision.actions)
            qty1 = float(np.asarray(info["position_qty"]).reshape(-1)[0])
            track.equity.append(float(np.asarray(info["equity_usd"])[0]))
            track.fees_usd += float(np.asarray(info["fee_usd"])[0])
            track.actions.append(int(np.asarray(decision.actions).reshape(-1)[0]))
            if decision.action_probs is not None:
                track.probs.append([float(p) for p in decision.action_probs[0]])
            if decision.values is not None:
                track.values.append(float(np.asarray(decision.values).reshape(-1)[0]))
            if qty1 != qty0:
                track.marks.append(Mark(k, int(np.asarray(info["bar_row"])[0]), "buy" if qty1 > qty0 else "sell",
                                        float(np.asarray(info["fill_price_usd"])[0])))
            if bool(terminated[0] or truncated[0]):
                break
        env.close()
        return track

    # --- the player's moves ---------------------------------------------------------------
    @property
    def position_qty(self) -> float:
        return float(self._player.engine.qty)

    @property
    def position_label(self) -> str:
        q = self.position_qty
        return "flat" if q == 0 else ("long" if q > 0 else "short")

    def _act(self, action: int) -> None:
        if self.done:
            return
        ended = self._player.step(action, self.player, self.step_count)
        self.step_count += 1
        self.row = int(self._player.engine.row)
        if ended or self.step_count >= self.play_bars:
            self.done = True

    def _level(self) -> int:
        q = self.position_qty
        return FLAT if q == 0 else (LONG if q > 0 else SHORT)

    def step(self) -> None:
        """Hold for one bar."""
        self._act(HOLD if self.kind == STOCK else self._level())

    def week(self) -> None:
        """Hold for ``week_bars`` bars (or to the end)."""
        for _ in range(self.week_bars):
            self.step()

    def buy(self) -> None:
        self._act(BUY if self.kind == STOCK else min(LONG, self._level() + 1))

    def sell(self) -> None:
        self._act(SELL if self.kind == STOCK else max(SHORT, self._level() - 1))

    def finish(self) -> None:
        """Hold to the end (the player quits early; the position is kept and marked)."""
        while not self.done:
            self.step()

    # --- what the view and the leaderboard read --------------------------------------------
    @property
    def agent_visible(self) -> bool:
        return self.agent is not None and (self.reveal == "live" or self.done)

    def market_return(self, step: int | None = None) -> float:
        """Buy-and-hold (same costs) after ``step`` steps (None: now)."""
        return self.buy_hold.ret(self.step_count if step is None else step)

    def index_return(self) -> float:
        return float(self.index_close[self.row] / self.index_close[self.start_row] - 1.0)

    def result(self) -> dict[str, Any]:
        """Symbol, dates and the three returns (what the end screen and the leaderboard show)."""
        ts = self.market.ts_ns
        return {"symbol": self.symbol, "market": self.kind,
                "start": _iso(int(ts[self.start_row])), "end": _iso(int(ts[self.row])),
                "bars": self.step_count, "player_return": self.player.ret(),
                "agent_return": self.agent.ret(self.step_count) if self.agent is not None else None,
                "buy_hold_return": self.market_return(), "index_return": self.index_return(),
                "player_trades": len(self.player.marks), "player_fees_usd": self.player.fees_usd,
                "seed": self.seed}


def _bar_ns(market: MarketArrays) -> int:
    ts = market.ts_ns
    return int(np.median(np.diff(ts))) if len(ts) > 1 else 86_400 * 10**9


def _iso(ts_ns: int) -> str:
    return np.datetime64(ts_ns, "ns").astype("datetime64[m]").astype(str).replace("T00:00", "")
