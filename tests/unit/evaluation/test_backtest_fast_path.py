"""The backtest's fast loop (preallocated records, the policy in inference mode without RLlib's
per-call mode switching) gives the same records as the per-step path it replaced, bit for bit,
and the same trades as one env per symbol stepped on its own."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.evaluation.backtest import backtest
from app.policy.batched import BatchedPolicy, _torch_seeded, action_probabilities
from app.runs.env_factory import create_env
from envs import synthetic
from envs.core.market import MarketArrays
from tests.unit.serve.helpers import build_module

ENV_ID = "raytrade/SyntheticMeanReversion-v0"
LENGTHS = {"LONG": 60, "MID": 40, "SHORT": 25}  # ragged: finished envs keep stepping, not live


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    base = synthetic.generate("mean_reversion", seed=2, n_symbols=1, n_bars=60).market
    parts = [slice(60 - n, 60) for n in LENGTHS.values()]
    market = MarketArrays(tuple(LENGTHS), np.r_[0, np.cumsum(list(LENGTHS.values()))].astype(np.int64),
                          np.concatenate([base.ts_ns[p] for p in parts]),
                          np.concatenate([base.ohlcv[p] for p in parts]))
    return {"market": market, "index": None, "window_bars": 10, "episode_bars": 32}


@pytest.fixture(scope="module")
def modules(config) -> dict[str, Any]:
    return {"mlp": build_module(config, "mlp"), "gru": build_module(config, "gru", seed=1)}


def _previous_step(policy: BatchedPolicy, obs: dict[str, np.ndarray]):
    """``BatchedPolicy.act`` as it was: RLlib's public forward passes under ``no_grad``."""
    batch: dict[str, Any] = {"obs": {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in obs.items()}}
    if policy.stateful:
        batch["state_in"] = policy.state
    values = None
    with torch.no_grad():
        if policy.with_values:
            out = policy.module.forward_train(batch)
            values = policy.module.compute_values(batch, embeddings=out["embeddings"]).numpy()
        else:
            out = policy.module.forward_inference(batch)
    if policy.stateful:
        policy.state = {k: v.detach() for k, v in out["state_out"].items()}
    dist = policy._dist_cls.from_logits(out["action_dist_inputs"])
    if policy.greedy:
        actions = dist.to_deterministic().sample()
    else:
        with _torch_seeded(torch, policy._generator):
            actions = dist.sample()
    probs = action_probabilities(policy.action_space, out["action_dist_inputs"].numpy()).probs
    return actions.numpy(), probs, values


def _previous_backtest(module, config, *, greedy: bool, samples: int, with_values: bool, seed: int = 0):
    """The per-step loop the backtest ran before: lists of rows stacked at the end."""
    symbols = list(LENGTHS) * samples
    env = create_env(ENV_ID, config | {"num_envs": len(symbols), "episode_bars": None, "random_start": False,
                                       "vector_info": True})
    policy = BatchedPolicy(module, env.single_action_space, len(symbols), greedy=greedy, seed=seed,
                           with_values=with_values)
    obs, info = env.reset(seed=seed, options={"symbol": symbols})
    n, ts_ns = env.num_envs, env.engine.market.ts_ns
    live = np.ones(n, dtype=bool)
    rows: dict[str, list] = {k: [] for k in ("live", "ts_ns", "observation_id", "action", "value", "reward",
                                             "equity_usd", "position_qty", "fill_price_usd", "fee_usd",
                                             "funding_usd", "prob")}
    while live.any():
        row = np.asarray(info["bar_row"]).copy()
        actions, probs, values = _previous_step(policy, obs)
        obs, reward, terminated, truncated, info = env.step(actions)
        rows["live"].append(live.copy())
        rows["ts_ns"].append(ts_ns[np.asarray(info["bar_row"])])
        rows["observation_id"].append(row)
        rows["action"].append(actions)
        rows["value"].append(values if values is not None else np.full(n, np.nan, np.float32))
        rows["reward"].append(np.asarray(reward, dtype=np.float64))
        for key in ("equity_usd", "position_qty", "fill_price_usd", "fee_usd", "funding_usd"):
            value = info.get(key)
            rows[key].append(np.zeros(n) if value is None else np.asarray(value, dtype=np.float64))
        rows["prob"].append(probs)
        live &= ~(terminated | truncated)
    return {k: np.stack(v) for k, v in rows.items()}


@pytest.mark.parametrize(("name", "greedy", "samples", "with_values"), [
    ("mlp", True, 1, True), ("mlp", False, 2, False), ("gru", False, 2, True)])
def test_records_equal_the_previous_per_step_loop(modules, config, name, greedy, samples, with_values):
    module = modules[name]
    fast = backtest(module, ENV_ID, config, greedy=greedy, samples=samples, with_values=with_values)
    before = _previous_backtest(module, config, greedy=greedy, samples=samples, with_values=with_values)
    assert list(fast.columns) == list(before)  # same columns, same order
    for key, values in before.items():
        assert fast.columns[key].dtype == values.dtype, key
        np.testing.assert_array_equal(fast.columns[key], values, err_msg=key)
    assert len(np.unique(fast.columns["action"][fast.columns["live"]])) > 1  # the policy trades
    assert fast.decisions == sum(n - 10 for n in LENGTHS.values()) * samples


@pytest.mark.parametrize("name", ["mlp", "gru"])
def test_trades_equal_each_symbol_stepped_alone(modules, config, name):
    """One env per symbol, one forward pass per bar (batch of 1): the same trades and equity."""
    module = modules[name]
    table = backtest(module, ENV_ID, config, with_values=False).to_table().to_pandas()
    for symbol in LENGTHS:
        env = create_env(ENV_ID, config | {"num_envs": 1, "episode_bars": None, "random_start": False,
                                           "vector_info": True})
        policy = BatchedPolicy(module, env.single_action_space, 1)
        obs, _ = env.reset(seed=0, options={"symbol": [symbol]})
        actions, equity, done = [], [], False
        while not done:
            step = policy.act(obs)
            obs, _, terminated, truncated, info = env.step(step.actions)
            actions.append(int(step.actions[0]))
            equity.append(float(info["equity_usd"][0]))
            done = bool(terminated[0] or truncated[0])
        rows = table[table.symbol == symbol]
        assert rows.action.tolist() == actions
        np.testing.assert_array_equal(rows.equity_usd.to_numpy(), equity)


def test_a_module_left_in_train_mode_is_run_in_eval_mode_and_left_as_it_was(modules, config):
    module = modules["mlp"]
    env = create_env(ENV_ID, config | {"num_envs": 3, "episode_bars": None, "random_start": False})
    obs, _ = env.reset(seed=0)
    policy = BatchedPolicy(module, env.single_action_space, 3, with_values=True)
    evaluated, _ = policy.step(obs)
    module.train()
    try:
        trained, _ = policy.step(obs)
        assert module.training
    finally:
        module.eval()
    np.testing.assert_array_equal(evaluated.dist_inputs, trained.dist_inputs)
    np.testing.assert_array_equal(evaluated.values, trained.values)
