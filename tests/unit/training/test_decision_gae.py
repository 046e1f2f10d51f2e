"""Decision-level GAE: equal to RLlib's GAE without forced steps; no bootstrapping into holds."""

from __future__ import annotations

import numpy as np
import pytest
from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets

from app.training.decision_gae import (
    decision_steps,
    decision_value_targets,
    standardize_decisions,
)


def _random_sequence(rng: np.random.Generator, n: int):
    values = rng.normal(size=n).astype(np.float32)
    rewards = rng.normal(size=n).astype(np.float32)
    terminateds = np.zeros(n, dtype=np.float32)
    truncateds = np.zeros(n, dtype=np.float32)
    cut = rng.choice(n - 1, size=3, replace=False)
    truncateds[cut[:2]] = 1.0
    terminateds[cut[2]] = 1.0
    truncateds[-1] = 1.0
    return values, rewards, terminateds, truncateds


@pytest.mark.parametrize("lambda_", [0.0, 0.5, 0.95, 1.0])
def test_every_step_a_decision_is_rllibs_gae(lambda_: float) -> None:
    rng = np.random.default_rng(0)
    values, rewards, terminateds, truncateds = _random_sequence(rng, 60)
    ours = decision_value_targets(values, rewards, terminateds, truncateds, np.ones(60, bool), 0.97, lambda_)
    theirs = compute_value_targets(values, rewards, terminateds, truncateds, gamma=0.97, lambda_=lambda_)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_a_decision_return_runs_through_the_hold_without_its_values() -> None:
    # step 0: buy (decision); steps 1..3: forced hold; step 4: next decision; episode truncated at 4
    rewards = np.array([-0.01, 0.02, 0.03, 0.04, 0.0])
    decisions = np.array([True, False, False, False, True])
    gamma, lam = 0.9, 0.0  # lambda 0: pure one-step TD at decisions
    hold_values_a = np.array([0.5, 7.0, -3.0, 11.0, 0.2])
    hold_values_b = np.array([0.5, -9.0, 4.0, 0.0, 0.2])
    done = np.zeros(5)
    trunc = np.array([0, 0, 0, 0, 1.0])
    a = decision_value_targets(hold_values_a, rewards, done, trunc, decisions, gamma, lam)
    b = decision_value_targets(hold_values_b, rewards, done, trunc, decisions, gamma, lam)
    expected = -0.01 + gamma * 0.02 + gamma**2 * 0.03 + gamma**3 * 0.04 + gamma**4 * 0.2
    assert a[0] == pytest.approx(expected, rel=1e-6)
    assert b[0] == pytest.approx(expected, rel=1e-6)  # the hold's value estimates do not matter
    # plain GAE with lambda 0 would bootstrap from V at step 1 instead
    plain = compute_value_targets(hold_values_a, rewards, done, trunc, gamma=gamma, lambda_=lam)
    assert plain[0] == pytest.approx(-0.01 + gamma * 7.0, rel=1e-6)


def test_decisions_do_not_bootstrap_across_a_terminal() -> None:
    rewards = np.array([1.0, 2.0, 3.0])
    decisions = np.array([True, False, True])
    targets = decision_value_targets(np.array([0.0, 5.0, 9.0]), rewards, np.array([0, 1.0, 0]),
                                     np.array([0, 0, 1.0]), decisions, 0.5, 0.0)
    assert targets[0] == pytest.approx(1.0 + 0.5 * 2.0)  # through the forced step, stops at the end
    assert targets[1] == pytest.approx(2.0)


def test_decision_steps_from_the_mask() -> None:
    mask = np.array([[1, 1], [1, 0], [1, 0], [1, 1]], dtype=np.float32)
    assert decision_steps(mask, 4).tolist() == [True, False, False, True]
    assert decision_steps(None, 3).tolist() == [True, True, True]
    swing = np.array([[1, 1, 0], [1, 0, 1]])
    assert decision_steps(swing, 2).tolist() == [True, True]


def test_standardization_uses_decisions_only() -> None:
    adv = np.array([1.0, 100.0, 3.0, -50.0, 5.0])
    decisions = np.array([True, False, True, False, True])
    valid = np.array([True, True, True, True, False])
    out = standardize_decisions(adv, decisions, valid)
    assert out[1] == 0.0 and out[3] == 0.0
    # mean/std of the valid decisions (1, 3): 2 and 1
    assert out[0] == pytest.approx(-1.0) and out[2] == pytest.approx(1.0) and out[4] == pytest.approx(3.0)
    assert not standardize_decisions(adv, np.zeros(5, bool), valid).any()
