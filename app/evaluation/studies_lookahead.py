"""Study ``lookahead``: rerun decisions on data truncated at each decision time (in the spirit of
freqtrade's ``lookahead-analysis``) and report every decision that changes.

Design
    For a few symbols (``--symbols`` or ``--n-symbols``, a seeded sample of the part's universe)
    and a seeded sample of ``--n-decisions`` decision bars ``t`` per symbol:

    1. the reference: the full-data greedy backtest of that symbol
       (:func:`app.evaluation.backtest.backtest`), its recorded actions and probabilities;
    2. a replay on the same full data (same env, batch of one, greedy) that captures the
       observation, logits, probabilities and action at every sampled ``t`` -- it must reproduce
       the backtest's records (``matches_backtest``), else the comparison itself is off;
    3. per ``t``: the market rebuilt with the symbol's bars ``<= t`` only (every per-row array:
       OHLCV, funding, mark) and the index truncated at ``t`` too; the same env config on it,
       from the same episode start (checked: ``same_start``), with the policy's recurrent state
       carried from that start, and the env fed the reference's own actions before ``t`` (so the
       position state matches and only the data after ``t`` differs). The decision at ``t`` is
       compared with the full-data one: the action, and the probabilities / logits to ``atol``
       (``1e-6``); the observation field by field (exactly).

    ``decision_changed``: the action differs or a probability / logit moved by more than
    ``atol``. ``obs_changed``: some observation field differs (``fields_changed`` names them) --
    a leak in the env even if this policy happens to ignore it. ``leak = decision_changed or
    obs_changed``; ``raytrade evaluate lookahead`` exits with code 1 if any row leaks.

    Decisions at the first bar of an episode are not sampled (a truncated market needs a bar
    after the start for the env to accept it). Stochastic policies are compared through their
    probabilities (the greedy replay gives them); single-symbol envs only (StockSwing, the
    synthetic markets, CryptoFutures), not Portfolio-v0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import envs
from app.evaluation.backtest import backtest
from app.evaluation.studies import (
    StudyError,
    StudyResult,
    load_context,
    market_view,
    records_frame,
    write_result,
)
from app.policy.batched import BatchedPolicy
from app.runs.env_factory import create_env
from envs.core.market import MarketArrays

STUDY = "lookahead"


@dataclass
class Decision:
    """What the policy saw and chose at one bar."""

    obs: dict[str, np.ndarray]
    logits: np.ndarray
    probs: np.ndarray | None
    action: np.ndarray


@dataclass
class Replay:
    decisions: dict[int, Decision]   # by market row (local to the one-symbol market)
    actions: list[np.ndarray]        # the actions sent to the env, in order
    start_row: int


def truncate(market: MarketArrays, n_rows: int) -> MarketArrays:
    """The first ``n_rows`` bars of a one-symbol market (every per-row array cut)."""
    if market.n_symbols != 1:
        raise ValueError("truncate: needs a one-symbol market")

    def cut(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[:n_rows].copy()

    return MarketArrays(market.symbols, np.array([0, n_rows], dtype=np.int64), cut(market.ts_ns), cut(market.ohlcv),
                        cut(market.funding_rate), cut(market.mark_ohlc))


def truncate_index(index: MarketArrays | None, ts_ns: int) -> MarketArrays | None:
    """The index bars at or before ``ts_ns`` (None stays None)."""
    if index is None:
        return None
    n = int(np.searchsorted(index.ts_ns, ts_ns, side="right"))
    return truncate(index, max(n, 1))


def _array_config(env_config: dict[str, Any], market: MarketArrays, index: MarketArrays | None) -> dict[str, Any]:
    config = {k: v for k, v in env_config.items() if k != "data"}
    return config | {"market": market, "index": index, "symbols": tuple(market.symbols), "num_envs": 1,
                     "episode_bars": None, "random_start": False, "vector_info": True}


def replay(module: Any, env_id: str, config: dict[str, Any], until_row: int, capture: set[int],
           forced: Sequence[np.ndarray] | None = None) -> Replay:
    """Step one env (batch of one, greedy) from its episode start, acting at every bar up to and
    including ``until_row``; capture the decision at each row of ``capture``. ``forced`` actions
    (one per step) are sent to the env instead of the policy's own; the policy still sees every
    observation, so its recurrent state evolves as in a live run."""
    env = create_env(env_id, config)
    symbol = env.engine.universe[0]
    policy = BatchedPolicy(module, env.single_action_space, 1, greedy=True, seed=0)
    obs, info = env.reset(seed=0, options={"symbol": [symbol]})
    start = int(np.asarray(info["bar_row"])[0])
    decisions: dict[int, Decision] = {}
    actions: list[np.ndarray] = []
    while True:
        row = int(np.asarray(info["bar_row"])[0])
        step = policy.act(obs)
        if row in capture:
            decisions[row] = Decision({k: np.array(v[0]) for k, v in obs.items()}, step.dist_inputs[0].copy(),
                                      None if step.action_probs is None else step.action_probs[0].copy(),
                                      np.asarray(step.actions[0]).copy())
        if row >= until_row:
            break
        action = step.actions if forced is None else np.asarray(forced[len(actions)])[None]
        actions.append(np.asarray(action[0]).copy())
        obs, _, terminated, truncated, info = env.step(action)
        if terminated[0] or (truncated[0] and int(np.asarray(info["bar_row"])[0]) < until_row):
            break  # the episode ended before until_row (e.g. liquidation): nothing more to compare
    env.close()
    return Replay(decisions, actions, start)


def lookahead_table(module: Any, env_id: str, env_config: dict[str, Any], *,
                    symbols: Sequence[str] | None = None, n_symbols: int = 3, n_decisions: int = 20,
                    seed: int = 0, atol: float = 1e-6) -> pd.DataFrame:
    """One row per sampled decision (see the module docstring)."""
    if env_id == envs.PORTFOLIO:
        raise StudyError("lookahead: Portfolio-v0 trades several symbols at once; the study truncates one "
                         "symbol's market and supports single-symbol envs only")
    view = market_view(env_id, env_config)
    rng = np.random.default_rng(seed)
    if symbols:
        missing = [s for s in symbols if s not in view.universe]
        if missing:
            raise StudyError(f"lookahead: {missing} not tradable in this part (universe: {list(view.universe)})")
        chosen = list(symbols)
    else:
        chosen = sorted(rng.choice(list(view.universe), min(n_symbols, len(view.universe)), replace=False).tolist())
    rows = []
    for symbol in chosen:
        rows += _symbol_rows(module, env_id, env_config, view, symbol, n_decisions, rng, seed, atol)
    return pd.DataFrame(rows)


def _symbol_rows(module: Any, env_id: str, env_config: dict[str, Any], view: Any, symbol: str,
                 n_decisions: int, rng: np.random.Generator, seed: int, atol: float) -> list[dict[str, Any]]:
    records = records_frame(backtest(module, env_id, env_config, symbols=[symbol], greedy=True, seed=seed,
                                     with_values=False))
    offset = int(view.market.offsets[view.market.index_of(symbol)])
    local = records["observation_id"].to_numpy() - offset
    probs_cols = [c for c in records.columns if c.startswith("prob_")]
    candidates = np.flatnonzero(records["step"].to_numpy() >= 1)
    picked = np.sort(rng.choice(candidates, min(n_decisions, len(candidates)), replace=False))
    capture = {int(local[i]) for i in picked}
    one = view.market.select([symbol])
    full = replay(module, env_id, _array_config(env_config, one, view.index), int(local[picked[-1]]), capture)
    out = []
    for i in picked:
        row = int(local[i])
        ref = full.decisions[row]
        ts = int(one.ts_ns[row])
        config = _array_config(env_config, truncate(one, row + 1), truncate_index(view.index, ts))
        cut = replay(module, env_id, config, row, {row}, forced=full.actions)
        recorded_probs = records.loc[i, probs_cols].to_numpy(dtype=np.float64) if probs_cols else None
        rows = {"symbol": symbol, "decision_ts": pd.Timestamp(ts, tz="UTC"), "row": row,
                "step": int(records.loc[i, "step"]), "same_start": cut.start_row == full.start_row,
                "matches_backtest": bool(float(np.ravel(ref.action)[0]) == float(records.loc[i, "action"])
                                         and (recorded_probs is None or np.allclose(ref.probs, recorded_probs,
                                                                                    rtol=0, atol=atol)))}
        out.append(rows | _compare(ref, cut.decisions.get(row), atol))
    return out


def _compare(full: Decision, cut: Decision | None, atol: float) -> dict[str, Any]:
    if cut is None:  # the truncated episode ended early: the decision could not be made at all
        return {"action_full": _action(full.action), "action_truncated": None, "max_prob_diff": np.nan,
                "max_logit_diff": np.nan, "obs_max_diff": np.nan, "fields_changed": "(no decision)",
                "decision_changed": True, "obs_changed": True, "leak": True}
    prob_diff = (float(np.max(np.abs(full.probs - cut.probs))) if full.probs is not None and cut.probs is not None
                 else 0.0)
    logit_diff = float(np.max(np.abs(full.logits - cut.logits)))
    diffs = {k: float(np.max(np.abs(full.obs[k].astype(np.float64) - cut.obs[k].astype(np.float64))))
             for k in full.obs}
    changed_fields = [k for k, d in diffs.items() if d > 0]
    decision_changed = (not np.array_equal(full.action, cut.action)) or prob_diff > atol or logit_diff > atol
    return {"action_full": _action(full.action), "action_truncated": _action(cut.action),
            "max_prob_diff": prob_diff, "max_logit_diff": logit_diff, "obs_max_diff": max(diffs.values()),
            "fields_changed": ",".join(changed_fields), "decision_changed": bool(decision_changed),
            "obs_changed": bool(changed_fields), "leak": bool(decision_changed or changed_fields)}


def _action(action: np.ndarray) -> str:
    flat = np.ravel(action)
    return str(flat[0].item()) if flat.size == 1 else ",".join(f"{a:g}" for a in flat.tolist())


def run_lookahead(run: Any, *, which: str = "final", part: str = "test", symbols: Sequence[str] | None = None,
                  n_symbols: int = 3, n_decisions: int = 20, seed: int = 0, atol: float = 1e-6) -> StudyResult:
    """The study on a run directory; writes ``<run>/studies/lookahead/`` (``result.parquet``: every
    sampled decision; ``notes.json``: counts). ``result.notes["leaks"]`` > 0 means a leak."""
    ctx = load_context(run, which)
    table = lookahead_table(ctx.module, ctx.env_id, ctx.env_config(part), symbols=symbols, n_symbols=n_symbols,
                            n_decisions=n_decisions, seed=seed, atol=atol)
    notes = {"run": ctx.run.name, "checkpoint": which, "part": part, "symbols": sorted(table["symbol"].unique()),
             "decisions": len(table), "decision_changed": int(table["decision_changed"].sum()),
             "obs_changed": int(table["obs_changed"].sum()), "leaks": int(table["leak"].sum()),
             "all_match_backtest": bool(table["matches_backtest"].all()),
             "all_same_start": bool(table["same_start"].all()), "atol": atol}
    return write_result(StudyResult(STUDY, table, notes=notes), ctx.out_dir(STUDY))
