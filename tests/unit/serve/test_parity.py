"""Parity: for the same bars, the service builds the env's observation and returns the action,
probabilities and value of the env-driven policy and of the backtest engine.

* env-driven: the single-env face stepped by :class:`BatchedPolicy` (greedy, recurrent state
  carried), recording each step's bar row, observation, action, probabilities and value;
* backtest: :func:`app.evaluation.backtest.backtest` records (observation_id = the row the policy
  saw), for the same symbols;
* service: ``/v1/act``'s logic (:meth:`PolicyService.act`) on the bars up to that row and the
  position the env had there: stateless (MLP), a session stepped bar by bar, or a window replay (GRU).

The observation includes the ``action_mask`` (the client sends only its position; the builder
derives the mask), so masked policies agree everywhere too, and a module trained without a mask
gets none anywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.evaluation.backtest import backtest
from app.policy.batched import BatchedPolicy
from app.runs.env_factory import create_env
from envs.core.observation import ACTION_MASK_KEY, build_observation
from serve.schemas import ActRequest
from tests.unit.serve.helpers import (
    ENV_ID,
    WINDOW,
    act_body,
    build_module,
    make_service,
    series_upto,
)

BUY_ONLY_ID = "raytrade/StockSwing-v0"


def env_driven(module: Any, env_config: dict, symbol: str, env_id: str = ENV_ID) -> list[dict]:
    env = create_env(env_id, env_config | {"episode_bars": None, "random_start": False})
    policy = BatchedPolicy(module, env.action_space, 1, greedy=True, with_values=True)
    obs, info = env.reset(seed=0, options={"symbol": symbol})
    steps = []
    while True:
        step = policy.act({k: np.asarray(v)[None] for k, v in obs.items()})
        action = int(step.actions[0])
        steps.append({"row": int(info["bar_row"]), "obs": {k: np.array(v) for k, v in obs.items()},
                      "action": action, "probs": step.action_probs[0].copy(), "value": float(step.values[0])})
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return steps


def backtest_records(module: Any, env_config: dict, env_id: str = ENV_ID) -> dict[tuple[str, int], dict]:
    table = backtest(module, env_id, env_config, with_values=True).to_table().to_pandas()
    probs = sorted(c for c in table.columns if c.startswith("prob_"))
    return {(r.symbol, int(r.observation_id)): {"action": int(r.action), "value": float(r.value),
                                                 "probs": np.array([getattr(r, c) for c in probs])}
            for r in table.itertuples()}


def position(step: dict) -> tuple[bool, int]:
    return bool(step["obs"]["owned"][0] > 0), int(step["obs"]["bars_held"][0])


def request(synth, symbol: str, step: dict, **extra: Any) -> ActRequest:
    owned, held = position(step)
    return ActRequest.model_validate(act_body(synth, symbol, step["row"], owned, held, **extra))


def assert_same(got: Any, expected: dict, where: str, rtol: float = 1e-6) -> None:
    """Same action; probabilities and value equal to float32 rounding (``rtol``)."""
    if not isinstance(got, dict):
        got = {"action": got.action, "probs": got.action_probs, "value": got.value}
    assert got["action"] == expected["action"], where
    np.testing.assert_allclose(got["probs"], expected["probs"], rtol=rtol, atol=1e-7, err_msg=where)
    assert got["value"] == pytest.approx(expected["value"], rel=rtol, abs=1e-6), where


BATCHED = 1e-4  # the backtest runs both symbols in one batch: float32 sums in another order


@pytest.mark.parametrize("symbol", ["SYN0", "SYN1"])
def test_the_observation_is_the_envs_at_every_bar(synth, env_config, mlp, symbol):
    service = make_service(mlp, env_config)
    for step in env_driven(mlp, env_config, symbol):
        obs = service.prepare(request(synth, symbol, step)).decisions[0].obs
        assert obs.keys() == step["obs"].keys()
        for key, value in step["obs"].items():
            np.testing.assert_array_equal(obs[key][0], value, err_msg=f"{key} at row {step['row']}")


def test_mlp_actions_match_the_env_driven_policy_and_the_backtest(synth, env_config, mlp):
    service = make_service(mlp, env_config)
    records = backtest_records(mlp, env_config)
    for symbol in ("SYN0", "SYN1"):
        steps = env_driven(mlp, env_config, symbol)
        assert len(steps) > 250 and len({s["action"] for s in steps}) > 1  # a policy that acts
        for step in steps:
            where = f"{symbol} row {step['row']}"
            assert_same(records[(symbol, step["row"])], step, where, BATCHED)  # backtest == env-driven
            decision = service.act(request(synth, symbol, step)).decisions[0]
            assert decision.mode == "stateless" and decision.ts_ns == int(synth.market.ts_ns[step["row"]])
            assert_same(decision, step, where)


def test_gru_session_matches_the_env_driven_policy_and_the_backtest(synth, env_config, gru):
    service = make_service(gru, env_config)
    records = backtest_records(gru, env_config)
    for symbol in ("SYN0", "SYN1"):
        for k, step in enumerate(env_driven(gru, env_config, symbol)):
            where = f"{symbol} row {step['row']}"
            assert_same(records[(symbol, step["row"])], step, where, BATCHED)
            decision = service.act(request(synth, symbol, step, session_id="parity")).decisions[0]
            assert (decision.mode, decision.session_step) == ("session", k + 1)
            assert_same(decision, step, where)


def test_gru_window_replay_matches_the_env_driven_policy(synth, env_config, gru):
    service = make_service(gru, env_config)
    steps = env_driven(gru, env_config, "SYN1")
    for k in (0, 5, 37, 120):  # replay from the backtest's first bar, with the positions it had
        history = [dict(zip(("owned", "bars_held"), position(s), strict=True)) for s in steps[:k]]
        body = act_body(synth, "SYN1", steps[k]["row"], *position(steps[k]), replay_bars=k + 1)
        body["symbols"][0]["position_history"] = history
        decision = service.act(ActRequest.model_validate(body)).decisions[0]
        assert (decision.mode, decision.replayed_bars) == ("replay", k + 1)
        assert_same(decision, steps[k], f"replay of {k + 1} bars")


def test_replay_rows_are_build_observation_on_the_bars_up_to_each_row(synth, env_config, gru):
    service = make_service(gru, env_config)
    row = int(synth.market.offsets[1]) - 40
    body = act_body(synth, "SYN0", row, True, 3, replay_bars=6)
    obs = service.prepare(ActRequest.model_validate(body)).decisions[0].obs
    ts, ohlcv = series_upto(synth.market, "SYN0", row)
    held = [0, 0, 0, 1, 2, 3]  # derived: held 3 bars, flat before
    for j in range(6):
        n = len(ts) - 5 + j
        known = synth.index.ts_ns <= ts[n - 1]
        expected = build_observation(ts[:n], ohlcv[:n], spec=service.view.observation, index_ts_ns=synth.index.ts_ns[known],
                                     index_ohlc=synth.index.ohlcv[known], owned=held[j] > 0, bars_held=held[j])
        for key, value in expected.items():
            np.testing.assert_array_equal(obs[key][j], value, err_msg=f"{key} step {j}")


def test_a_window_of_complete_periods_gives_the_envs_observation(synth, env_config, mlp):
    """Recent bars only (as a live client sends), covering every observed month completely."""
    service = make_service(mlp, env_config)
    steps = env_driven(mlp, env_config, "SYN0")
    step = steps[-20]
    owned, held = position(step)
    body = act_body(synth, "SYN0", step["row"], owned, held, require_full_history=True)
    bars = body["symbols"][0]["bars"]
    body["symbols"][0]["bars"] = {k: v[-260:] for k, v in bars.items()}  # 12 months of business days
    decision = service.prepare(ActRequest.model_validate(body)).decisions[0]
    assert decision.full_history
    for key, value in step["obs"].items():
        np.testing.assert_array_equal(decision.obs[key][0], value, err_msg=key)
    body["symbols"][0]["bars"] = {k: v[-120:] for k, v in bars.items()}  # 6 months: not enough
    with pytest.raises(Exception, match="require_full_history"):
        service.prepare(ActRequest.model_validate(body))
    assert WINDOW == 10


def test_buy_only_forced_holds_are_masked_alike_in_env_backtest_and_serve(synth, env_config):
    """buy_only: every bar of a hold is forced (buy is ignored): the mask says so in the env, the
    backtest and Serve, the policy gives buy probability exactly 0 there, and the observation
    (mask included) and action agree everywhere."""
    config = env_config | {"mode": "buy_only", "horizon_bars": 4}
    module = build_module(config, "mlp", env_id=BUY_ONLY_ID, seed=2)
    service = make_service(module, config, env_id=BUY_ONLY_ID)
    assert service.view.fields[ACTION_MASK_KEY] == (2,)
    records = backtest_records(module, config, BUY_ONLY_ID)
    forced = 0
    for symbol in ("SYN0", "SYN1"):
        steps = env_driven(module, config, symbol, BUY_ONLY_ID)
        assert len({s["action"] for s in steps}) > 1
        for step in steps:
            where = f"{symbol} row {step['row']}"
            mask = step["obs"][ACTION_MASK_KEY]
            assert mask.tolist() == ([1.0, 0.0] if step["obs"]["owned"][0] else [1.0, 1.0]), where
            assert (step["probs"][mask == 0] == 0).all(), where
            forced += int(mask[1] == 0)
            served = service.prepare(request(synth, symbol, step)).decisions[0].obs
            assert served.keys() == step["obs"].keys()
            for key, value in step["obs"].items():
                np.testing.assert_array_equal(served[key][0], value, err_msg=f"{key} at {where}")
            assert_same(records[(symbol, step["row"])], step, where, BATCHED)
            assert_same(service.act(request(synth, symbol, step)).decisions[0], step, where)
    assert forced > 20


def test_a_module_trained_without_a_mask_gets_none_in_backtest_and_serve(synth, env_config):
    """An old module (no mask in its observation space) whose experiment.yaml predates the
    option: the env now observes a mask by default, the backtest's policy drops it, Serve
    builds none; both act as the env without a mask does."""
    old = env_config | {"action_mask": False}
    module = build_module(old, "mlp", seed=3)
    assert ACTION_MASK_KEY not in module.observation_space.spaces
    service = make_service(module, env_config)
    assert ACTION_MASK_KEY not in service.view.fields
    records = backtest_records(module, env_config)
    for symbol in ("SYN0", "SYN1"):
        for step in env_driven(module, old, symbol):
            where = f"{symbol} row {step['row']}"
            assert_same(records[(symbol, step["row"])], step, where, BATCHED)
            assert_same(service.act(request(synth, symbol, step)).decisions[0], step, where)
