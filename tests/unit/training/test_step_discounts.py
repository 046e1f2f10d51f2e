"""Semi-MDP discounts for steps that span several bars (``env.skip_forced_steps``)."""

from __future__ import annotations

import numpy as np
import pytest

from app.training.decision_gae import decision_value_targets, step_discounts


def test_discount_is_gamma_to_the_bars_a_step_spans():
    np.testing.assert_allclose(step_discounts([5, 6, 27, 28], 3, 0.9), [0.9, 0.9 ** 21, 0.9])
    # the artificial last step (a repeated row) and missing rows count one bar
    np.testing.assert_allclose(step_discounts([5, 6, 6], 2, 0.9), [0.9, 0.9])
    np.testing.assert_allclose(step_discounts([None, 4, 5], 2, 0.9), [0.9, 0.9])
    np.testing.assert_allclose(step_discounts(None, 3, 0.9), [0.9] * 3)


def test_per_step_gamma_enters_the_bootstrap_and_the_recursion():
    values = np.array([0.5, 1.0, 2.0])
    rewards = np.array([1.0, 0.0, 3.0])
    done = np.zeros(3)
    decisions = np.ones(3, dtype=bool)
    gammas = np.array([0.5, 0.9, 0.9])
    lam = 0.0  # one-step targets: r_t + g_t V(s_{t+1})
    targets = decision_value_targets(values, rewards, done, done, decisions, gammas, lam)
    assert targets[0] == pytest.approx(1.0 + 0.5 * 1.0)
    assert targets[1] == pytest.approx(0.0 + 0.9 * 2.0)
    # scalar gamma == the same gamma per step
    same = decision_value_targets(values, rewards, done, done, decisions, np.full(3, 0.9), 0.7)
    np.testing.assert_allclose(same, decision_value_targets(values, rewards, done, done, decisions, 0.9, 0.7))


def test_a_skipped_hold_is_discounted_like_its_bars():
    """A decision step spanning 21 bars (buy + 20-bar hold) bootstraps with gamma**21: the same
    weight the per-bar sequence (lambda 1 through the forced steps) gives the next decision's value."""
    gamma, hold = 0.99, 20
    v_next = 3.0
    # per bar: a buy step then `hold` forced steps with zero reward, then the next decision
    n = hold + 2
    values = np.zeros(n)
    values[-1] = v_next
    decisions = np.zeros(n, dtype=bool)
    decisions[0] = decisions[-1] = True
    zeros = np.zeros(n)
    per_bar = decision_value_targets(values, zeros, zeros, zeros, decisions, gamma, 0.5)
    skipped = decision_value_targets(np.array([0.0, v_next]), np.zeros(2), np.zeros(2), np.zeros(2),
                                     np.ones(2, dtype=bool), step_discounts([0, hold + 1, hold + 2], 2, gamma), 0.5)
    assert skipped[0] == pytest.approx(per_bar[0])
