"""The oracle fraction, buy precision/recall and the validation metrics built on them
(app/evaluation/oracle.py, app/training/evaluate.py): scenario tables, then real envs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from app.evaluation.oracle import (
    MIN_ORACLE_EXCESS,
    IndexPath,
    OraclePolicy,
    buy_stats,
    capture_metrics,
    episode_excess,
    oracle_fraction,
    play_oracle,
    stock_targets,
    synthetic_market_of,
)
from app.evaluation.rollout import EpisodeTrace, rollout
from app.runs.env_factory import create_env
from envs import synthetic

MR = "raytrade/SyntheticMeanReversion-v0"
MR_CONFIG = {"episode_bars": 128, "fee_bps": 5.0, "slippage_bps": 0.0, "market_seed": 11}


def trace(position, rows=None, equity=(100.0, 100.0)) -> EpisodeTrace:
    rows = list(range(len(position))) if rows is None else rows
    return EpisodeTrace(equity_usd=list(equity), position=list(position), bar_row=list(rows))


@pytest.mark.parametrize(("agent", "oracle", "expected"), [
    ([0.1, 0.1], [0.2, 0.2], 0.5),
    ([-0.1], [0.2], -0.5),              # losing money is a negative fraction, not zero
    ([0.05, 0.05], [0.001, 0.199], 0.5),  # ratio of totals (a mean of ratios would say 25.1)
    ([0.3], [0.2], 1.5),                # luck above the oracle is reported, not clipped
    ([0.1], [0.0], math.nan),           # no edge (pure noise): no fraction
    ([0.1], [MIN_ORACLE_EXCESS / 2], math.nan),
    ([0.1], [-0.05], math.nan),
])
def test_oracle_fraction_table(agent, oracle, expected):
    got = oracle_fraction(np.array(agent), np.array(oracle))
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_oracle_fraction_needs_paired_episodes():
    with pytest.raises(ValueError, match="paired"):
        oracle_fraction(np.array([0.1]), np.array([0.1, 0.2]))


def test_excess_is_net_log_growth_of_equity():
    got = episode_excess([trace([0, 1], equity=(100.0, 110.0)), trace([0, 0], equity=(50.0, 50.0))])
    np.testing.assert_allclose(got, [math.log(1.1), 0.0])


def test_excess_is_over_the_index_while_invested():
    """Index log closes 0, .1, .2, .3, .4 (opens 0.05 above the previous close): bought at row
    1's open, held through row 3, sold at row 4's open."""
    index = IndexPath(log_open=np.array([0.0, 0.05, 0.15, 0.25, 0.35]),
                      log_close=np.array([0.0, 0.1, 0.2, 0.3, 0.4]))
    t = trace([0, 1, 1, 1, 0], rows=[0, 1, 2, 3, 4], equity=(100.0, 100.0 * math.exp(0.5)))
    # held: row 1 open->close .05, rows 2-3 .2, row 4 close->open .05: 0.3 of index return
    assert index.held_log_return(t) == pytest.approx(0.3)
    assert episode_excess([t], index)[0] == pytest.approx(0.5 - 0.3)
    short = trace([0, -1, -1, 0, 0], rows=[0, 1, 2, 3, 4])
    assert index.held_log_return(short) == pytest.approx(-(0.05 + 0.1 + 0.05))
    assert index.held_log_return(trace([0, 0, 0, 0, 0])) == 0.0


def test_buying_the_market_earns_no_excess():
    """On a market that IS its index (the stock's bars are the index's), holding it all the
    time earns the index's return and zero excess."""
    m = synthetic.generate("gbm", seed=4, n_symbols=1, n_bars=300)
    same = SimpleNamespace(market=m.index, index=m.index)
    log_bars = np.log(m.index.ohlcv[:, :4])
    bought_at_open_1 = log_bars[299, 3] - log_bars[1, 0]
    t = trace([0] + [1] * 299, rows=list(range(300)), equity=(100.0, 100.0 * math.exp(bought_at_open_1)))
    assert episode_excess([t], IndexPath.of(same))[0] == pytest.approx(0.0, abs=1e-12)


def test_buy_stats_scenario():
    # steps: 0 flat stay | 1 flat BUY (event) | 2,3 held | 4 flat stay (event) | 5 flat BUY
    t = trace([0, 0, 1, 1, 0, 0, 1], rows=[10, 11, 12, 13, 14, 15, 16])
    events = np.zeros(20, bool)
    events[[11, 14]] = True
    got = buy_stats([t], events)
    assert got["buy_rate"] == pytest.approx(2 / 4)          # 2 entries over 4 flat decisions
    assert got["trades_per_252_bars"] == pytest.approx(252 * 2 / 6)
    assert got["buy_precision"] == pytest.approx(1 / 2)     # the row-15 buy missed
    assert got["buy_recall"] == pytest.approx(1 / 2)        # the row-14 event was missed
    assert got["event_rate"] == pytest.approx(2 / 4)


def test_buy_stats_without_events_or_entries():
    got = buy_stats([trace([0, 0, 0])])
    assert got["buy_rate"] == 0.0 and got["trades_per_252_bars"] == 0.0
    assert "buy_precision" not in got
    none = buy_stats([trace([0, 0, 0])], np.ones(3, bool))
    assert math.isnan(none["buy_precision"]) and none["buy_recall"] == 0.0


def test_a_flip_is_a_trade_but_not_a_decision_from_flat():
    got = buy_stats([trace([0, 1, -1, 0])])
    assert got["buy_rate"] == 1.0            # one flat decision (step 0), it entered
    assert got["trades_per_252_bars"] == pytest.approx(252 * 2 / 3)


# --- on a real env: the oracle played through it, blind policies against planted events ---

class Constant:
    stateful = False

    def __init__(self, n, action, p=None, seed=0):
        self.n, self.action, self.p, self.rng = n, action, p, np.random.default_rng(seed)

    def act(self, obs):
        from app.evaluation.oracle import ActionStep

        if self.p is None:
            return ActionStep(np.full(self.n, self.action, np.int64))
        return ActionStep((self.rng.random(self.n) < self.p).astype(np.int64))


def env(mode="swing", n=32, **extra):
    return create_env(MR, MR_CONFIG | {"mode": mode, "num_envs": n, "vector_info": True} | extra)


def test_the_oracle_captures_all_of_itself_and_staying_out_none():
    e = env()
    market = synthetic_market_of(e)
    assert market is not None
    oracle = play_oracle(e, market, seed=5)
    again = play_oracle(e, market, seed=5)
    assert capture_metrics(again, oracle)["oracle_fraction"] == pytest.approx(1.0)
    out = capture_metrics(rollout(e, Constant(32, 0), seed=5), oracle)
    assert out["oracle_fraction"] == 0.0 and out["oracle_excess"] > 0
    buy_hold = capture_metrics(rollout(e, Constant(32, 1), seed=5), oracle)["oracle_fraction"]
    assert buy_hold < 0.5


def test_a_market_the_env_was_given_has_no_oracle():
    other = synthetic.generate("gbm", seed=3)
    e = create_env(MR, MR_CONFIG | {"num_envs": 4, "vector_info": True, "market": other.market,
                                    "index": other.index})
    assert synthetic_market_of(e) is None


@pytest.mark.parametrize("blind", [Constant(64, 1), Constant(64, None, p=0.5, seed=1),
                                   Constant(64, None, p=0.05, seed=2)])
def test_a_policy_that_does_not_look_cannot_score_high_precision(blind):
    """Events planted at 2 % of rows: buying always or at random hits them at about the event
    rate; a policy that sees them scores 1.0 on both precision and recall."""
    e = env(mode="buy_only", n=64, episode_bars=252)
    rows = len(synthetic_market_of(e).oracle_position)
    events = np.random.default_rng(0).random(rows) < 0.02
    got = buy_stats(rollout(e, blind, seed=9), events)
    assert got["buy_precision"] < 0.1
    assert got["buy_precision"] < 3 * got["event_rate"]
    seer = OraclePolicy(stock_targets(SimpleNamespace(oracle_position=events), "buy_only"))
    sees = buy_stats(rollout(e, seer, seed=9), events)
    assert sees["buy_precision"] == 1.0 and sees["buy_recall"] == 1.0


def small_module(e):
    from app.models import module_spec

    return module_spec("mlp", {"embed_dim": 8, "fusion_hiddens": [16]},
                       observation_space=e.single_observation_space,
                       action_space=e.single_action_space).build()


def test_validation_metrics_include_the_oracle_fraction_on_a_synthetic_market():
    from app.training.evaluate import evaluate_policy

    module = small_module(env(n=1))
    got = evaluate_policy(module, MR, MR_CONFIG, num_envs=4, seed=1, periods_per_year=252.0)
    for prefix in ("val_greedy", "val_stochastic"):
        assert np.isfinite(got[f"{prefix}/oracle_fraction"])
        assert got[f"{prefix}/oracle_excess"] > 0
        assert 0.0 <= got[f"{prefix}/buy_rate"] <= 1.0
        assert f"{prefix}/buy_precision" not in got  # mean reversion plants no events
    again = evaluate_policy(module, MR, MR_CONFIG, num_envs=4, seed=1, periods_per_year=252.0)
    assert again["val_greedy/oracle_fraction"] == got["val_greedy/oracle_fraction"]


def test_validation_metrics_without_an_oracle_have_no_fraction():
    from app.training.evaluate import evaluate_policy

    other = synthetic.generate("gbm", seed=3)
    config = MR_CONFIG | {"market": other.market, "index": other.index}
    got = evaluate_policy(small_module(env(n=1)), MR, config, num_envs=2, seed=1,
                          periods_per_year=252.0, stochastic_too=False)
    assert "val_greedy/return" in got
    assert not any("oracle" in k for k in got)
