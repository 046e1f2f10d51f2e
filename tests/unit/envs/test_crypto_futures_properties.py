"""CryptoFutures-v0 properties (hypothesis): the books balance, rewards sum to the equity change,
observations stay in the space with no NaN (zero-volume, flat and gap bars), equity never goes
negative under isolated margin; the look-ahead probe on every field; the one observation builder."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core import costs
from envs.core.market import MarketArrays
from envs.core.observation import build_observation, futures_position_observation
from envs.crypto_futures import CryptoFuturesEnv
from envs.synthetic import NS_PER_HOUR, PERP_START_TS_NS, generate_perpetual

E0 = 10_000.0
BACKTEST = {"window_bars": 3, "episode_bars": None, "random_start": False, "initial_cash_usd": E0}


@st.composite
def episodes(draw):
    n = draw(st.integers(8, 36))

    def floats(lo, hi, **kw):
        return np.array(draw(st.lists(st.floats(lo, hi, **kw), min_size=n, max_size=n)))

    def pick(options):
        return np.array(draw(st.lists(st.sampled_from(options), min_size=n, max_size=n)))

    close = 100 * np.exp(np.cumsum(floats(-0.15, 0.15)))
    open_ = np.where(pick([True, False, False]), close, close * np.exp(floats(-0.25, 0.25)))  # flat / gapped bars
    high = np.maximum(open_, close) * np.exp(pick([0.0, 0.01, 0.2]))
    low = np.minimum(open_, close) * np.exp(-pick([0.0, 0.01, 0.2]))
    ohlcv = np.column_stack([open_, high, low, close, pick([0.0, 0.0, 1.0, 1e6])])
    ts = PERP_START_TS_NS + NS_PER_HOUR * np.cumsum(pick([1, 1, 1, 2, 7, 30]))  # gaps in time
    mark = funding = None
    if draw(st.booleans()):
        mark = ohlcv[:, :4] * np.exp(floats(-0.02, 0.02))[:, None]
    if draw(st.booleans()):
        funding = pick([0.0, 0.0, 0.0, 1e-4, -1e-4, 3e-3, -3e-3, 0.05, -0.05])
    m = MarketArrays(("X/USDT:USDT",), np.array([0, n]), ts.astype(np.int64), ohlcv, funding, mark)
    leverage = draw(st.sampled_from([1.0, 3.0, 10.0, 50.0]))
    config = {"leverage": leverage, "maintenance_margin_bps": draw(st.sampled_from([10.0, 50.0, 150.0])),
              "liquidation_fee_bps": draw(st.sampled_from([0.0, 30.0, 500.0])),
              "fee_bps": draw(st.sampled_from([0.0, 5.0, 25.0])), "slippage_bps": draw(st.sampled_from([0.0, 3.0])),
              "execution": draw(st.sampled_from(["taker", "maker"])),
              "action_mode": draw(st.sampled_from(["discrete", "continuous"])),
              "sizing": draw(st.sampled_from(["equity", "initial"])),
              "terminate_on_liquidation": draw(st.booleans())}
    if config["action_mode"] == "discrete":
        actions = [int(a) for a in pick([0, 1, 2, 3, 4])]
    else:
        actions = [np.array([a], dtype=np.float32) for a in floats(-1.0, 1.0)]
    return m, config, actions


def _run(env, actions):
    obs, info = env.reset(seed=0)
    records = [(obs, 0.0, info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        records.append((obs, reward, info))
        if terminated or truncated:
            break
    return records


@given(episodes())
@settings(max_examples=80, deadline=None)
def test_books_balance_rewards_sum_to_the_equity_change_and_equity_stays_non_negative(data):
    m, config, actions = data
    logs = {}
    for reward in ("log_return", "linear_return"):
        env = CryptoFuturesEnv(m, reward=reward, **config, **BACKTEST)
        logs[reward] = records = _run(env, actions)
        for obs, _, _ in records:
            assert env.observation_space.contains(obs)
            assert all(np.isfinite(v).all() for v in obs.values())
    rec = logs["log_return"]
    assert [r[2] for r in rec] == [r[2] for r in logs["linear_return"]]  # the reward never steers the books
    e_t = rec[-1][2]["equity_usd"]
    assert sum(r[1] for r in logs["linear_return"]) == pytest.approx((e_t - E0) / E0, rel=1e-9, abs=1e-12)
    if e_t > 0:
        assert sum(r[1] for r in rec) == pytest.approx(math.log(e_t / E0), rel=1e-9, abs=1e-12)
    mark = m.ohlcv[:, :4] if m.mark_ohlc is None else m.mark_ohlc
    cash, qty, fees, funding = E0, 0.0, 0.0, 0.0
    for _, _, info in rec[1:]:
        row = info["bar_row"]
        held = qty + info["trade_qty"]  # the position through the bar (before a liquidation)
        cash -= info["trade_qty"] * info["fill_price_usd"] + info["fee_usd"] + info["funding_usd"]
        cash += info["liquidated"] * held * info["liquidation_price_usd"] - info["liquidation_fee_usd"]
        cash += info["cover_usd"]
        fees += info["fee_usd"] + info["liquidation_fee_usd"]
        funding += info["funding_usd"]
        qty = info["position_qty"]
        assert qty == (0.0 if info["liquidated"] else pytest.approx(held, rel=1e-12, abs=1e-12))
        assert info["cash_usd"] == pytest.approx(cash, rel=1e-9, abs=1e-6)
        assert info["equity_usd"] == info["cash_usd"] + qty * mark[row, 3]  # marked at the mark close
        assert info["fees_paid_usd"] == pytest.approx(fees, rel=1e-12, abs=1e-9)
        assert info["funding_paid_usd"] == pytest.approx(funding, rel=1e-12, abs=1e-9)
        # isolated margin: equity and the free balance never go below zero (up to rounding)
        assert info["equity_usd"] >= -1e-9 * E0
        assert info["wallet_usd"] - info["margin_usd"] >= -1e-9 * E0
        assert info["cover_usd"] >= 0.0
        assert qty != 0.0 or info["margin_usd"] == info["entry_price_usd"] == 0.0


@given(trade=st.booleans(), level=st.floats(-1, 1), budget=st.floats(1.0, 1e6), qty=st.floats(-1e4, 1e4),
       entry=st.floats(1.0, 1e3), margin_frac=st.floats(0.01, 1.5), free=st.floats(0.0, 1e6),
       ref=st.floats(0.5, 2e3), leverage=st.sampled_from([1.0, 3.0, 20.0, 125.0]),
       fee=st.sampled_from([0.0, 2e-4, 1e-3]), slip=st.sampled_from([0.0, 5e-4]))
@settings(max_examples=150, deadline=None)
def test_isolated_rebalance_floats_and_arrays_agree_and_free_balance_stays_non_negative(
        trade, level, budget, qty, entry, margin_frac, free, ref, leverage, fee, slip):
    margin = abs(qty) * entry / leverage * margin_frac
    args = (level * budget, qty, entry, margin, free, ref, leverage, fee, slip)
    out = costs.isolated_rebalance(trade, *args)
    arrays = costs.isolated_rebalance(np.array([trade]), *(np.array([a]) for a in args), sign=np.sign,
                                      minimum=np.minimum, maximum=np.maximum)
    assert [a[0] for a in arrays] == list(out)  # one cost model, bit for bit on both faces
    new_qty, dq, price, notional, fee_usd, new_margin, new_entry, cover = out
    if not trade:  # the scalar engine's hold shortcut relies on exactly this
        assert (new_qty, dq, price, notional, fee_usd, new_margin, cover) == (qty, 0.0, ref, 0.0, 0.0, margin, 0.0)
        assert new_entry == entry * (qty != 0.0)  # the env keeps entry = 0 while flat
    assert new_qty == pytest.approx(qty + dq, rel=1e-12, abs=1e-12) and notional == dq * price
    assert new_margin >= -1e-9 * (1 + margin) and cover >= 0.0 and (new_qty == 0.0 or new_entry > 0.0)
    # free balance after = wallet after - margin after: never below zero (up to rounding)
    cash = entry * 0.0 + free + margin - qty * entry  # wallet = free + margin; cash = wallet - qty * entry
    cash_after = cash - notional - fee_usd + cover
    free_after = cash_after + new_qty * new_entry - new_margin
    assert free_after >= -1e-9 * (1.0 + free + margin + abs(notional))
    if trade and level == 0.0:
        assert new_qty == 0.0 and new_margin == 0.0


def test_liquidation_close_never_takes_more_than_the_margin_left():
    liq = costs.liquidation_price(100.0, 10.0, 100.0, 0.005)
    notional, fee, cover = costs.liquidation_close(10.0, 100.0, 100.0, liq, 0.5)
    assert notional == -10.0 * liq and cover == 0.0
    assert fee == pytest.approx(100.0 + 10.0 * (liq - 100.0)) == pytest.approx(0.005 * 10 * liq)
    _, fee, cover = costs.liquidation_close(-10.0, 100.0, -5.0, 100.5, 0.003)  # margin drained below water
    assert fee == 0.0 and cover == pytest.approx(5.0 + 10.0 * 0.5)  # the venue absorbs the deficit


# --- the look-ahead probe -----------------------------------------------------------------------
STEPS = 45
MARKET_KEYS = ("hourly_hloc", "4h_hloc", "daily_hloc", "hourly_volume", "daily_volume", "funding_bps")


def _perturb_after(m: MarketArrays, ts_cut: int, seed: int) -> MarketArrays:
    """Every bar after ``ts_cut``: prices, volume, mark (separately) and funding."""
    rng = np.random.default_rng(seed)
    later = m.ts_ns > ts_cut
    k = int(later.sum())
    ohlcv, mark, funding = m.ohlcv.copy(), m.mark_ohlc.copy(), m.funding_rate.copy()
    ohlcv[later, :4] *= np.exp(rng.normal(0.0, 0.3, k))[:, None]
    ohlcv[later, 4] *= rng.uniform(0.0, 3.0, k)
    mark[later] = ohlcv[later, :4] * np.exp(rng.normal(0.0, 0.05, k))[:, None]
    funding[later] += rng.normal(0.0, 1e-3, k)
    return MarketArrays(m.symbols, m.offsets, m.ts_ns, ohlcv, funding, mark)


def _policy(obs: dict, space):
    """A deterministic policy that depends on every field of the observation."""
    total = sum(float(np.abs(v).sum()) * (i + 1) for i, v in enumerate(obs.values()))
    if space.shape == ():
        return int(total * 1e4) % space.n
    return np.array([(int(total * 1e4) % 2001) / 1000 - 1.0], dtype=np.float32)


def _rollout(market: MarketArrays, **kw):
    env = CryptoFuturesEnv(market, episode_bars=STEPS, **kw)
    obs, _ = env.reset(seed=17)
    trace, rows = [(obs, None, 0.0)], [env.engine.row]
    for _ in range(STEPS):
        action = _policy(obs, env.action_space)
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.append((obs, action, reward))
        rows.append(env.engine.row)
        if terminated or truncated:
            break
    return trace, rows


@pytest.fixture(scope="module")
def perp_market():
    return generate_perpetual(seed=2, n_symbols=2, n_bars=600)


PROBES = [{}, {"action_mode": "continuous"}, {"reward": "linear_return", "sizing": "initial"},
          {"reward": "differential_sharpe", "action_mode": "continuous"}, {"precompute_max_mb": 0.0},
          {"leverage": 20.0, "terminate_on_liquidation": False}]


@pytest.mark.parametrize("kw", PROBES, ids=[str(k) for k in PROBES])
def test_nothing_after_t_changes_anything_up_to_t(perp_market, kw):
    ref, rows = _rollout(perp_market, **kw)
    assert len(ref) == STEPS + 1
    ts = perp_market.ts_ns
    for k in (0, 9, 30):
        cut = int(ts[rows[k]])
        probe, probe_rows = _rollout(_perturb_after(perp_market, cut, k), **kw)
        assert probe_rows[:k + 1] == rows[:k + 1]  # same symbol and start: sampling never looks at prices
        for j in range(k + 1):
            (obs_a, act_a, rew_a), (obs_b, act_b, rew_b) = ref[j], probe[j]
            assert obs_a.keys() == obs_b.keys()
            for key in obs_a:
                np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=f"field {key} at step {j} <= {k}")
            assert np.array_equal(act_a, act_b) and rew_a == rew_b, f"step {j} <= {k}"
        # the probe has teeth: every market field of the first observation after t changes
        changed = {key for key in MARKET_KEYS if not np.array_equal(ref[k + 1][0][key], probe[k + 1][0][key])}
        assert changed == set(MARKET_KEYS)


def test_env_observation_is_the_one_builder_on_the_bars_up_to_t(perp_market):
    """Serve and the trader call build_observation + futures_position_observation: same floats."""
    m = perp_market
    env = CryptoFuturesEnv(m, episode_bars=60, leverage=5.0,
                           action_mask=False)  # the mask's parity: tests/unit/envs/test_action_mask.py
    env.reset(seed=3)
    spec, engine = env.engine.spec, env.engine
    for step in range(60):
        obs, _, terminated, truncated, info = env.step([0, 4, 2, 3, 1][step % 5])
        rows = m.rows(int(engine.symbol))
        t = int(engine.row) - rows.start
        full = build_observation(m.ts_ns[rows][:t + 1], m.ohlcv[rows][:t + 1], spec=spec,
                                 funding_rate=m.funding_rate[rows][:t + 1], bars_held=int(engine.bars_held))
        full.pop("owned")
        full.update({k: v[0] for k, v in futures_position_observation(
            info["position_qty"], info["mark_price_usd"], info["entry_price_usd"], info["margin_usd"],
            info["equity_usd"], engine.bars_held, leverage=5.0, maintenance_margin_rate=0.005, spec=spec).items()})
        assert obs.keys() == full.keys()
        for key in obs:
            np.testing.assert_array_equal(obs[key], full[key], err_msg=key)
        if terminated or truncated:
            break
