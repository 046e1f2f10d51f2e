"""Layout and parity of the per-step observation gather (issue 12).

Where the tables do not fit the budget an env gathers windows per step. That path must read
only C-contiguous arrays (a row gather from a Fortran-ordered array copies the whole array on
every step: ms instead of µs on real data) and give exactly the floats of the precomputed tables
and of the plain window gather it replaced (:func:`reference_observation`).
"""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest

from envs.core import memory
from envs.core.market import CLOSE, HIGH, LOW, OPEN, VOLUME, MarketArrays
from envs.core.observation import ObservationSpec, market_observation, prepare_features
from envs.core.resample import align_to_calendar, partial_bars, period_window_rows, window_rows
from envs.crypto_futures import CryptoFuturesEnv, CryptoFuturesVectorEnv
from envs.portfolio import PortfolioEnv, PortfolioVectorEnv
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv
from envs.synthetic import business_days_ts_ns, generate_perpetual, hourly_ts_ns

HLOC = [HIGH, LOW, OPEN, CLOSE]


def ragged_market(n_bars=(700, 0, 1, 260, 900, 45), seed: int = 7, hourly: bool = False) -> MarketArrays:
    """Series of unequal lengths (one empty, one of one bar) on shifted calendars with holes,
    zero and -0.0 volumes, a price range wide enough to hit the clip; Fortran-ordered OHLCV."""
    rng = np.random.default_rng(seed)
    parts, stamps = [], []
    for i, n in enumerate(n_bars):
        days = business_days_ts_ns(n + n // 10 + 5)[i:]
        if hourly:
            stamps.append(hourly_ts_ns(n + 3 * i)[3 * i:])
        else:  # S0 trades every day (its windows are the index's own), the others miss some
            stamps.append(days[:n] if i == 0 else np.sort(rng.choice(days, n, replace=False)))
        close = np.exp(np.cumsum(rng.normal(0.0, 0.02 if i != 4 else 0.3, n)))  # series 4: > e^10 range
        open_ = close * np.exp(rng.normal(0.0, 0.01, n))
        vol = rng.choice([0.0, -0.0, 5.0, 1e3, 7e6], n)
        parts.append(np.column_stack([open_, np.maximum(open_, close) * 1.01, np.minimum(open_, close) * 0.99,
                                      close, vol]))
    offsets = np.concatenate([[0], np.cumsum(n_bars)]).astype(np.int64)
    ohlcv = np.asfortranarray(np.concatenate(parts))
    funding = rng.normal(0.0, 0.004, len(ohlcv)) if hourly else None  # some beyond the 100 bps clip
    return MarketArrays(tuple(f"S{i}" for i in range(len(n_bars))), offsets, np.concatenate(stamps).astype(np.int64),
                        ohlcv, funding)


def index_for(m: MarketArrays) -> MarketArrays:
    ts = np.delete(np.unique(m.ts_ns)[5:], [100, 300, 301])  # starts late, misses days
    close = np.exp(np.cumsum(np.random.default_rng(1).normal(0.0, 0.01, len(ts))))
    ohlcv = np.asfortranarray(np.column_stack([close, close * 1.01, close * 0.99, close, np.zeros(len(ts))]))
    return MarketArrays(("IDX",), np.array([0, len(ts)], dtype=np.int64), ts, ohlcv)


def reference_observation(ts_ns, ohlcv, offsets, spec, rows, index_ts_ns=None, index_ohlc=None, funding=None):
    """The plain window gather the builder used before issue 12: an index array per window,
    ``np.take``, clip, cast. The fast gather must give these floats bit for bit."""
    offsets = np.asarray(offsets, dtype=np.int64)
    w, c = spec.window_bars, spec.clip_log_ratio
    ohlcv = np.asarray(ohlcv, dtype=np.float64)
    log_hloc = np.log(ohlcv[:, HLOC])
    series_start = np.repeat(offsets[:-1], np.diff(offsets))
    src = window_rows(rows, series_start, w)
    ref = log_hloc[rows, 3]

    def ratio(values, s, r):
        return np.clip(np.take(values, s, axis=0) - r[:, None, None], -c, c).astype(np.float32)

    def rel_volume(v):
        mean = v.mean(axis=1, keepdims=True)
        return np.clip(np.divide(v, mean, out=v.copy(), where=mean > 0), 0.0, float(w)).astype(np.float32)

    out = {f"{spec.bar_name}_hloc": ratio(log_hloc, src, ref)}
    for p in spec.periods:
        bars = partial_bars(ts_ns, ohlcv, offsets, p)
        psrc = period_window_rows(rows, bars, w)
        name = {"D": "daily", "W": "weekly", "M": "monthly", "H4": "4h"}[p]
        out[f"{name}_hloc"] = ratio(np.log(bars.ohlcv[:, HLOC]), psrc, ref)
        if p in spec.volume_periods:
            out[f"{name}_volume"] = rel_volume(np.take(bars.ohlcv[:, VOLUME], psrc))
    if spec.with_index:
        idx = np.zeros((len(ts_ns), 4))
        if index_ohlc is not None:
            idx = np.log(align_to_calendar(ts_ns, index_ts_ns, np.asarray(index_ohlc, np.float64))[0][:, HLOC])
        out["index_hloc"] = ratio(idx, src, idx[rows, 3])
    out[f"{spec.bar_name}_volume"] = rel_volume(np.take(ohlcv[:, VOLUME], src))
    if spec.with_funding:
        f = np.zeros(len(ts_ns)) if funding is None else funding * 1e4
        out["funding_bps"] = np.clip(np.take(f, src), -spec.funding_clip_bps, spec.funding_clip_bps).astype(np.float32)
    return {k: out[k] for k in spec.fields() if k in out}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), k  # bits: -0.0 is not 0.0


SPECS = [ObservationSpec(max_bars_held=9),
         ObservationSpec(window_bars=1, periods=("W",), volume_periods=("W",), max_bars_held=9),
         ObservationSpec(window_bars=2, clip_log_ratio=0.05, max_bars_held=9),
         ObservationSpec(window_bars=7, bar_name="hourly", periods=("H4", "D"), volume_periods=("D",),
                         with_index=False, with_funding=True, max_bars_held=9)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"w{s.window_bars}-{'-'.join(s.periods)}")
@pytest.mark.parametrize("with_index", [True, False])
def test_gather_equals_the_plain_window_gather_bit_for_bit(spec, with_index):
    m = ragged_market(hourly=spec.with_funding)
    idx = index_for(m) if with_index else None
    args = (idx.ts_ns, idx.ohlcv) if idx is not None else (None, None)
    base = prepare_features(m.ts_ns, m.ohlcv, m.offsets, spec, *args, m.funding_rate)
    rng = np.random.default_rng(0)
    n = len(m.ts_ns)
    cases = [rng.integers(0, n, 1), rng.integers(0, n, 64), np.arange(n),  # anywhere, and every row at once
             np.arange(m.offsets[4], m.offsets[4] + 300), np.arange(m.offsets[3] + 2, m.offsets[3] + 9)]  # runs
    if with_index and spec.with_index:  # rows whose window is on the index's own calendar (a shared table), and others
        assert (base.index_k >= 0).any() and (base.index_k < 0).any()
    for rows in cases:
        want = reference_observation(m.ts_ns, m.ohlcv, m.offsets, spec, rows, *args, m.funding_rate)
        got = market_observation(base, rows)
        assert list(got) == list(want)  # the spec's order
        assert_bitwise_equal(got, want)
        assert_bitwise_equal(market_observation(base, rows, None, {}), want)


def test_a_kept_scratch_dict_never_changes_the_floats():
    """The scratch dict a caller keeps between calls remembers completed-period windows by
    position: rows advancing, jumping, changing count, or another market must not leak."""
    m = ragged_market()
    spec = SPECS[0]
    idx = index_for(m)
    bases = [prepare_features(m.ts_ns, m.ohlcv, m.offsets, spec, idx.ts_ns, idx.ohlcv),
             prepare_features(m.ts_ns, m.ohlcv * 1.5, m.offsets, spec)]  # another market, same shapes
    rng = np.random.default_rng(5)
    scratch: dict = {}
    rows = rng.integers(0, len(m.ts_ns) - 200, 16)
    for step in range(150):
        if step % 40 == 39:
            rows = rng.integers(0, len(m.ts_ns) - 200, 16 if step < 100 else 9)  # resets, a new count
        base = bases[step % 7 == 6]
        assert_bitwise_equal(market_observation(base, rows, None, scratch), market_observation(base, rows))
        rows = rows + 1


def test_every_array_a_step_gathers_from_is_c_contiguous_even_from_fortran_inputs():
    m, perps = ragged_market(), ragged_market(hourly=True)
    assert m.ohlcv.flags.f_contiguous and not m.ohlcv.flags.c_contiguous
    engines = [StockSwingEnv(m, index_for(m), precompute_max_mb=0.0).engine,
               StockSwingVectorEnv(3, m, index_for(m), precompute_max_mb=0.0).engine,
               CryptoFuturesEnv(perps, window_bars=8, episode_bars=20, precompute_max_mb=0.0).engine,
               PortfolioEnv(m.select(["S0", "S4"]), index_for(m), window_bars=8, episode_bars=20,
                            precompute_max_mb=0.0).engine]
    for engine in engines:
        arrays = engine._base.gathered_arrays()
        assert {"start", "log_close", "bar_log_hloc", "bar_volume"} <= set(arrays)
        bad = [k for k, a in arrays.items() if not a.flags.c_contiguous]
        assert not bad, f"{type(engine).__name__}: not C-contiguous: {bad}"


def test_a_gather_allocates_for_its_rows_not_for_the_market():
    """The regression of issue 12 without a clock: a Fortran-ordered base array made every
    ``np.take(axis=0)`` copy it whole; a few rows must allocate a few rows' worth."""
    rng = np.random.default_rng(2)
    n = 200_000
    close = np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    ohlcv = np.asfortranarray(np.column_stack([close, close * 1.01, close * 0.99, close, np.full(n, 1e3)]))
    offsets = np.array([0, n // 2, n])
    ts = np.concatenate([business_days_ts_ns(n // 2)] * 2)
    spec = ObservationSpec(max_bars_held=9)
    base = prepare_features(ts, ohlcv, offsets, spec, ts[: n // 2], ohlcv[: n // 2])
    smallest = min(a.nbytes for a in base.gathered_arrays().values() if a.nbytes > n)  # ~1.6 MB
    rows = np.array([1000, n // 2 + 777, n - 1])
    market_observation(base, rows)  # warm (cached views)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        market_observation(base, rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000 < smallest, f"a 3-row gather allocated {peak:,} bytes"


def _faces(kind: str, precompute_max_mb: float | None, vector: bool):
    if kind == "stock":
        m = ragged_market()
        kw = dict(market=m, index=index_for(m), episode_bars=30, precompute_max_mb=precompute_max_mb, mode="swing")
        return StockSwingVectorEnv(5, **kw) if vector else StockSwingEnv(**kw)
    if kind == "backtest":  # one long episode: the single face's chunks refill many times
        m = ragged_market()
        kw = dict(market=m, index=index_for(m), episode_bars=None, random_start=False, symbols=("S4",),
                  precompute_max_mb=precompute_max_mb)
        return StockSwingVectorEnv(2, **kw) if vector else StockSwingEnv(**kw)
    if kind == "perp":
        m = generate_perpetual(seed=4, n_symbols=3, n_bars=900)
        kw = dict(market=m, episode_bars=200, leverage=10.0, precompute_max_mb=precompute_max_mb)
        return CryptoFuturesVectorEnv(5, **kw) if vector else CryptoFuturesEnv(**kw)
    m = ragged_market()
    kw = dict(market=m.select(["S0", "S3", "S4", "S5"]), index=index_for(m), n_assets=2, episode_bars=25,
              precompute_max_mb=precompute_max_mb)
    return PortfolioVectorEnv(4, **kw) if vector else PortfolioEnv(**kw)


@pytest.mark.parametrize("kind", ["stock", "backtest", "perp", "portfolio"])
@pytest.mark.parametrize("vector", [False, True], ids=["single", "vector"])
def test_gathered_faces_give_the_precomputed_observations(kind, vector):
    gathered, tables = _faces(kind, 0.0, vector), _faces(kind, 1024.0, vector)
    assert not gathered.engine.precomputed and tables.engine.precomputed
    steps = 900 if kind == "backtest" else 120
    gathered.action_space.seed(0)
    actions = [gathered.action_space.sample() for _ in range(steps)]
    kept = []
    for env in (gathered, tables):
        obs, _ = env.reset(seed=3)
        record = [obs]
        for a in actions:
            obs, _, terminated, truncated, _ = env.step(a)
            record.append(obs)
            if not vector and (terminated or truncated):
                obs, _ = env.reset()
                record.append(obs)
        kept.append(record)
    assert len(kept[0]) == len(kept[1])
    for got, want in zip(*kept, strict=True):
        assert_bitwise_equal(got, want)


def test_single_face_observations_stay_valid_after_later_chunks():
    env = _faces("backtest", 0.0, vector=False)
    first, _ = env.reset(seed=0)
    frozen = {k: v.copy() for k, v in first.items()}
    for _ in range(600):  # several CHUNK_ROWS chunks later
        env.step(0)
    assert_bitwise_equal(first, frozen)
    assert not first["daily_hloc"].flags.writeable


def test_the_budget_follows_the_available_memory_unless_set(monkeypatch, caplog):
    m = ragged_market()
    need_mb = len(m.ts_ns) * ObservationSpec().market_bytes_per_row() / 2**20
    caplog.set_level(logging.INFO, logger="envs.core.tables")
    monkeypatch.setattr(memory, "available_bytes", lambda: int(need_mb / memory.AUTO_FRACTION * 0.5 * 2**20))
    assert not StockSwingVectorEnv(2, m, index_for(m)).engine.precomputed
    assert "gathered per step" in caplog.text and "MB available" in caplog.text
    monkeypatch.setattr(memory, "available_bytes", lambda: int(need_mb / memory.AUTO_FRACTION * 2.0 * 2**20))
    assert StockSwingVectorEnv(2, m, index_for(m)).engine.precomputed
    assert StockSwingVectorEnv(2, m, index_for(m), precompute_max_mb=0.0).engine.precomputed is False
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    assert memory.precompute_budget_mb(None)[0] == memory.FALLBACK_MB
    assert "set by precompute_max_mb" in memory.precompute_budget_mb(3.0)[1]


def test_available_memory_reads_meminfo_and_the_cgroup_limit(tmp_path):
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    cgroup.mkdir()
    (proc / "meminfo").write_text("MemTotal: 8000000 kB\nMemAvailable: 4000000 kB\n")
    assert memory.available_bytes(proc, cgroup) == 4_000_000 * 1024
    (cgroup / "memory.max").write_text("3000000000\n")
    (cgroup / "memory.current").write_text("1000000000\n")
    assert memory.available_bytes(proc, cgroup) == 2_000_000_000
    (cgroup / "memory.max").write_text("max\n")  # no limit
    assert memory.available_bytes(proc, cgroup) == 4_000_000 * 1024
