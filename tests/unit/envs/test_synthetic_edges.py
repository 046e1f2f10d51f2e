"""The learning benchmark's stock markets: seeded, valid, causal, and they plant what they say."""

from __future__ import annotations

import numpy as np
import pytest

from envs.core.market import MarketArrays
from envs.synthetic import EDGE_KINDS, generate
from envs.synthetic_edges import DEFAULTS, event_features


def _per_symbol(m: MarketArrays, arr: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows of each symbol of a per-row array, stacked ``[S, n, ...]``."""
    return np.stack([arr[m.rows(i)][:n] for i in range(m.n_symbols)])


@pytest.mark.parametrize("kind", EDGE_KINDS)
def test_edge_markets_are_seeded_and_valid(kind):
    a, b, c = (generate(kind, seed=s, n_symbols=3, n_bars=400) for s in (4, 4, 5))
    for name in ("oracle_position", "events", "oracle_entry"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.market.ohlcv, b.market.ohlcv)
    np.testing.assert_array_equal(a.index.ohlcv, b.index.ohlcv)
    assert not np.array_equal(a.market.ohlcv, c.market.ohlcv)
    o = a.market.ohlcv
    assert np.isfinite(o).all() and (o[:, :4] > 0).all() and (o[:, 4] > 0).all()
    assert (o[:, 1] >= o[:, [0, 3]].max(axis=1)).all() and (o[:, 2] <= o[:, [0, 3]].min(axis=1)).all()
    rows = len(o)
    assert a.oracle_position.shape == a.events.shape == a.oracle_entry.shape == (rows,)
    assert set(np.unique(a.oracle_position)) <= {0, 1}
    assert not (a.oracle_entry & (a.oracle_position == 0)).any()  # an entry is held


@pytest.mark.parametrize("kind", EDGE_KINDS)
def test_nothing_up_to_t_depends_on_bars_after_t(kind):
    """The look-ahead probe for generators: a market of 250 bars is the first 250 bars of the
    same seed's 600-bar market (other futures), bars, events and oracle decisions alike."""
    short, long = (generate(kind, seed=9, n_symbols=3, n_bars=n) for n in (250, 600))
    for name in ("oracle_position", "events", "oracle_entry"):
        np.testing.assert_array_equal(_per_symbol(short.market, getattr(short, name), 250),
                                      _per_symbol(long.market, getattr(long, name), 250), err_msg=name)
    np.testing.assert_array_equal(_per_symbol(short.market, short.market.ohlcv, 250),
                                  _per_symbol(long.market, long.market.ohlcv, 250))
    np.testing.assert_array_equal(short.index.ohlcv, long.index.ohlcv[:250])


def _detect(f: dict[str, np.ndarray]) -> np.ndarray:
    return (f["volume_ratio"] > 1.8) & (f["range_ratio"] > 1.5) & (f["close_location"] > 0.6)


@pytest.mark.parametrize("kind", ["rare_event", "regime", "noise"])
def test_the_event_shows_in_its_own_bar_and_not_before(kind):
    synth = generate(kind, seed=0, n_symbols=16, n_bars=2000)
    events = synth.events
    found = _detect(event_features(synth.market))
    assert (found & events).sum() / events.sum() > 0.85  # recall from the bar alone
    assert (found & events).sum() / found.sum() > 0.7  # decoys (one half of the pattern) rarely pass
    before = np.roll(events, -1)
    before[-1] = False
    assert found[before].mean() < 0.02  # the bar before an event looks like any other day
    assert abs(event_features(synth.market)["volume_ratio"][before].mean() - 1.0) < 0.1


def test_event_features_use_bars_up_to_t_only():
    synth = generate("rare_event", seed=1, n_symbols=1, n_bars=300)
    t = 150
    ohlcv = synth.market.ohlcv.copy()
    ohlcv[t + 1:, :4] *= 1.5
    ohlcv[t + 1:, 4] *= 10.0
    m = synth.market
    probe = MarketArrays(m.symbols, m.offsets, m.ts_ns, ohlcv)
    ref, got = event_features(m), event_features(probe)
    for key in ref:
        np.testing.assert_array_equal(ref[key][:t + 1], got[key][:t + 1], err_msg=key)
        assert not np.array_equal(ref[key][t + 1:], got[key][t + 1:]) or key == "close_location"


def test_pattern_noise_hides_the_event():
    clear = generate("rare_event", seed=0, n_symbols=16, n_bars=1500)
    blurred = generate("rare_event", seed=0, n_symbols=16, n_bars=1500, pattern_noise=1.0)

    def recall(s):
        return (_detect(event_features(s.market)) & s.events).sum() / s.events.sum()
    assert recall(blurred) < recall(clear) - 0.3


@pytest.mark.parametrize(("rate", "decoys"), [(0.015, 0.015), (0.03, 0.0), (0.01, 0.03)])
def test_event_and_decoy_rates(rate, decoys):
    synth = generate("rare_event", seed=2, n_symbols=24, n_bars=2500, event_rate=rate, decoy_rate=decoys)
    assert synth.events.mean() == pytest.approx(rate, rel=0.15)
    assert (synth.oracle_entry == synth.events).all()  # every rare event pays
    f = event_features(synth.market)
    spike_only = (f["volume_ratio"] > 2.2) & ~synth.events & (f["range_ratio"] < 1.2)
    assert spike_only.mean() == pytest.approx(decoys / 2 * 0.6, abs=0.003 + decoys * 0.2)
    rows = np.flatnonzero(synth.events)
    gaps = np.diff(rows)
    same_symbol = np.diff(rows // 2500) == 0
    assert gaps[same_symbol].min() > DEFAULTS["rare_event"]["horizon_bars"]  # refractory: every one tradable


def test_regime_events_pay_only_in_the_calm_regime():
    synth = generate("regime", seed=3, n_symbols=16, n_bars=2000)
    assert 0.3 < synth.oracle_entry.sum() / synth.events.sum() < 0.7
    ret = np.diff(np.log(synth.market.ohlcv[:, 3]))
    ret = np.append(ret, 0.0)
    ret[synth.market.offsets[1:] - 1] = 0.0  # no return across symbols
    calm = synth.oracle_entry
    stormy = synth.events & ~synth.oracle_entry
    window_vol = np.array([ret[r + 1:r + 21].std() for r in np.flatnonzero(synth.events)])
    assert window_vol[calm[synth.events]].mean() < 0.6 * window_vol[stormy[synth.events]].mean()


def test_relative_momentum_past_excess_predicts_future_excess():
    def corr(strength: float) -> float:
        synth = generate("relative_momentum", seed=4, n_symbols=16, n_bars=1500, strength=strength)
        idx = np.log(synth.index.ohlcv[:, 3])
        past, future = [], []
        for i in range(synth.market.n_symbols):
            ex = np.log(synth.market.ohlcv[synth.market.rows(i), 3]) - idx
            past.append(ex[40:-20:20] - ex[20:-40:20])
            future.append(ex[60::20] - ex[40:-20:20])
        return float(np.corrcoef(np.concatenate(past), np.concatenate(future))[0, 1])
    assert corr(1.0) > 0.2
    assert abs(corr(0.0)) < 0.1


@pytest.mark.parametrize(("params", "match"), [
    ({"bogus": 1.0}, "unknown"), ({"event_rate": 0.0}, "event_rate"), ({"event_rate": 0.04}, "horizon_bars"),
    ({"horizon_bars": 2.5}, "integer"), ({"pattern_noise": float("nan")}, "pattern_noise"),
    ({"volume_mult": True}, "volume_mult"),
])
def test_bad_knobs_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        generate("rare_event", **params)
