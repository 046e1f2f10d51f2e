"""PBO and DSR of a sweep from the trials' validation returns: values when they mean something,
n/a with the reason otherwise."""

from __future__ import annotations

import numpy as np

from app.tuning.overfitting import TrialReturns, aligned_matrix, n_blocks_for, sweep_statistics


def trial(name: str, episodes: list[np.ndarray], env: str = "cfg") -> TrialReturns:
    return TrialReturns(name, [np.asarray(e, dtype=float) for e in episodes], env)


def noise(seed: int, n: int = 4, bars: int = 64, drift: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(drift, 0.01, bars) for _ in range(n)]


def test_episodes_that_end_early_are_padded_flat_so_rows_align():
    a = trial("a", [[0.1, 0.2, 0.3], [0.5]])
    b = trial("b", [[0.1], [0.5, 0.6]])
    m = aligned_matrix([a, b])
    assert m.shape == (5, 2)
    assert m[:, 0].tolist() == [0.1, 0.2, 0.3, 0.5, 0.0] and m[:, 1].tolist() == [0.1, 0.0, 0.0, 0.5, 0.6]


def test_block_count_is_even_and_has_enough_bars():
    assert n_blocks_for(256) == 16 and n_blocks_for(40) == 10 and n_blocks_for(44) == 10
    assert n_blocks_for(15) == 0


def test_skill_less_trials_give_a_pbo_near_one_half_and_a_low_dsr():
    trials = {f"t{i}": trial(f"t{i}", noise(i)) for i in range(10)}
    best = max(trials, key=lambda k: trials[k].sharpe_per_bar)
    stats = sweep_statistics(trials, best, n_trials=10)
    assert 0.2 <= stats["pbo"].value <= 0.8
    assert stats["pbo"].details["trials"] == 10 and stats["pbo"].details["bars"] == 256
    assert stats["dsr"].value < 0.9 and stats["dsr"].details["n_trials"] == 10


def test_a_dominant_trial_has_a_low_pbo_and_a_high_dsr():
    trials = {f"t{i}": trial(f"t{i}", noise(i)) for i in range(6)}
    trials["star"] = trial("star", noise(99, drift=0.01))
    stats = sweep_statistics(trials, "star", n_trials=7)
    assert stats["pbo"].value < 0.1 and stats["dsr"].value > 0.95


def test_not_computable_cases_say_why():
    one = {"a": trial("a", noise(1))}
    assert "needs >= 2 trials" in sweep_statistics(one, "a", 1)["pbo"].reason
    assert "needs the Sharpe of >= 2 trials" in sweep_statistics(one, "a", 1)["dsr"].reason
    flat = {k: trial(k, [np.zeros(64)] * 4) for k in ("a", "b")}
    stats = sweep_statistics(flat, "a", 2)
    assert "identical" in stats["pbo"].reason and "never trade" in stats["dsr"].reason
    assert stats["pbo"].text().startswith("n/a (")
    differ = {"a": trial("a", noise(1), env="x"), "b": trial("b", noise(2), env="y")}
    assert "different env configs" in sweep_statistics(differ, "a", 2)["pbo"].reason
    short = {k: trial(k, noise(i, n=1, bars=10)) for i, k in enumerate("ab")}
    assert "too few" in sweep_statistics(short, "a", 2)["pbo"].reason
    assert sweep_statistics(short, None, 2)["dsr"].reason == "no best policy to evaluate"
