"""Play the oracle (or a baseline) of a synthetic market THROUGH THE REAL ENV.

"Fraction of oracle" is only honest when the oracle pays what the agent pays: the same fills at
the next open, fees, slippage, episodes and reward. :func:`play` steps any StockSwing or
CryptoFutures env (single or vector face) with a policy that sees each env's current row and
position, one episode per env, and returns per-episode sums; :func:`play_oracle` plays the
market's oracle:

* StockSwing ``buy_only``: buy on the oracle's entry rows (``SyntheticMarket.oracle_entry``, the
  paying event closes) when flat; the env holds ``horizon_bars``.
* StockSwing ``swing``: follow ``oracle_position`` (buy when it turns 1, sell when it turns 0).
* CryptoFutures: target level ``oracle_position * max(size_levels)`` (long, flat or short at
  the full allowed leverage).

Usage (the learning benchmark): ``play_oracle(env)`` on an env built from a config with
``synthetic``/``market_seed`` (the market is regenerated from the config), and
``play(env, baseline_policy(env, "random", rng))`` for the baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs import synthetic
from envs.core.engine import Engine
from envs.core.market import CLOSE, MarketArrays
from envs.crypto_futures import CryptoFuturesEngine
from envs.stock_swing import BUY, SELL, StockSwingEngine
from envs.synthetic import SyntheticMarket
from envs.vector import EngineEnv, EngineVectorEnv

#: ``(rows [B], position qty [B]) -> actions`` for B envs (rows index the market's arrays)
Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]
BASELINES = ("random", "always", "never")


@dataclass(frozen=True)
class PlayResult:
    """Per-episode sums (``[E]`` arrays, one episode per env).

    Attributes:
        reward: the env's reward summed over the episode (the agent's objective).
        log_return: ``log(final equity / initial equity)``.
        bars: steps in the episode.
        opens: positions opened (a buy; for futures a new side, a flip counts).
        hits: opens decided on an oracle entry row, on the oracle's side (buy precision =
            ``hits / opens``).
        entries: oracle entry rows the episode decided on (recall = ``hits / entries``).
    """

    reward: np.ndarray
    log_return: np.ndarray
    bars: np.ndarray
    opens: np.ndarray
    hits: np.ndarray
    entries: np.ndarray

    def per_252(self, values: np.ndarray | None = None) -> float:
        """Sum of ``values`` (default: ``reward``) per 252 bars over every episode."""
        total = self.reward if values is None else values
        return float(252.0 * np.sum(total) / max(int(np.sum(self.bars)), 1))

    @property
    def precision(self) -> float:
        return float(self.hits.sum() / self.opens.sum()) if self.opens.sum() else float("nan")

    @property
    def recall(self) -> float:
        return float(self.hits.sum() / self.entries.sum()) if self.entries.sum() else float("nan")


def market_of(env: EngineEnv | EngineVectorEnv) -> SyntheticMarket:
    """The synthetic market ``env``'s config names (regenerated: same seed, same arrays)."""
    engine = env.engine
    if isinstance(engine, CryptoFuturesEngine):
        return synthetic.generate_perpetual_for(engine.config)
    return synthetic.generate_for(engine.config)


def play(env: EngineEnv | EngineVectorEnv, policy: Policy, *, seed: int = 0,
         market: SyntheticMarket | None = None) -> PlayResult:
    """One episode per env of ``env`` (reset with ``seed``) under ``policy``. ``market`` (the
    env's synthetic market) only scores opens against its oracle entries (else none do)."""
    engine = env.engine
    batched = isinstance(env, EngineVectorEnv)
    n = env.num_envs if isinstance(env, EngineVectorEnv) else 1
    entry, side = _entry_rows(engine, market)
    env.reset(seed=seed)
    equity0 = _vec(engine.equity_usd, n).copy()
    out = {k: np.zeros(n) for k in ("reward", "bars", "opens", "hits", "entries")}
    equity1 = equity0.copy()
    live = np.ones(n, dtype=bool)
    while live.any():
        rows, qty0 = _vec(engine.row, n).astype(np.int64), _vec(engine.qty, n).copy()
        actions = policy(rows, qty0)
        _, reward, terminated, truncated, _ = env.step(actions if batched else actions[0])
        qty1 = _vec(engine.qty, n)
        opened = (qty1 != 0.0) & (np.sign(qty1) != np.sign(qty0))
        out["reward"] += live * _vec(reward, n)
        out["bars"] += live
        out["opens"] += live & opened
        out["hits"] += live & opened & entry[rows] & (np.sign(qty1) == side[rows])
        out["entries"] += live & entry[rows]
        done = live & (_vec(terminated, n).astype(bool) | _vec(truncated, n).astype(bool))
        equity1 = np.where(done, _vec(engine.equity_usd, n), equity1)
        live &= ~done
    counts = {k: out[k].astype(np.int64) for k in ("bars", "opens", "hits", "entries")}
    return PlayResult(out["reward"], np.log(np.maximum(equity1, 1e-300) / equity0), **counts)


def play_oracle(env: EngineEnv | EngineVectorEnv, market: SyntheticMarket | None = None, *,
                seed: int = 0) -> PlayResult:
    """:func:`play` with the oracle of ``market`` (default: the market the env's config names;
    a ValueError if the env trades other bars)."""
    market = market_of(env) if market is None else market
    _check_same(env.engine.market, market.market)
    return play(env, oracle_policy(env, market), seed=seed, market=market)


def oracle_policy(env: EngineEnv | EngineVectorEnv, market: SyntheticMarket) -> Policy:
    """The oracle of ``market`` as a :data:`Policy` for ``env`` (see the module docstring)."""
    engine = env.engine
    position = np.asarray(market.oracle_position)
    if isinstance(engine, CryptoFuturesEngine):
        levels = engine.config.levels
        top = max(levels)
        if engine.config.action_mode == "continuous":
            return lambda rows, qty: (position[rows] * top).astype(np.float32)[:, None]
        index = {level: i for i, level in enumerate(levels)}
        lookup = np.array([index[-top], index[0.0], index[top]], dtype=np.int64)
        return lambda rows, qty: lookup[position[rows] + 1]
    if not isinstance(engine, StockSwingEngine):
        raise ValueError(f"play_oracle: needs a StockSwing or CryptoFutures env, got {type(engine).__name__}")
    if engine.config.mode == "buy_only":
        entry, _ = _entry_rows(engine, market)
        return lambda rows, qty: (entry[rows] & (qty <= 0.0)).astype(np.int64)

    def swing(rows: np.ndarray, qty: np.ndarray) -> np.ndarray:
        want, owned = position[rows] > 0, qty > 0.0
        return np.where(want & ~owned, BUY, np.where(owned & ~want, SELL, 0)).astype(np.int64)

    return swing


def baseline_policy(env: EngineEnv | EngineVectorEnv, name: str, rng: np.random.Generator) -> Policy:
    """A market-blind baseline: ``random`` (uniform over the actions), ``always`` (buy / full
    long whenever possible) or ``never`` (stay out / flat)."""
    if name not in BASELINES:
        raise ValueError(f"baseline: expected one of {BASELINES}, got {name!r}")
    engine = env.engine
    space = engine.single_action_space
    if isinstance(engine, CryptoFuturesEngine) and engine.config.action_mode == "continuous":
        value = {"always": 1.0, "never": 0.0}.get(name)
        if value is None:
            return lambda rows, qty: rng.uniform(-1.0, 1.0, (len(rows), 1)).astype(np.float32)
        return lambda rows, qty: np.full((len(rows), 1), value, dtype=np.float32)
    n_actions = int(getattr(space, "n", 0))
    if isinstance(engine, CryptoFuturesEngine):
        fixed = {"always": n_actions - 1, "never": n_actions // 2}.get(name)
    else:
        fixed = {"always": BUY, "never": 0}.get(name)
    if fixed is None:
        return lambda rows, qty: rng.integers(0, n_actions, len(rows))
    return lambda rows, qty: np.full(len(rows), fixed, dtype=np.int64)


def _entry_rows(engine: Engine, market: SyntheticMarket | None) -> tuple[np.ndarray, np.ndarray]:
    """Oracle entry rows and the oracle's side there, padded by one row (finished envs)."""
    n_rows = len(engine.market.ts_ns) + 1
    if market is None:
        return np.zeros(n_rows, dtype=bool), np.zeros(n_rows)
    position = np.asarray(market.oracle_position)
    entry = np.asarray(market.oracle_entry) if len(market.oracle_entry) else position != 0
    return np.append(entry, False), np.append(np.sign(position), 0.0)


def _check_same(traded: MarketArrays, generated: MarketArrays) -> None:
    if (traded.symbols != generated.symbols or not np.array_equal(traded.ts_ns, generated.ts_ns)
            or not np.array_equal(traded.ohlcv[:, CLOSE], generated.ohlcv[:, CLOSE])):
        raise ValueError("play_oracle: the env trades other bars than the synthetic market given "
                         "(pass the env's own market, or build the env from its synthetic config)")


def _vec(value, n: int) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(n)
