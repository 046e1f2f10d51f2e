"""Batched backtests: a policy over many symbols at once, through the env's vector face.

Each symbol (times ``samples`` for stochastic policies) gets its own env in one vector env; all
are stepped together with one batched forward pass per bar, recurrent state carried per env.
Every env runs its symbol from the first bar with a full observation window to the end of the
range (``episode_bars=None``, no random start), so the same checkpoint, data, seed and settings
give the same records, bit for bit.

Records (one row per symbol, sample and bar, saved as Parquet beside the report): timestamp,
symbol, sample, observation id (the bar's row in the market arrays, i.e. which observation the
policy saw), action, action probabilities, value estimate, position, fill price, fee, funding,
reward, equity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.atomic import atomic_write
from app.policy.batched import BatchedPolicy, ObsTransform
from app.runs.env_factory import create_env


@dataclass
class BacktestResult:
    """Per-step arrays ``[steps, envs]`` plus the env layout; ``to_table`` flattens them."""

    symbols: list[str]
    samples: int
    greedy: bool
    columns: dict[str, np.ndarray]
    seconds: float
    #: building the vector env (observation tables are precomputed there when they fit)
    build_seconds: float = 0.0
    #: requested symbols that were not backtested, with the reason
    skipped: dict[str, str] = field(default_factory=dict)
    #: CPU time of this process in the stepping loop (``seconds`` is wall time): on a shared,
    #: loaded machine the steadier measure of the loop's own cost
    cpu_seconds: float = float("nan")

    @property
    def decisions(self) -> int:
        return int(self.columns["live"].sum())

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.seconds if self.seconds > 0 else float("nan")

    def to_table(self) -> pa.Table:
        live = self.columns["live"]
        steps, n_envs = live.shape
        env_symbol = np.array([s for _ in range(self.samples) for s in self.symbols])
        env_sample = np.repeat(np.arange(self.samples), len(self.symbols))
        cols: dict[str, Any] = {
            "timestamp": pa.array(self.columns["ts_ns"][live], type=pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "symbol": np.broadcast_to(env_symbol, (steps, n_envs))[live],
            "sample": np.broadcast_to(env_sample, (steps, n_envs))[live].astype(np.int32),
            "step": np.broadcast_to(np.arange(steps)[:, None], (steps, n_envs))[live].astype(np.int32),
        }
        for name, values in self.columns.items():
            if name in ("live", "ts_ns"):
                continue
            if values.ndim == 3:  # per-action probabilities
                for a in range(values.shape[2]):
                    cols[f"{name}_{a}"] = values[:, :, a][live]
            else:
                cols[name] = values[live]
        return pa.table(cols)

    def save(self, path: Path) -> Path:
        """Write the records as Parquet (atomically, :func:`app.atomic.atomic_write`)."""
        table = self.to_table()
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def backtest(module: Any, env_id: str, env_config: dict[str, Any], *, symbols: list[str] | None = None,
             greedy: bool = True, samples: int = 1, seed: int = 0, with_values: bool = True,
             max_steps: int = 1_000_000, obs_transform: ObsTransform | None = None) -> BacktestResult:
    """Run ``module`` over every symbol of ``env_config``'s market (or ``symbols``).

    ``with_values`` records the value estimate (one extra head, and the train-path forward
    pass that exposes the embeddings it reads). ``obs_transform`` is handed to
    :class:`~app.policy.batched.BatchedPolicy` (studies that alter what the policy sees)."""
    if samples < 1 or (greedy and samples != 1):
        raise ValueError(f"samples: a greedy backtest takes 1 sample, a stochastic one >= 1; got {samples}")
    symbols, skipped = eligible_symbols(env_id, env_config, symbols)
    n_envs = len(symbols) * samples
    cfg = env_config | {"num_envs": n_envs, "episode_bars": None, "random_start": False, "vector_info": True}
    t_build = time.perf_counter()
    env = create_env(env_id, cfg)
    build_seconds = time.perf_counter() - t_build
    policy = BatchedPolicy(module, env.single_action_space, n_envs, greedy=greedy, seed=seed, with_values=with_values,
                          obs_transform=obs_transform)
    t0, cpu0 = time.perf_counter(), time.process_time()
    columns = _run(env, policy, symbols * samples, seed, max_steps)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    env.close()
    return BacktestResult(symbols, samples, greedy, columns, seconds, build_seconds, skipped, cpu_seconds)


def eligible_symbols(env_id: str, env_config: dict[str, Any],
                     symbols: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The symbols a backtest can trade, and the skipped ones with the reason.

    Eligibility is checked in the backtest's own full-range mode (``episode_bars=None``, no
    random start): a symbol shorter than the training ``episode_bars`` is still backtested over
    its whole range; only one without a single bar after its observation window is skipped.
    """
    full = env_config | {"num_envs": 1, "precompute_max_mb": 0.0, "episode_bars": None,
                         "random_start": False}
    probe = create_env(env_id, full)  # cheap: no tables; raises when no symbol is long enough
    universe, market_symbols = list(probe.engine.universe), list(probe.engine.market.symbols)
    probe.close()
    requested = list(symbols) if symbols is not None else list(
        env_config.get("symbols") or market_symbols or universe)
    skipped = {s: ("not in the backtest's data" if s not in market_symbols
                   else "no bar to trade after the observation window (warmup_bars / window_bars) "
                        "within the range") for s in requested if s not in universe}
    kept = [s for s in requested if s in universe]
    if not kept:
        raise ValueError(f"backtest: none of the requested symbols can be backtested: {skipped}")
    return kept, skipped


#: the per-step columns every backtest records (``prob`` is added for discrete action spaces)
COLUMNS = ("live", "ts_ns", "observation_id", "action", "value", "reward", "equity_usd", "position_qty",
           "fill_price_usd", "fee_usd", "funding_usd")
#: info entries recorded per env (summed over assets where the env reports several); 0 if absent
INFO_COLUMNS = ("equity_usd", "position_qty", "fill_price_usd", "fee_usd", "funding_usd")


class _Recorder:
    """Per-step rows written into preallocated ``[capacity, n]`` arrays (doubled when full), so
    a step costs a few row copies and no Python lists of arrays to stack at the end."""

    def __init__(self, n: int, capacity: int) -> None:
        self.n, self.capacity, self.steps = n, max(int(capacity), 1), 0
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, name: str, row: np.ndarray) -> None:
        """Row ``self.steps`` of column ``name`` (allocated on first use with the row's dtype)."""
        out = self.arrays.get(name)
        if out is None:
            out = self.arrays[name] = np.empty((self.capacity, *row.shape), dtype=row.dtype)
        out[self.steps] = row

    def next(self) -> None:
        self.steps += 1
        if self.steps == self.capacity:
            self.capacity *= 2
            for name, values in self.arrays.items():
                grown = np.empty((self.capacity, *values.shape[1:]), dtype=values.dtype)
                grown[:self.steps] = values[:self.steps]
                self.arrays[name] = grown

    def columns(self, order: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The recorded rows, columns in ``order`` first, then the others."""
        names = [k for k in order if k in self.arrays] + [k for k in self.arrays if k not in order]
        return {k: self.arrays[k][:self.steps] for k in names}


def _horizon(env: Any, bar_row: np.ndarray, max_steps: int) -> int:
    """Steps until the last env's range ends (its episode then truncates), for the buffers."""
    end = getattr(getattr(env, "engine", None), "end_row", None)
    if end is None or np.shape(end) != np.shape(bar_row):
        return min(max_steps, 1024)
    return int(min(max_steps, max(int((np.asarray(end) - bar_row).max()), 0) + 1))


def _run(env: Any, policy: BatchedPolicy, env_symbols: list[str], seed: int, max_steps: int) -> dict[str, np.ndarray]:
    """Step every env to the end of its range, one batched decision per bar, recording
    :data:`COLUMNS` per step (rows of finished envs are kept, with ``live`` False)."""
    obs, info = env.reset(seed=seed, options={"symbol": env_symbols})
    ts_ns = env.engine.market.ts_ns
    n = env.num_envs
    live = np.ones(n, dtype=bool)
    row = np.asarray(info["bar_row"])
    rec = _Recorder(n, _horizon(env, row, max_steps))
    no_value = np.full(n, np.nan, np.float32)
    zeros = np.zeros(n)
    for _ in range(max_steps):
        rec.put("observation_id", row)  # the bar the action is decided at (before a step may reuse it)
        step = policy.act(obs)
        obs, reward, terminated, truncated, info = env.step(step.actions)
        filled = np.asarray(info["bar_row"])
        rec.put("live", live)
        rec.put("ts_ns", ts_ns[filled])  # the bar the action was filled in
        actions = np.asarray(step.actions)
        rec.put("action", actions.reshape(n, -1)[:, 0] if actions.ndim > 1 else actions)
        rec.put("value", step.values if step.values is not None else no_value)
        rec.put("reward", np.asarray(reward, dtype=np.float64))
        for key in INFO_COLUMNS:
            value = info.get(key)
            rec.put(key, zeros if value is None else np.asarray(value, dtype=np.float64).reshape(n, -1).sum(-1))
        if step.action_probs is not None:
            rec.put("prob", step.action_probs)
        rec.next()
        row = filled
        live = live & ~(terminated | truncated)
        if not live.any():
            break
    else:
        raise RuntimeError(f"backtest still running after {max_steps} steps")
    return rec.columns(COLUMNS)
