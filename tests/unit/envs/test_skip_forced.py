"""``skip_forced`` (envs/vector.py): one step per decision, the skipped bars' rewards summed.

The same decisions (a rule on the bar row, so both runs decide alike) give the same first
episode with and without skipping: total reward (the PnL), final equity and fees; with skipping
every observation returned mid-episode is a real decision (two allowed actions).
"""

from __future__ import annotations

import numpy as np
import pytest

from app.runs.env_factory import create_env
from envs.vector import check_skip_forced

CFG = {"synthetic": "rare_event", "market_seed": 3, "synthetic_params": {"n_symbols": 6, "n_bars": 700},
       "mode": "buy_only", "horizon_bars": 20, "reward": "excess_horizon", "episode_bars": 120,
       "buy_penalty": 0.003, "fee_bps": 10.0, "slippage_bps": 5.0}
B = 5


def rule(rows: np.ndarray) -> np.ndarray:
    """Buy (1) on about 3 bars in 7, a fixed function of the bar row."""
    return ((np.asarray(rows, dtype=np.int64) * 2654435761) % 7 < 3).astype(np.int64)


def first_episodes(skip: bool, num_envs: int = B, config: dict | None = None) -> dict[str, np.ndarray]:
    env = create_env("raytrade/StockSwing-v0", (config or CFG) | {"num_envs": num_envs})
    env.skip_forced = check_skip_forced(env.engine, skip)
    obs, info = env.reset(seed=11)
    total = np.zeros(num_envs)
    steps = np.zeros(num_envs, dtype=int)
    done = np.zeros(num_envs, dtype=bool)
    equity = np.zeros(num_envs)
    fees = np.zeros(num_envs)
    decisions_ok = True
    while not done.all():
        obs, reward, term, trunc, info = env.step(rule(info["bar_row"]))
        live = ~done
        total[live] += reward[live]
        steps[live] += 1
        ended = live & (term | trunc)
        equity[ended], fees[ended] = info["equity_usd"][ended], info["fees_paid_usd"][ended]
        going = live & ~ended
        if skip and going.any():
            decisions_ok &= bool((obs["action_mask"][going].sum(axis=1) == 2).all())
        done |= ended
    return {"total": total, "steps": steps, "equity": equity, "fees": fees, "decisions_ok": decisions_ok}


def test_skipping_keeps_every_episode_pnl_and_returns_only_decisions():
    plain, skipped = first_episodes(False), first_episodes(True)
    np.testing.assert_allclose(skipped["total"], plain["total"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(skipped["equity"], plain["equity"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(skipped["fees"], plain["fees"], rtol=0, atol=1e-9)
    assert (plain["steps"] == CFG["episode_bars"]).all()
    assert (skipped["steps"] < plain["steps"]).all()  # the rule buys: holds are skipped
    assert skipped["decisions_ok"]
    assert (plain["fees"] > 0).all()  # trades happened


def test_skipping_in_swing_mode_changes_nothing():
    """Swing mode has no forced step (hold and sell are both allowed while owned)."""
    cfg = CFG | {"mode": "swing", "reward": "log_return"}
    plain, skipped = first_episodes(False, config=cfg), first_episodes(True, config=cfg)
    np.testing.assert_array_equal(skipped["steps"], plain["steps"])
    np.testing.assert_allclose(skipped["total"], plain["total"], rtol=0, atol=0)


def test_single_face_skips_like_the_vector_face():
    env = create_env("raytrade/StockSwing-v0", CFG)
    env.unwrapped.skip_forced = check_skip_forced(env.unwrapped.engine, True)
    obs, info = env.reset(seed=11)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, term, trunc, info = env.step(int(rule([info["bar_row"]])[0]))
        total, steps, done = total + reward, steps + 1, term or trunc
        if not done:
            assert np.count_nonzero(obs["action_mask"]) == 2
    one = first_episodes(True, num_envs=1)
    assert steps == one["steps"][0]
    assert total == pytest.approx(one["total"][0], abs=1e-12)


def test_skip_needs_an_action_mask():
    env = create_env("raytrade/StockSwing-v0", CFG | {"num_envs": 2, "action_mask": False})
    with pytest.raises(ValueError, match="action_mask"):
        check_skip_forced(env.engine, True)
    assert check_skip_forced(env.engine, False) is False
