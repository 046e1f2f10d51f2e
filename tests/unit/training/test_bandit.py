"""The sliding-window UCB bandit of Agent57's meta-controller (app/training/bandit.py)."""

from __future__ import annotations

import numpy as np
import pytest

from app.training.bandit import SlidingWindowUCB


def play(bandit: SlidingWindowUCB, means: list[float], steps: int, rng: np.random.Generator,
         kind: str = "bernoulli", noise: float = 1.0) -> list[int]:
    arms = []
    for _ in range(steps):
        arm = bandit.select()
        mean = means[arm]
        reward = float(rng.random() < mean) if kind == "bernoulli" else float(rng.normal(mean, noise))
        bandit.update(arm, reward)
        arms.append(arm)
    return arms


@pytest.mark.parametrize("kind", ["bernoulli", "normal"])
@pytest.mark.parametrize("normalize", [True, False])
def test_converges_to_the_best_arm_on_a_stationary_problem(kind, normalize):
    means = [0.2, 0.5, 0.8, 0.35] if kind == "bernoulli" else [0.0, 0.3, 1.0, 0.5]
    bandit = SlidingWindowUCB(4, window=160, c=1.0, seed=0, epsilon=0.0, normalize=normalize)
    arms = play(bandit, means, 2000, np.random.default_rng(1), kind)
    late = np.bincount(arms[-500:], minlength=4) / 500
    assert late.argmax() == 2 and late[2] > 0.6, late
    assert bandit.greedy_arm() == 2


def test_epsilon_explores_uniformly_on_top_of_ucb():
    """With epsilon 0.5 the best arm is pulled about 0.5 + 0.5/4 of the time, the others about
    0.5/4 each (what a pure UCB would never do once the gap is clear)."""
    bandit = SlidingWindowUCB(4, window=160, c=1.0, seed=3, epsilon=0.5)
    arms = play(bandit, [0.0, 0.0, 1.0, 0.0], 4000, np.random.default_rng(2), "normal", noise=0.1)
    frac = np.bincount(arms[-3000:], minlength=4) / 3000
    assert frac[2] == pytest.approx(0.625, abs=0.04)
    assert np.all(np.abs(np.delete(frac, 2) - 0.125) < 0.03), frac


@pytest.mark.parametrize(("window", "adapts"), [(100, True), (10**6, False)])
def test_readapts_after_the_best_arm_changes(window, adapts):
    """The sliding window forgets: when the long-time best arm drops below another one, the new
    best dominates within a few windows; with an all-time window (plain UCB) the old arm's long
    history keeps it on top far longer (the control that shows the window does the work)."""
    bandit = SlidingWindowUCB(3, window=window, c=1.0, seed=0, epsilon=0.0)
    rng = np.random.default_rng(5)
    before = play(bandit, [1.0, 0.0, 0.0], 1000, rng, "normal", noise=0.1)
    assert np.bincount(before[-200:], minlength=3).argmax() == 0
    after = play(bandit, [0.5, 0.0, 0.8], 400, rng, "normal", noise=0.1)
    late = np.bincount(after[-200:], minlength=3) / 200
    if adapts:
        assert late[2] > 0.9 and bandit.greedy_arm() == 2, late
    else:
        assert late[0] > 0.9, late


def test_untried_arms_are_pulled_first_in_order_even_before_any_reward():
    bandit = SlidingWindowUCB(4, window=10, c=1.0, seed=0, epsilon=1.0)  # epsilon=1: all random after
    assert [bandit.select() for _ in range(4)] == [0, 1, 2, 3]


def test_an_arm_absent_from_the_window_is_pulled_again():
    bandit = SlidingWindowUCB(2, window=5, c=0.0, seed=0, epsilon=0.0)
    bandit.update(1, 0.0)
    for _ in range(5):
        bandit.update(0, 1.0)  # arm 1's outcome leaves the window
    assert bandit.counts().tolist() == [5, 0]
    assert bandit.select() == 1


def test_windowed_values_and_counts():
    bandit = SlidingWindowUCB(3, window=4, c=1.0, seed=0)
    for arm, reward in [(0, 10.0), (0, 1.0), (1, 2.0), (1, 4.0), (0, 3.0)]:
        bandit.update(arm, reward)
    assert bandit.counts().tolist() == [2, 2, 0]  # (0, 10.0) left the window
    values = bandit.values()
    assert values[0] == pytest.approx(2.0) and values[1] == pytest.approx(3.0) and np.isnan(values[2])
    assert bandit.t == 5 and np.isinf(bandit.scores()[2])


def test_ucb_bonus_follows_the_formula():
    bandit = SlidingWindowUCB(2, window=100, c=2.0, seed=0, normalize=False)
    for arm, reward in [(0, 1.0), (0, 3.0), (1, 0.5)]:
        bandit.update(arm, reward)
    log_t = np.log(3)
    assert bandit.scores() == pytest.approx([2.0 + 2.0 * np.sqrt(log_t / 2), 0.5 + 2.0 * np.sqrt(log_t / 1)])


def test_normalize_makes_the_choice_independent_of_the_reward_scale():
    def choices(scale: float) -> list[int]:
        bandit = SlidingWindowUCB(3, window=50, c=1.0, seed=7, epsilon=0.2)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(300):
            arm = bandit.select()
            bandit.update(arm, scale * rng.normal([0.0, 0.5, 1.0][arm]))
            out.append(arm)
        return out

    assert choices(1.0) == choices(0.01) == choices(100.0)


def test_same_seed_same_choices_other_seed_other_choices():
    def run(seed: int) -> list[int]:
        return play(SlidingWindowUCB(4, window=20, c=1.0, seed=seed), [0.5] * 4, 300, np.random.default_rng(0))

    assert run(11) == run(11)
    assert run(11) != run(12)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_arms": 0}, "n_arms"), ({"window": 0}, "window"), ({"c": -1.0}, "c must"),
    ({"epsilon": 1.5}, "epsilon"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SlidingWindowUCB(**({"n_arms": 2} | kwargs))


def test_bad_updates_are_refused():
    bandit = SlidingWindowUCB(2)
    with pytest.raises(ValueError, match="out of range"):
        bandit.update(2, 0.0)
    with pytest.raises(ValueError, match="finite"):
        bandit.update(0, float("nan"))
