"""PBO's median rank: with N discrete ranks a skill-less selection must give 0.5, not (N+1)/(2N)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.evaluation.stats import pbo_cscv
from app.tuning.overfitting import TrialReturns, sweep_statistics


def test_a_median_out_of_sample_rank_counts_one_half():
    # T = 4, N = 3, S = 2, metric = mean. Block means: A = (2, 1), B = (0, 2), C = (1, 0).
    # In-sample block 0 -> best A; out of sample (block 1) A = 1 ranks 2 of 3: w = 1/2, logit 0.
    # In-sample block 1 -> best B; out of sample (block 0) B = 0 ranks 1 of 3: logit < 0.
    perf = np.array([[2.0, 0, 1], [2.0, 0, 1], [1.0, 2, 0], [1.0, 2, 0]])
    out = pbo_cscv(perf, n_blocks=2, metric="mean")
    np.testing.assert_allclose(out.logits, [0.0, math.log(0.25 / 0.75)], atol=1e-12)
    assert out.pbo == pytest.approx((0.5 + 1.0) / 2)  # was (1 + 1) / 2 with logit <= 0


@pytest.mark.parametrize("n_trials", [3, 5])
def test_skill_less_odd_trials_give_one_half_not_n_plus_one_over_2n(n_trials):
    rng = np.random.default_rng(n_trials)
    pbos = [pbo_cscv(rng.normal(0, 0.01, (160, n_trials)), n_blocks=8).pbo for _ in range(150)]
    assert np.mean(pbos) == pytest.approx(0.5, abs=0.04)
    assert abs(np.mean(pbos) - (n_trials + 1) / (2 * n_trials)) > 0.05  # 0.67 for 3 before


def test_three_skill_less_trials_of_a_sweep_are_not_two_thirds_overfit():
    rng = np.random.default_rng(0)
    values = []
    for _ in range(20):
        trials = {f"t{i}": TrialReturns(f"t{i}", [rng.normal(0, 0.01, 64) for _ in range(4)], "cfg")
                  for i in range(3)}
        values.append(sweep_statistics(trials, "t0", n_trials=3)["pbo"].value)
    assert np.mean(values) == pytest.approx(0.5, abs=0.08)
