"""How much of a synthetic market's known edge a policy captures, and whether its buys see it.

A synthetic market (:mod:`envs.synthetic`) comes with an oracle: the position a policy that
knows the planted edge would hold after each bar's close (``oracle_position``) and, for markets
with planted events, the event rows (``events``). The oracle is played through the SAME env as
the agent (same episodes: same reset seed, same costs), so the two are compared like for like.

Measures (pure functions of rollout traces, tested on scenario tables in
``tests/unit/training/test_oracle_fraction.py``):

* **excess** of an episode: its net log growth of equity ``log(E_T / E_0)``, after fees and
  slippage, minus the market index's log return over the time a position was held (long +1,
  short -1: a fully invested position's beta; bought at an open, sold at an open, as the env
  fills), so buying the market earns no excess and staying out earns exactly 0. It does not
  depend on the reward the agent was trained with (reward shaping, scaling and penalties
  change the reward, not the equity).
* **oracle fraction**: ``sum(agent excess) / sum(oracle excess)`` over the same episodes (a
  ratio of totals: an episode where the oracle earns ~0 cannot blow it up). ``nan`` when the
  oracle's mean excess per episode is below :data:`MIN_ORACLE_EXCESS` (no edge to capture, e.g.
  the pure-noise market: there only the agent's own excess and trades mean something).
* **entries**: steps taken flat (*decisions*) that open a position (long or short); the
  decision row is the bar the action was chosen on. ``buy_rate`` = entries / decisions;
  ``trades_per_252_bars`` = positions opened per 252 steps (entries plus long/short flips).
* with events: ``buy_precision`` = entries on event rows / entries; ``buy_recall`` = entries on
  event rows / decisions on event rows (events seen while flat, i.e. those the policy could
  act on); ``event_rate`` = event rows / decisions, which is the precision a policy that buys
  without looking (always, or at random) gets in expectation.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.evaluation.rollout import EpisodeTrace, rollout

#: the oracle's mean excess per episode below which there is no edge to measure a fraction of
MIN_ORACLE_EXCESS = 1e-6
#: positions with a smaller magnitude count as flat
FLAT_QTY = 1e-12


@dataclass(frozen=True)
class IndexPath:
    """The index's log open and log close at each market row (the same timestamp)."""

    log_open: np.ndarray   # [R]
    log_close: np.ndarray  # [R]

    @classmethod
    def of(cls, market: Any) -> IndexPath | None:
        """From a synthetic market's ``index`` (one series; None without one)."""
        index = getattr(market, "index", None)
        if index is None:
            return None
        at = np.searchsorted(index.ts_ns, market.market.ts_ns, side="right") - 1
        bars = np.log(np.asarray(index.ohlcv, dtype=np.float64)[np.maximum(at, 0)])
        return cls(bars[:, 0], bars[:, 3])

    def held_log_return(self, trace: EpisodeTrace) -> float:
        """The index's log return over the bars ``trace`` held a position, signed by its side:
        open to close on a bar bought at the open, close to open on a bar sold at the open."""
        pos = np.sign(np.asarray(trace.position, dtype=np.float64))
        pos[np.abs(np.asarray(trace.position)) <= FLAT_QTY] = 0.0
        rows = np.asarray(trace.bar_row, dtype=np.int64)
        before, after, r0, r1 = pos[:-1], pos[1:], rows[:-1], rows[1:]
        close_close = self.log_close[r1] - self.log_close[r0]
        open_close = self.log_close[r1] - self.log_open[r1]
        close_open = self.log_open[r1] - self.log_close[r0]
        same = (before == after)
        total = np.where(same, after * close_close, after * open_close + before * close_open)
        return float(total.sum())


def episode_excess(traces: Sequence[EpisodeTrace], index: IndexPath | None = None) -> np.ndarray:
    """``log(E_T / E_0)`` of each episode, less the index's return while invested when
    ``index`` is given (see the module docstring)."""
    raw = np.array([math.log(t.equity_usd[-1] / t.equity_usd[0]) for t in traces], dtype=np.float64)
    if index is None:
        return raw
    return raw - np.array([index.held_log_return(t) for t in traces], dtype=np.float64)


def oracle_fraction(agent_excess: np.ndarray, oracle_excess: np.ndarray) -> float:
    """``sum(agent) / sum(oracle)`` over paired episodes; ``nan`` without an edge to capture."""
    agent, oracle = np.asarray(agent_excess, np.float64), np.asarray(oracle_excess, np.float64)
    if agent.shape != oracle.shape or agent.size == 0:
        raise ValueError(f"oracle_fraction: need paired episodes, got {agent.shape} and {oracle.shape}")
    if oracle.mean() < MIN_ORACLE_EXCESS:
        return math.nan
    return float(agent.sum() / oracle.sum())


@dataclass(frozen=True)
class Decisions:
    """Per step of a set of episodes: the decision row, whether the step was taken flat,
    whether it opened a position from flat, whether it flipped long <-> short."""

    rows: np.ndarray      # int [n]
    flat: np.ndarray      # bool [n]
    entered: np.ndarray   # bool [n]
    flipped: np.ndarray   # bool [n]

    @classmethod
    def of(cls, traces: Sequence[EpisodeTrace]) -> Decisions:
        parts: list[tuple[np.ndarray, ...]] = []
        for t in traces:
            pos = np.asarray(t.position, dtype=np.float64)
            before, after = pos[:-1], pos[1:]
            is_flat, now_open = np.abs(before) <= FLAT_QTY, np.abs(after) > FLAT_QTY
            flip = ~is_flat & now_open & (np.sign(after) != np.sign(before))
            rows = np.asarray(t.bar_row[:len(before)], dtype=np.int64)
            parts.append((rows, is_flat, is_flat & now_open, flip))
        if not parts:
            raise ValueError("no episodes")
        return cls(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def buy_stats(traces: Sequence[EpisodeTrace], events: np.ndarray | None = None) -> dict[str, float]:
    """``buy_rate``, ``trades_per_252_bars`` and, given ``events`` (bool per market row),
    ``buy_precision``, ``buy_recall`` and ``event_rate`` (see the module docstring; ``nan``
    where a denominator is 0)."""
    d = Decisions.of(traces)
    steps, entries, decisions = len(d.flat), int(d.entered.sum()), int(d.flat.sum())
    opened = entries + int(d.flipped.sum())
    out = {"buy_rate": _ratio(entries, decisions), "trades_per_252_bars": _ratio(252 * opened, steps)}
    if events is not None:
        if len(d.rows) != steps:
            raise ValueError("buy_stats: the traces carry no bar rows (info['bar_row'])")
        on_event = np.asarray(events, dtype=bool)[d.rows]
        hits = int((d.entered & on_event).sum())
        chances = int((d.flat & on_event).sum())
        out |= {"buy_precision": _ratio(hits, entries), "buy_recall": _ratio(hits, chances),
                "event_rate": _ratio(chances, decisions)}
    return out


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def capture_metrics(agent: Sequence[EpisodeTrace], oracle: Sequence[EpisodeTrace],
                    events: np.ndarray | None = None, index: IndexPath | None = None) -> dict[str, float]:
    """The oracle fraction, both sides' mean excess per episode and the agent's buy stats."""
    a, o = episode_excess(agent, index), episode_excess(oracle, index)
    return {"oracle_fraction": oracle_fraction(a, o), "excess": float(a.mean()),
            "oracle_excess": float(o.mean())} | buy_stats(agent, events)


# --- the oracle as a policy, played through the env ------------------------------------------

@dataclass(frozen=True)
class ActionStep:
    """What a policy hands :func:`~app.evaluation.rollout.rollout`: one action per env."""

    actions: np.ndarray


class OraclePolicy:
    """Acts from ``info`` (the market row and the position), not from the observation:
    ``targets(rows, qty)`` gives the env's actions that follow the oracle. Passed to
    :func:`~app.evaluation.rollout.rollout` like a policy."""

    uses_info = True
    stateful = False

    def __init__(self, targets: Any) -> None:
        self.targets = targets

    def act(self, obs: Any, info: Mapping[str, Any]) -> ActionStep:
        rows = np.asarray(info["bar_row"], dtype=np.int64)
        return ActionStep(self.targets(rows, np.asarray(info["position_qty"], dtype=np.float64)))


def stock_targets(market: Any, mode: str):
    """StockSwing. ``swing``: buy when the oracle wants the stock and it is not owned, sell when
    it is owned and the oracle does not want it. ``buy_only``: buy when flat on the oracle's
    entry rows (``oracle_entry``; without it, wherever it wants the stock); the env closes."""
    want_rows = np.asarray(market.oracle_position) > 0
    entry = np.asarray(getattr(market, "oracle_entry", ()), dtype=bool)
    enter_rows = entry if mode == "buy_only" and entry.size else want_rows

    def targets(rows: np.ndarray, qty: np.ndarray) -> np.ndarray:
        owned = qty > FLAT_QTY
        buy = enter_rows[rows] & ~owned
        sell = owned & ~want_rows[rows] & (mode == "swing")
        return np.where(buy, 1, np.where(sell, 2, 0)).astype(np.int64)
    return targets


def futures_targets(market: Any, n_levels: int):
    """CryptoFutures (discrete): the oracle's side as the full long / flat / full short level
    (``Discrete(2k+1)``: 0 full short, k flat, 2k full long)."""
    side = np.sign(np.asarray(market.oracle_position)).astype(np.int64)

    def targets(rows: np.ndarray, qty: np.ndarray) -> np.ndarray:
        return n_levels + side[rows] * n_levels
    return targets


def oracle_policy(env: Any, market: Any) -> OraclePolicy | None:
    """The oracle of ``market`` acting in ``env`` (a raytrade vector env), or None for an env
    whose actions it cannot express."""
    cfg = env.engine.config
    if getattr(cfg, "mode", None) in ("buy_only", "swing"):
        return OraclePolicy(stock_targets(market, cfg.mode))
    if getattr(cfg, "action_mode", None) == "discrete" and hasattr(cfg, "size_levels"):
        return OraclePolicy(futures_targets(market, len(cfg.size_levels)))
    return None


def synthetic_market_of(env: Any) -> Any | None:
    """The :class:`envs.synthetic.SyntheticMarket` an env trades, or None when its market was
    given (stored data). Regenerated from the env config (``synthetic``, ``market_seed``,
    ``synthetic_params``: :func:`envs.synthetic.generate_for`) and checked bar for bar against
    the env's market, so the oracle's rows are the env's rows."""
    cfg = env.engine.config
    kind = getattr(cfg, "synthetic", None)
    if not isinstance(kind, str):
        return None
    perpetual = hasattr(cfg, "size_levels")
    params = dict(getattr(cfg, "synthetic_params", None) or {})
    market = _generate(kind, int(cfg.market_seed), json.dumps(params, sort_keys=True), perpetual)
    ours, theirs = env.engine.market, market.market
    if ours.ohlcv.shape != theirs.ohlcv.shape or not np.array_equal(ours.ohlcv, theirs.ohlcv):
        return None  # the env trades a market it was given, not the generated one
    return market


@functools.lru_cache(maxsize=32)
def _generate(kind: str, seed: int, params_json: str, perpetual: bool) -> Any:
    from types import SimpleNamespace

    from envs import synthetic

    config = SimpleNamespace(synthetic=kind, market_seed=seed, synthetic_params=json.loads(params_json))
    return (synthetic.generate_perpetual_for(config) if perpetual
            else synthetic.generate_for(config))


def play_oracle(env: Any, market: Any, *, seed: int) -> list[EpisodeTrace] | None:
    """One episode per env of the oracle (same episodes as any policy rolled out with ``seed``);
    None when the env's actions cannot express it."""
    policy = oracle_policy(env, market)
    return None if policy is None else rollout(env, policy, seed=seed)


def market_events(market: Any) -> np.ndarray | None:
    """The planted event rows (bool per market row) of a market that plants any; else None."""
    events = np.asarray(getattr(market, "events", ()), dtype=bool)
    return events if events.any() else None
