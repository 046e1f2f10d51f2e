"""Portfolio-v0: faces (check_env, vector contract, autoreset, seeding), episodes, bad inputs."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, VectorEnv

import envs
from envs.core.market import CLOSE, OPEN, VOLUME, MarketArrays
from envs.core.observation import build_portfolio_observation
from envs.portfolio import REWARDS, PortfolioConfig, PortfolioEnv, PortfolioVectorEnv
from envs.synthetic import business_days_ts_ns, generate

from .helpers import market, series

MODES = [{"action_mode": "discrete"}, {"action_mode": "continuous"},
         {"action_mode": "discrete", "allow_short": False}, {"action_mode": "continuous", "allow_short": False}]


@pytest.fixture(scope="module")
def synth():
    return generate("trend", seed=5, n_symbols=5, n_bars=400)


def _staggered(n_bars: int = 300) -> MarketArrays:
    """Six assets listed at different dates (and one delisted early) on one business-day calendar."""
    rng = np.random.default_rng(0)
    ts = business_days_ts_ns(n_bars)
    spans = [(0, n_bars), (0, n_bars), (40, n_bars), (120, n_bars), (0, 150), (200, n_bars)]
    bars, stamps = [], []
    for lo, hi in spans:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, hi - lo)))
        bars.append(series(close))
        stamps.append(ts[lo:hi])
    lengths = [len(b) for b in bars]
    return MarketArrays(tuple(f"A{i}" for i in range(6)), np.concatenate([[0], np.cumsum(lengths)]),
                        np.concatenate(stamps), np.concatenate(bars))


@pytest.mark.parametrize("kw", MODES, ids=str)
def test_check_env_single_face_every_action_mode(synth, kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = PortfolioEnv(synth.market, synth.index, n_assets=3, episode_bars=30, **kw)
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=0)
        for _ in range(40):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs) and isinstance(reward, float)
            if terminated or truncated:
                obs, info = env.reset()
    assert not [str(w.message) for w in caught if "gymnasium" in w.filename]
    n = 3
    assert env.action_space.shape == (n,)
    assert obs["daily_hloc"].shape == (n, 50, 4) and obs["weekly_volume"].shape == (n, 50, 1)
    assert obs["positions"].shape == (n, 2) and obs["portfolio"].shape == (3,)
    assert info["position_qty"].shape == (n,) and isinstance(info["equity_usd"], float)


def test_gym_make_without_arguments_and_spaces():
    env = gym.make(envs.PORTFOLIO)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.action_space == gym.spaces.MultiDiscrete([3] * 4)  # a seeded synthetic 4-asset market
    assert env.unwrapped.engine.universe == ("SYN0", "SYN1", "SYN2", "SYN3")
    assert gym.make(envs.PORTFOLIO, action_mode="continuous").action_space == gym.spaces.Box(-1, 1, (4,), np.float32)
    long_only = gym.make(envs.PORTFOLIO, allow_short=False, with_index=False, n_assets=2)
    assert long_only.action_space == gym.spaces.MultiDiscrete([2, 2])
    assert "index_hloc" not in long_only.observation_space.spaces


@pytest.mark.parametrize("kw", MODES[:2], ids=str)
def test_vector_face_contract_and_next_step_autoreset(synth, kw):
    n = 6
    venv = gym.make_vec(envs.PORTFOLIO, num_envs=n, vectorization_mode="vector_entry_point", market=synth.market,
                        index=synth.index, n_assets=2, episode_bars=4, **kw)
    assert isinstance(venv, VectorEnv) and venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = venv.reset(seed=3)
    assert venv.observation_space.contains(obs)
    for key, space in venv.single_observation_space.items():
        assert obs[key].shape == (n, *space.shape) and obs[key].dtype == np.float32
    assert info["position_qty"].shape == (n, 2) and info["equity_usd"].shape == (n,)
    for step in range(1, 5):
        obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
        assert venv.observation_space.contains(obs)
        assert reward.shape == terminated.shape == truncated.shape == (n,)
        assert truncated.all() == (step == 4) and not terminated.any()
    assets_before = info["assets"].copy()
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    assert not (terminated | truncated).any() and np.all(reward == 0.0)
    assert np.all(info["equity_usd"] == 10_000.0) and np.all(info["position_qty"] == 0.0)
    assert venv.observation_space.contains(obs) and np.all(obs["positions"] == 0.0)
    assert not np.array_equal(info["assets"], assets_before)  # fresh seeded subsets (5 choose 2)
    venv.close()


def _rollout(venv, actions, seed):
    obs, info = venv.reset(seed=seed)
    out = [(obs, info)]
    for a in actions:
        obs, r, te, tr, info = venv.step(a)
        out.append((obs, r, te, tr, info))
    return out


def test_same_seed_same_episodes_different_seeds_differ(synth):
    acts = np.random.default_rng(0).integers(0, 3, (90, 4, 2))
    make = lambda: PortfolioVectorEnv(4, synth.market, synth.index, n_assets=2, episode_bars=25)  # noqa: E731
    a, b, c = (_rollout(make(), acts, s) for s in (11, 11, 12))
    for x, y in zip(a, b, strict=True):
        for key in x[0]:
            np.testing.assert_array_equal(x[0][key], y[0][key])
        for part_x, part_y in zip(x[1:], y[1:], strict=True):
            if isinstance(part_x, dict):
                assert all(np.array_equal(part_x[k], part_y[k]) for k in part_x)
            else:
                np.testing.assert_array_equal(part_x, part_y)
    assert not all(np.array_equal(x[0]["daily_hloc"], y[0]["daily_hloc"]) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("kw", MODES[:3], ids=str)
def test_vector_and_single_faces_agree_step_for_step(synth, reward, kw):
    """Same seed, same actions, across autoresets: observations, rewards and books bit for bit."""
    cfg = {"n_assets": 3, "episode_bars": 12, "reward": reward, "max_leverage": 2.0, **kw}
    single = PortfolioEnv(synth.market, synth.index, **cfg)
    vector = PortfolioVectorEnv(1, synth.market, synth.index, **cfg)
    single.action_space.seed(5)
    o_s, i_s = single.reset(seed=21)
    o_v, i_v = vector.reset(seed=21)
    done, resets = False, 0
    for _ in range(50):
        for key in o_s:
            np.testing.assert_array_equal(o_s[key], o_v[key][0], err_msg=key)
        for key in i_s:
            np.testing.assert_array_equal(i_s[key], i_v[key][0], err_msg=key)
        a = single.action_space.sample()
        if done:
            o_s, i_s = single.reset()
            o_v, r_v, te_v, tr_v, i_v = vector.step(a[None])
            assert r_v[0] == 0.0 and not (te_v[0] or tr_v[0])
            done, resets = False, resets + 1
            continue
        o_s, r_s, te_s, tr_s, i_s = single.step(a)
        o_v, r_v, te_v, tr_v, i_v = vector.step(a[None])
        assert r_s == r_v[0] and (te_s, tr_s) == (bool(te_v[0]), bool(tr_v[0]))
        done = te_s or tr_s
    assert resets >= 3


def test_rllib_creator(synth):
    create = envs.make_creator(envs.PORTFOLIO)
    venv = create({"num_envs": 3, "market": synth.market, "n_assets": 2, "action_mode": "continuous"})
    assert isinstance(venv, VectorEnv) and venv.single_action_space.shape == (2,)
    assert isinstance(create({"reward": "linear_return"}), PortfolioEnv)
    with pytest.raises(ValueError, match="unknown field"):
        create({"num_envs": 2, "n_asset": 3})


def test_subsets_have_data_over_the_whole_episode_and_cover_the_universe():
    m = _staggered()
    cfg = {"n_assets": 3, "window_bars": 10, "episode_bars": 30}
    venv = PortfolioVectorEnv(64, m, **cfg)
    ts = m.ts_ns
    seen = set()
    for seed in range(4):
        venv.reset(seed=seed)
        eng = venv.engine
        for b in range(64):
            names = [eng.universe[u] for u in eng.assets[b]]
            assert len(set(names)) == 3 and list(eng.assets[b]) == sorted(eng.assets[b])
            lo_ts = eng._cal.ts_ns[eng.cal_row[b] - 9]  # the whole first window ...
            hi_ts = eng._cal.ts_ns[eng.end_cal_row[b]]  # ... to the last bar of the episode
            for name in names:
                own = ts[m.rows(m.index_of(name))]
                assert own[0] <= lo_ts and own[-1] >= hi_ts, (name, b)
            seen.update(names)
    assert seen == set(m.symbols)
    with pytest.raises(ValueError, match=r"n_assets: None trades every symbol, but \['A5'\]"):
        PortfolioEnv(m, window_bars=10, episode_bars=100)
    with pytest.raises(ValueError, match="no window"):
        PortfolioEnv(m, n_assets=6, window_bars=10, episode_bars=30)


def test_fixed_backtest_and_forced_asset_set():
    m = _staggered()
    env = PortfolioEnv(m, symbols=("A0", "A2", "A3"), window_bars=10, episode_bars=None, random_start=False)
    obs, info = env.reset(seed=0)
    eng = env.engine
    assert eng._cal.ts_ns[eng.cal_row[0]] == m.ts_ns[m.rows(3)][9]  # A3's 10th bar: warm for every asset
    steps = 0
    while True:
        *_, terminated, truncated, info = env.step(np.ones(3, dtype=np.int64))
        steps += 1
        if terminated or truncated:
            break
    assert info["bar_ts_ns"] == m.ts_ns[-1] and steps == 299 - 129
    free = PortfolioEnv(m, n_assets=2, window_bars=10, episode_bars=20)
    _, info = free.reset(seed=1, options={"symbols": ["A5", "A1"]})
    assert [free.engine.universe[u] for u in info["assets"]] == ["A1", "A5"]
    for bad in (["A1"], ["A1", "A1"], ["A1", "ZZZ"]):
        with pytest.raises(ValueError, match=r"options\['symbols'\]"):
            free.reset(options={"symbols": bad})
    with pytest.raises(ValueError, match="share no window"):
        free.reset(options={"symbols": ["A4", "A5"]})


def test_calendar_gaps_flat_bars_no_nan_and_orders_wait():
    """Asset B has no bars on days 20 and 21: there its bars are flat at its last close with zero
    volume, and an order for B waits for B's next real bar (day 22)."""
    ts = business_days_ts_ns(40)
    keep = np.ones(40, bool)
    keep[[20, 21]] = False
    a = series(100 + np.arange(40.0), volume=0.0)  # zero volume everywhere
    b = series(50 + np.arange(40.0))[keep]
    m = MarketArrays(("A", "B"), np.array([0, 40, 78]), np.concatenate([ts, ts[keep]]), np.concatenate([a, b]))
    env = PortfolioEnv(m, window_bars=5, episode_bars=None, random_start=False, fee_bps=0, slippage_bps=0)
    obs, info = env.reset(seed=0)
    assert info["bar_ts_ns"] == ts[4]
    records = {int(info["bar_ts_ns"]): (obs, info)}
    for step in range(1, 36):  # step j fills at day 4 + j: wanting B long from the fill on day 20
        obs, _, _, truncated, info = env.step(np.array([1, 2 if step >= 16 else 1]))
        records[int(info["bar_ts_ns"])] = (obs, info)
        assert env.observation_space.contains(obs) and all(np.isfinite(v).all() for v in obs.values())
    assert truncated and info["bar_ts_ns"] == ts[39]
    gap_obs, gap_info = records[ts[21]]
    np.testing.assert_allclose(gap_obs["daily_hloc"][1, :, 3], np.log(np.array([67, 68, 69, 69, 69]) / 69), atol=1e-7)
    assert gap_obs["daily_volume"][1, -2:, 0].tolist() == [0.0, 0.0] and gap_obs["daily_volume"][1, 0, 0] == pytest.approx(5 / 3)
    assert gap_obs["daily_volume"][0].max() == 0.0  # zero-volume bars: zeros, not NaN
    assert gap_info["position_qty"].tolist() == [0.0, 0.0]  # the order waited on days 20 and 21
    _, fill = records[ts[22]]
    assert fill["fill_price_usd"][1] == 72.0 and fill["position_qty"][1] == pytest.approx(5_000.0 / 72.0, rel=1e-15)


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_assets", 0), ("n_assets", 2.0), ("n_assets", True), ("action_mode", "weights"), ("max_leverage", 0.0),
     ("max_leverage", float("inf")), ("max_leverage", 101.0), ("allow_short", 1), ("maintenance_margin_bps", -1.0),
     ("rebalance_band", -0.1), ("with_index", "yes"), ("clip_log_ratio", 0.0), ("synthetic", "noise"),
     ("market_seed", -1), ("reward", "excess_horizon"), ("symbol_order", "sequential"), ("fee_bps", -1.0),
     ("window_bars", 0), ("symbols", "BTC"), ("symbols", ("BTC", "ETH", "BTC"))],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"PortfolioConfig.{field}"):
        PortfolioConfig(**{field: value})


def test_bad_config_combinations_and_unknown_keys():
    with pytest.raises(ValueError, match="PortfolioConfig.n_assets: must be <= len"):
        PortfolioConfig(symbols=("A", "B"), n_assets=3)
    with pytest.raises(ValueError, match="PortfolioConfig.maintenance_margin_bps"):
        PortfolioConfig(maintenance_margin_bps=600.0, max_leverage=20.0)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['leverage'\]"):
        PortfolioEnv(leverage=2.0)
    with pytest.raises(AttributeError):
        PortfolioConfig().max_leverage = 3.0  # type: ignore[misc]


def _market_with(mutate=None) -> MarketArrays:
    """Two perpetuals, 80 bars; ``mutate`` edits copies of their arrays."""
    m = market(series(np.linspace(100, 120, 80)), series(np.linspace(50, 40, 80)))
    arrays = {"ohlcv": m.ohlcv.copy(), "funding_rate": np.zeros(160), "mark_ohlc": m.ohlcv[:, :4].copy()}
    if mutate:
        mutate(arrays)
    return MarketArrays(m.symbols, m.offsets, m.ts_ns, **arrays)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a["ohlcv"].__setitem__((90, CLOSE), np.nan), "market: NaN or inf in ohlcv at row 90"),
        (lambda a: a["ohlcv"].__setitem__((7, OPEN), -1.0), "market: prices must be > 0, row 7"),
        (lambda a: a["ohlcv"].__setitem__((7, VOLUME), -1.0), "market: volume must be >= 0, row 7"),
        (lambda a: a["funding_rate"].__setitem__(3, np.inf), "market.funding_rate: NaN or inf at row 3"),
        (lambda a: a["mark_ohlc"].__setitem__((5, 2), 0.0), "market.mark_ohlc: prices must be finite and > 0, row 5"),
    ],
)
def test_bad_arrays(mutate, message):
    with pytest.raises(ValueError, match=message):
        PortfolioEnv(_market_with(mutate), window_bars=5, episode_bars=10)
    m = _market_with()
    with pytest.raises(ValueError, match=r"market.symbols: duplicate symbols \['A'\]"):
        PortfolioEnv(MarketArrays(("A", "A"), m.offsets, m.ts_ns, m.ohlcv), window_bars=5, episode_bars=10)


def test_bad_universe_and_actions():
    m = _market_with()
    with pytest.raises(ValueError, match="PortfolioConfig.symbols: symbol 'C' not in market"):
        PortfolioEnv(m, symbols=("S0", "C"))
    with pytest.raises(ValueError, match="window longer than data"):
        PortfolioEnv(m, window_bars=100, episode_bars=10)
    with pytest.raises(ValueError, match="PortfolioConfig.n_assets: only 2 symbols"):
        PortfolioEnv(m, n_assets=3, window_bars=5, episode_bars=10)
    with pytest.raises(ValueError, match="index: expected a MarketArrays"):
        PortfolioEnv(m, index=m, window_bars=5)
    with pytest.raises(ValueError, match="market: expected MarketArrays"):
        PortfolioEnv(np.zeros((3, 5)))
    env = PortfolioEnv(m, window_bars=5, episode_bars=10)
    env.reset(seed=0)
    for bad in (np.array([3, 0]), np.array([0, 1, 2]), np.array([0.5, 1.0])):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    cont = PortfolioEnv(m, window_bars=5, episode_bars=10, action_mode="continuous")
    cont.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        cont.step(np.array([np.nan, 0.0]))
    with pytest.raises(RuntimeError, match="reset"):
        PortfolioEnv(m, window_bars=5, episode_bars=10).step(np.array([1, 1]))


@pytest.mark.parametrize("perpetual", [False, True], ids=["spot", "perpetual"])
def test_serve_builds_the_same_observation_from_plain_windows(synth, perpetual):
    """Serve and the trader call build_portfolio_observation on each asset's bars up to t plus the
    live book: the same floats as the env, every field."""
    m = synth.market
    rates = np.random.default_rng(3).normal(0.0, 2e-4, len(m.ts_ns)) if perpetual else None
    m = MarketArrays(m.symbols, m.offsets, m.ts_ns, m.ohlcv, rates)
    env = PortfolioEnv(m, synth.index, n_assets=3, episode_bars=40, max_leverage=2.0,
                       action_mask=False)  # the mask's parity: tests/unit/envs/test_action_mask.py
    env.action_space.seed(1)
    obs, info = env.reset(seed=8)
    assert ("funding_bps" in obs) == perpetual
    for step in range(25):
        obs, _, terminated, _, info = env.step(env.action_space.sample())
        if step % 6:
            continue
        windows, funding = [], []
        for u in info["assets"]:
            rows = m.rows(m.index_of(env.engine.universe[u]))
            t = int(np.searchsorted(m.ts_ns[rows], info["bar_ts_ns"])) + 1
            windows.append((m.ts_ns[rows][:t], m.ohlcv[rows][:t]))
            funding.append(None if rates is None else rates[rows][:t])
        served = build_portfolio_observation(
            windows, spec=env.engine.spec, qty=info["position_qty"], cash_usd=info["cash_usd"],
            bars_held=obs["positions"][:, 1], initial_cash_usd=10_000.0, max_leverage=2.0,
            index_ts_ns=synth.index.ts_ns, index_ohlc=synth.index.ohlcv, funding_rates=funding if perpetual else None)
        assert served.keys() == obs.keys()
        for key in obs:
            np.testing.assert_array_equal(served[key], obs[key], err_msg=key)
