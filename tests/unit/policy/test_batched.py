"""The policy layer: explicit state in/out equals carried state, and the action distribution
is reported for every action space."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from app.policy.batched import BatchedPolicy, action_probabilities
from app.runs.env_factory import create_env
from tests.unit.serve.helpers import ENV_ID


def _observations(env_config, n_envs: int, n_steps: int, seed: int = 3):
    env = create_env(ENV_ID, env_config | {"num_envs": n_envs})
    obs, _ = env.reset(seed=seed)
    out = []
    rng = np.random.default_rng(seed)
    for _ in range(n_steps):
        out.append(obs)
        obs, *_ = env.step(rng.integers(0, env.single_action_space.n, n_envs))
    return env, out


@pytest.mark.parametrize("name", ["mlp", "gru"])
def test_explicit_state_equals_carried_state(name, request, env_config):
    module = request.getfixturevalue(name)
    env, steps = _observations(env_config, n_envs=3, n_steps=6)
    carried = BatchedPolicy(module, env.single_action_space, 3, greedy=True)
    explicit = BatchedPolicy(module, env.single_action_space, 3, greedy=True)
    per_row: list = [None, None, None]  # one state per env, persisted per row as a trader would
    for obs in steps:
        a = carried.act(obs)
        b, state = explicit.step(obs, explicit.stack_states(per_row))
        per_row = explicit.split_state(state, 3)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_allclose(a.dist_inputs, b.dist_inputs, rtol=0, atol=1e-6)
    assert explicit.stateful == (name == "gru")


def test_gru_state_matters_and_initial_state_is_the_default(gru, env_config):
    env, steps = _observations(env_config, n_envs=2, n_steps=8)
    policy = BatchedPolicy(gru, env.single_action_space, 2)
    state = None
    for obs in steps[:-1]:
        _, state = policy.step(obs, state)
    warm, _ = policy.step(steps[-1], state)
    cold, _ = policy.step(steps[-1], None)
    cold_explicit, _ = policy.step(steps[-1], policy.initial_states(2))
    np.testing.assert_array_equal(cold.dist_inputs, cold_explicit.dist_inputs)
    assert not np.allclose(warm.dist_inputs, cold.dist_inputs)  # the GRU remembers the history


def test_probabilities_for_every_action_space():
    logits = np.array([[0.0, np.log(3.0)], [5.0, 5.0]])
    d = action_probabilities(gym.spaces.Discrete(2), logits)
    np.testing.assert_allclose(d.probs, [[0.25, 0.75], [0.5, 0.5]])
    assert d.row(0) == pytest.approx([0.25, 0.75])

    multi = action_probabilities(gym.spaces.MultiDiscrete([2, 3]),
                                 np.array([[0.0, 0.0, 0.0, 0.0, np.log(2.0)]]))
    assert [c.shape for c in multi.components] == [(1, 2), (1, 3)]
    np.testing.assert_allclose(multi.components[1][0], [0.25, 0.25, 0.5])
    assert multi.probs is None and len(multi.row(0)) == 2

    box = action_probabilities(gym.spaces.Box(-1.0, 1.0, (2,)), np.array([[0.1, -0.2, 0.0, np.log(0.5)]]))
    np.testing.assert_allclose(box.mean, [[0.1, -0.2]])
    np.testing.assert_allclose(box.std, [[1.0, 0.5]])
    assert box.row(0) == {"mean": pytest.approx([0.1, -0.2]), "std": pytest.approx([1.0, 0.5])}


def test_extreme_logits_stay_finite():
    d = action_probabilities(gym.spaces.Discrete(3), np.array([[1e30, -1e30, 0.0]]))
    assert np.isfinite(d.probs).all() and d.probs[0, 0] == pytest.approx(1.0)
