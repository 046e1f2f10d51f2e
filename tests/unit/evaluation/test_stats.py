"""Bootstrap CIs, seed combination, PBO (CSCV) and the probabilistic / deflated Sharpe ratio."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from app.evaluation import stats as s

# --- bootstrap -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["iid", "stationary", "block"])
def test_bootstrap_is_deterministic_for_a_seed(method):
    a = s.bootstrap_indices(50, 20, 7, method, 5)
    assert np.array_equal(a, s.bootstrap_indices(50, 20, np.random.default_rng(7), method, 5))
    assert not np.array_equal(a, s.bootstrap_indices(50, 20, 8, method, 5))
    assert a.shape == (20, 50) and a.min() >= 0 and a.max() < 50


def test_block_bootstraps_keep_runs_of_consecutive_bars():
    n, block = 1000, 10
    idx = s.block_bootstrap_indices(n, 50, block, 0)
    steps = (np.diff(idx, axis=1) % n == 1).reshape(-1)
    assert steps.mean() == pytest.approx((block - 1) / block, abs=0.02)  # breaks every 10 bars
    idx = s.stationary_bootstrap_indices(n, 200, 20.0, 1)
    new_blocks = (np.diff(idx, axis=1) % n != 1).mean()
    assert new_blocks == pytest.approx(1 / 20, rel=0.1)  # geometric blocks of mean 20


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40),
       st.integers(0, 2**32 - 1))
def test_ci_of_the_mean_contains_the_point(values, seed):
    data = np.array(values)
    ci = s.bootstrap_ci(data, np.mean, rng=seed, n_boot=400)
    tol = 1e-9 * (1 + np.abs(data).max())
    assert ci.low - tol <= ci.point <= ci.high + tol
    assert ci.point == pytest.approx(data.mean())


def test_ci_width_matches_the_normal_theory_and_vectorized_agrees():
    data = np.random.default_rng(0).normal(0.0, 1.0, 400)
    ci = s.bootstrap_ci(data, np.mean, rng=1, n_boot=4000)
    half_width = norm.ppf(0.975) * data.std(ddof=1) / math.sqrt(len(data))  # 0.098
    assert (ci.high - ci.low) / 2 == pytest.approx(half_width, rel=0.1)
    vec = s.bootstrap_ci(data, lambda x: x.mean(axis=1), rng=1, n_boot=4000, vectorized=True)
    assert (vec.low, vec.high) == pytest.approx((ci.low, ci.high), rel=1e-12)


def test_stationary_bootstrap_widens_the_ci_of_autocorrelated_returns():
    rng = np.random.default_rng(3)
    x = np.zeros(2000)
    for t in range(1, len(x)):  # AR(1), phi = 0.8: the iid bootstrap understates the variance
        x[t] = 0.8 * x[t - 1] + rng.normal()
    iid = s.bootstrap_ci(x, np.mean, rng=0, n_boot=500)
    stationary = s.bootstrap_ci(x, np.mean, rng=0, n_boot=500, method="stationary", block_bars=50)
    # long-run sd of an AR(1) mean is sqrt((1 + phi) / (1 - phi)) = 3x the iid one
    assert (stationary.high - stationary.low) > 2 * (iid.high - iid.low)


def test_percentile_ci_drops_non_finite_replicates():
    ci = s.percentile_ci(1.0, np.array([0.0, 1.0, 2.0, np.inf, np.nan]), level=0.5)
    assert (ci.low, ci.high, ci.n_boot) == (0.5, 1.5, 3)
    assert math.isnan(s.percentile_ci(1.0, np.array([np.nan])).low)


# --- seeds -----------------------------------------------------------------------------------


def test_combine_seeds_hand_computed():
    out = s.combine_seeds({2: {"sharpe": 3.0}, 0: {"sharpe": 1.0, "ret": 0.1},
                           1: {"sharpe": 2.0, "ret": 0.3}})
    assert out.seeds == [0, 1, 2] and out.metrics == ["ret", "sharpe"]
    assert out.mean["sharpe"] == 2.0 and out.std["sharpe"] == pytest.approx(1.0)
    assert out.sem["sharpe"] == pytest.approx(1 / math.sqrt(3))
    assert out.mean["ret"] == pytest.approx(0.2) and out.std["ret"] == pytest.approx(math.sqrt(0.02))
    assert out.count == {"ret": 2, "sharpe": 3} and math.isnan(out.table[2, 0])
    single = s.combine_seeds({0: {"sharpe": 1.5}})
    assert single.mean["sharpe"] == 1.5 and math.isnan(single.std["sharpe"])


# --- PBO (CSCV) ------------------------------------------------------------------------------


def test_pbo_hand_computed_tiny_examples():
    # T = 4, N = 2, S = 2 blocks of 2 rows, metric = mean. Block means: A = (1, 0), B = (0, 1).
    # Split 1: in-sample block 0 -> best A; out of sample (block 1) A = 0 < B = 1: rank 1,
    # w = 1/3, logit = ln(1/2) < 0. Split 2 is the mirror image. PBO = 2 / 2 = 1.
    flipped = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    out = s.pbo_cscv(flipped, n_blocks=2, metric="mean")
    assert out.pbo == 1.0 and out.n_splits == 2
    np.testing.assert_allclose(out.logits, [math.log(0.5)] * 2)
    # A beats B in both blocks: A wins in sample and ranks 2 of 2 out of sample, w = 2/3,
    # logit = ln 2 > 0 in both splits: PBO = 0.
    stable = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 1.0], [2.0, 1.0]])
    out = s.pbo_cscv(stable, n_blocks=2, metric="mean")
    assert out.pbo == 0.0 and out.prob_oos_loss == 0.0
    np.testing.assert_allclose(out.logits, [math.log(2.0)] * 2)


def test_pbo_of_skill_less_candidates_is_one_half():
    # N = 10 iid noise candidates: the in-sample winner's out-of-sample rank is uniform on
    # 1..10, so P(rank <= 5.5) = 1/2. One matrix's estimate is noisy (sd ~0.2): average 200.
    rng = np.random.default_rng(0)
    pbos = [s.pbo_cscv(rng.normal(0, 0.01, (400, 10)), n_blocks=8).pbo for _ in range(200)]
    assert np.mean(pbos) == pytest.approx(0.5, abs=0.06)


def test_pbo_of_a_dominant_candidate_is_zero():
    rng = np.random.default_rng(1)
    perf = rng.normal(0, 0.01, (1000, 10))
    perf[:, 3] += 0.005  # per-bar Sharpe 0.5 against 0
    out = s.pbo_cscv(perf, n_blocks=10)
    assert out.pbo == 0.0 and out.n_splits == comb(10, 5)


def test_pbo_callable_metric_matches_vectorized_sharpe_and_drops_leading_rows():
    perf = np.random.default_rng(2).normal(0.0, 1.0, (102, 6))
    fast = s.pbo_cscv(perf, n_blocks=6)
    slow = s.pbo_cscv(perf, n_blocks=6, metric=lambda x: x.mean(axis=0) / x.std(axis=0, ddof=1))
    np.testing.assert_allclose(fast.logits, slow.logits)
    np.testing.assert_allclose(fast.oos_of_best, slow.oos_of_best)
    np.testing.assert_allclose(s.pbo_cscv(perf[1:], n_blocks=6).logits,  # 101 % 6 = 5 rows dropped
                               s.pbo_cscv(perf[6:], n_blocks=6).logits)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 8), st.sampled_from([2, 4, 6]), st.integers(0, 2**32 - 1))
def test_pbo_is_a_probability(n_candidates, n_blocks, seed):
    perf = np.random.default_rng(seed).standard_t(3, (n_blocks * 5, n_candidates))
    out = s.pbo_cscv(perf, n_blocks=n_blocks)
    assert 0.0 <= out.pbo <= 1.0 and 0.0 <= out.prob_oos_loss <= 1.0
    assert out.n_splits == comb(n_blocks, n_blocks // 2) == len(out.logits)
    assert np.all(np.isfinite(out.logits))


def test_pbo_rejects_bad_shapes():
    with pytest.raises(ValueError, match="N >= 2"):
        s.pbo_cscv(np.zeros((10, 1)))
    with pytest.raises(ValueError, match="even"):
        s.pbo_cscv(np.zeros((10, 3)), n_blocks=3)


# --- probabilistic and deflated Sharpe ratio -------------------------------------------------


def test_deflated_sharpe_worked_example():
    # Bailey & López de Prado (2014), section "A numerical example": 5 years of daily returns
    # (T = 1250, 250 a year), annualized SR 2.5, N = 100 trials whose annualized Sharpe ratios
    # have variance 0.5, skewness -3, kurtosis 10.
    # Per day: SR = 2.5 / sqrt(250) = 0.158114, V = 0.5 / 250 = 0.002, sqrt(V) = 0.044721.
    # Z^-1(1 - 1/100) = 2.326348, Z^-1(1 - 1/(100 e)) = 2.681451,
    # SR0 = 0.044721 * (0.422784 * 2.326348 + 0.577216 * 2.681451) = 0.044721 * 2.531304 = 0.113172
    # PSR: (0.158114 - 0.113172) * sqrt(1249) / sqrt(1 + 3 * 0.158114 + 9/4 * 0.158114**2)
    #    = 0.044942 * 35.341194 / sqrt(1.530592) = 1.588324 / 1.237171 = 1.283834 -> Phi = 0.90040
    sr0 = s.expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.113172, abs=1e-6)
    dsr = s.psr_from_moments(2.5 / math.sqrt(250), 1250, skew=-3.0, kurtosis=10.0, sr_benchmark=sr0)
    assert dsr == pytest.approx(0.90040, abs=1e-5)  # the paper reports 0.9004


def test_dsr_decreases_with_the_number_of_trials():
    rets = np.random.default_rng(5).normal(0.001, 0.01, 1000)
    values = [s.deflated_sharpe_ratio(rets, n_trials=k, sr_variance=1e-3).dsr
              for k in (1, 2, 5, 10, 100, 1000, 10_000)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[0] == pytest.approx(s.probabilistic_sharpe_ratio(rets))  # one trial: PSR(0)


def test_dsr_from_trial_sharpes():
    rng = np.random.default_rng(6)
    rets = rng.normal(0.0008, 0.01, 500)
    trials = rng.normal(0.0, 0.05, 30)
    out = s.deflated_sharpe_ratio(rets, trials)
    assert out.n_trials == 30 and out.sr_variance == pytest.approx(trials.var(ddof=1))
    assert out.sr0 == pytest.approx(s.expected_max_sharpe(30, trials.var(ddof=1)))
    assert out.dsr < s.probabilistic_sharpe_ratio(rets)
    with pytest.raises(ValueError, match="trial_sharpes"):
        s.deflated_sharpe_ratio(rets)


def test_expected_max_sharpe_matches_monte_carlo():
    # E[max of N iid N(0, 1)]: the approximation is within ~1 % for N >= 100
    rng = np.random.default_rng(7)
    for n in (100, 1000):
        simulated = rng.standard_normal((2000, n)).max(axis=1).mean()
        assert s.expected_max_sharpe(n, 1.0) == pytest.approx(simulated, rel=0.02)


def test_psr_normal_case_and_calibration():
    # normal returns: skew 0, kurtosis 3 -> PSR = Phi(SR sqrt(T - 1) / sqrt(1 + SR**2 / 2))
    sr, t = 0.1, 251
    expected = norm.cdf(0.1 * math.sqrt(250) / math.sqrt(1 + 0.01 / 2))  # Phi(1.577) = 0.9426
    assert s.psr_from_moments(sr, t, 0.0, 3.0) == pytest.approx(expected)
    # under the null (true SR 0), PSR(0) is ~uniform: about 5 % of series exceed 0.95
    rng = np.random.default_rng(8)
    psr = np.array([s.probabilistic_sharpe_ratio(rng.normal(0, 0.01, 250)) for _ in range(2000)])
    assert np.mean(psr > 0.95) == pytest.approx(0.05, abs=0.015)
    assert math.isnan(s.probabilistic_sharpe_ratio(np.zeros(10)))


def test_moments_match_scipy():
    from scipy import stats as sps

    r = np.random.default_rng(10).standard_t(5, 500)
    sr, g3, g4 = s._moments(r)
    assert sr == pytest.approx(r.mean() / r.std(ddof=1))
    assert g3 == pytest.approx(sps.skew(r, bias=True))
    assert g4 == pytest.approx(sps.kurtosis(r, fisher=False, bias=True))


def test_psr_agrees_with_quantstats():
    qs = pytest.importorskip("quantstats", reason="quantstats (dev extra) not installed")
    import pandas as pd

    rets = 0.01 * np.random.default_rng(9).standard_t(4, 3000) + 0.0005
    theirs = qs.stats.probabilistic_sharpe_ratio(pd.Series(rets, index=pd.bdate_range("2010-01-01", periods=3000)))
    # quantstats uses bias-corrected skew / kurtosis (pandas), the paper the sample moments
    assert s.probabilistic_sharpe_ratio(rets) == pytest.approx(theirs, abs=2e-3)
