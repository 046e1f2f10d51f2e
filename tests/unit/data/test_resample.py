"""Resampling: hand-computed scenario tables, a look-ahead probe on real bars, properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.data.resample import (
    align_to_index,
    completed_bars,
    completed_bars_asof,
    partial_bars_asof,
    resample,
    resample_daily,
    resample_intraday,
)
from app.errors import DataValidationError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"
OHLCV = ["open", "high", "low", "close", "volume"]


def _load(name: str) -> pd.DataFrame:
    frame = pd.read_csv(FIXTURES / name)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["volume"] = frame["volume"].astype(np.float64)
    return frame


def _bars(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (symbol, date, open, high, low, close, volume) as a canonical-ish frame."""
    frame = pd.DataFrame(rows, columns=["symbol", "timestamp", *OHLCV])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame[["timestamp", *OHLCV, "symbol"]]


def _ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


# AAA: Good Friday 2016-03-25 missing (week closes Thursday), month boundary inside the week
# of 03-28 (Thu 31 March → Fri 1 April). BBB: a gap 03-23 → 03-29.
DAILY = _bars([
    ("AAA", "2016-03-21", 10, 12, 9, 11, 100), ("AAA", "2016-03-22", 11, 13, 10, 12, 200),
    ("AAA", "2016-03-23", 12, 15, 11, 14, 300), ("AAA", "2016-03-24", 14, 14, 8, 9, 400),
    ("AAA", "2016-03-28", 9, 10, 7, 8, 500), ("AAA", "2016-03-29", 8, 11, 8, 10, 600),
    ("AAA", "2016-03-30", 10, 12, 9, 11, 700), ("AAA", "2016-03-31", 11, 16, 10, 15, 800),
    ("AAA", "2016-04-01", 15, 15, 12, 13, 900), ("AAA", "2016-04-04", 13, 14, 11, 12, 1000),
    ("AAA", "2016-04-05", 12, 13, 10, 13, 1100),
    ("BBB", "2016-03-21", 50, 52, 49, 51, 10), ("BBB", "2016-03-22", 51, 55, 50, 54, 20),
    ("BBB", "2016-03-30", 54, 56, 53, 55, 30), ("BBB", "2016-03-31", 55, 57, 51, 52, 40),
    ("BBB", "2016-04-01", 52, 53, 50, 53, 50),
]).sample(frac=1.0, random_state=3)  # input order must not matter

# (symbol, timestamp, open, high, low, close, volume, n_bars, period_start), computed by hand.
WEEKLY = [
    ("AAA", "2016-03-24", 10, 15, 8, 9, 1000, 4, "2016-03-21"),
    ("AAA", "2016-04-01", 9, 16, 7, 13, 3500, 5, "2016-03-28"),
    ("AAA", "2016-04-05", 13, 14, 10, 13, 2100, 2, "2016-04-04"),
    ("BBB", "2016-03-22", 50, 55, 49, 54, 30, 2, "2016-03-21"),
    ("BBB", "2016-04-01", 54, 57, 50, 53, 120, 3, "2016-03-28"),
]
MONTHLY = [
    ("AAA", "2016-03-31", 10, 16, 7, 15, 3600, 8, "2016-03-01"),
    ("AAA", "2016-04-05", 15, 15, 10, 13, 3000, 3, "2016-04-01"),
    ("BBB", "2016-03-31", 50, 57, 49, 52, 100, 4, "2016-03-01"),
    ("BBB", "2016-04-01", 52, 53, 50, 53, 50, 1, "2016-04-01"),
]


def _expected(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["symbol", "timestamp", *OHLCV, "n_bars", "period_start"])
    for col in ("timestamp", "period_start"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[ns, UTC]")
    frame[OHLCV] = frame[OHLCV].astype(np.float64)
    return frame[["timestamp", *OHLCV, "symbol", "n_bars", "period_start"]]


@pytest.mark.parametrize(("timeframe", "rows"), [("1w", WEEKLY), ("1mo", MONTHLY)])
def test_resample_daily_matches_hand_computed_bars(timeframe: str, rows: list[tuple]) -> None:
    out = resample_daily(DAILY, timeframe)
    pd.testing.assert_frame_equal(out, _expected(rows), check_dtype=False)
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(out[c].dtype == np.float64 for c in OHLCV)
    pd.testing.assert_frame_equal(resample(DAILY, timeframe, source_timeframe="1d"), out)


def test_partial_bars_asof_hand_computed() -> None:
    out = partial_bars_asof(DAILY, "1w").set_index(["symbol", "timestamp"])
    # AAA as of Tuesday 03-22: Monday and Tuesday only.
    assert out.loc[("AAA", _ts("2016-03-22")), OHLCV].tolist() == [10, 13, 9, 12, 300]
    assert out.loc[("AAA", _ts("2016-03-22")), "n_bars"] == 2
    # AAA as of Thursday 03-31 (week of 03-28): 4 days so far.
    assert out.loc[("AAA", _ts("2016-03-31")), OHLCV].tolist() == [9, 16, 7, 15, 2600]
    # BBB after its gap: the week of 03-28 starts on Wednesday 03-30.
    assert out.loc[("BBB", _ts("2016-03-30")), OHLCV].tolist() == [54, 56, 53, 55, 30]
    monthly = partial_bars_asof(DAILY, "1mo").set_index(["symbol", "timestamp"])
    assert monthly.loc[("AAA", _ts("2016-04-04")), OHLCV].tolist() == [15, 15, 11, 12, 1900]
    assert len(out) == len(DAILY)


@pytest.mark.parametrize("timeframe", ["1w", "1mo"])
def test_partial_bar_on_last_day_of_period_is_the_complete_bar(timeframe: str) -> None:
    bars = _load("stocks_daily_aapl_wbs_2015-10_2016-04.csv")
    full = resample_daily(bars, timeframe)
    asof = partial_bars_asof(bars, timeframe)
    merged = full.merge(asof, on=["symbol", "timestamp"], suffixes=("", "_asof"))
    assert len(merged) == len(full)
    for col in [*OHLCV, "n_bars"]:
        np.testing.assert_array_equal(merged[col], merged[f"{col}_asof"])


def test_completed_bars_leave_out_the_period_in_progress() -> None:
    weekly = completed_bars(DAILY, "1w")
    assert list(zip(weekly["symbol"], weekly["timestamp"].dt.strftime("%m-%d"), strict=True)) == [
        ("AAA", "03-24"), ("AAA", "04-01"), ("BBB", "03-22")]
    # As of Friday 04-01 the week of 03-28 is not provably over; as of Sunday 04-03 it is.
    friday = completed_bars(DAILY, "1w", as_of="2016-04-01T00:00Z")
    assert friday["timestamp"].dt.strftime("%m-%d").tolist() == ["03-24", "03-22"]
    sunday = completed_bars(DAILY, "1w", as_of=_ts("2016-04-03"))
    assert sunday["timestamp"].dt.strftime("%m-%d").tolist() == ["03-24", "04-01", "03-22", "04-01"]
    march = completed_bars(DAILY, "1mo", as_of=_ts("2016-03-31"))
    pd.testing.assert_frame_equal(march, _expected([MONTHLY[0], MONTHLY[2]]), check_dtype=False)
    assert completed_bars(DAILY, "1w", as_of=_ts("2000-01-01")).empty


def test_completed_bars_asof_gives_the_previous_period() -> None:
    out = completed_bars_asof(DAILY, "1w").set_index(["symbol", "timestamp"])
    assert out.loc[("AAA", _ts("2016-03-24")), OHLCV].isna().all()
    row = out.loc[("AAA", _ts("2016-03-29"))]
    assert row[OHLCV].tolist() == [10, 15, 8, 9, 1000]
    assert row["bar_timestamp"] == _ts("2016-03-24") and row["n_bars"] == 4
    monthly = completed_bars_asof(DAILY, "1mo").set_index(["symbol", "timestamp"])
    assert monthly.loc[("BBB", _ts("2016-04-01")), OHLCV].tolist() == [50, 57, 49, 52, 100]
    flat = out.reset_index().dropna(subset=["bar_timestamp"])
    assert (flat["bar_timestamp"] < flat["timestamp"]).all()


def test_real_holiday_weeks_and_a_gap_at_a_month_start() -> None:
    bars = _load("stocks_daily_aapl_wbs_2015-10_2016-04.csv")
    weekly = resample_daily(bars, "1w").set_index(["symbol", "period_start"])
    # Good Friday and Christmas 2015 (both Fridays): the week closes on Thursday.
    assert weekly.loc[("AAPL", _ts("2016-03-21")), "timestamp"] == _ts("2016-03-24")
    assert weekly.loc[("AAPL", _ts("2015-12-21")), "timestamp"] == _ts("2015-12-24")
    assert weekly.loc[("AAPL", _ts("2015-12-21")), "n_bars"] == 4
    monthly = resample_daily(bars, "1mo").set_index(["symbol", "period_start"])
    wbs = bars[bars["symbol"] == "WBS"].set_index("timestamp")
    feb = monthly.loc[("WBS", _ts("2016-02-01"))]
    assert feb["open"] == wbs.loc[_ts("2016-02-02"), "open"]  # 02-01 is missing for WBS
    assert feb["n_bars"] == 19 and monthly.loc[("AAPL", _ts("2016-02-01")), "n_bars"] == 20


# ------------------------------------------------------------------- look-ahead probe


def _perturb_after(bars: pd.DataFrame, t: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    later = (bars["timestamp"] > t).to_numpy()
    factor = np.where(later, rng.uniform(0.5, 2.0, size=len(bars)), 1.0)
    changed = {col: bars[col].to_numpy() * factor for col in ("open", "high", "low", "close")}
    changed["volume"] = np.where(later, rng.uniform(0, 1e9, size=len(bars)), bars["volume"].to_numpy())
    return bars.assign(**changed)


@pytest.mark.parametrize("function", [partial_bars_asof, completed_bars_asof])
def test_lookahead_probe_every_t_of_a_real_series(function) -> None:
    bars = _load("stocks_daily_aapl_wbs_2015-10_2016-04.csv")
    rng = np.random.default_rng(0)
    base = {tf: function(bars, tf) for tf in ("1w", "1mo")}
    for t in np.sort(bars["timestamp"].unique()):
        perturbed = _perturb_after(bars, t, rng)
        for tf, expected in base.items():
            got = function(perturbed, tf)
            seen = (expected["timestamp"] <= t).to_numpy()
            pd.testing.assert_frame_equal(got.loc[seen], expected.loc[seen])


def test_lookahead_probe_index_alignment() -> None:
    stock = _load("stocks_daily_aapl_wbs_2015-10_2016-04.csv")
    index = _load("index_daily_gspc_2015-10_2016-04.csv")
    index = index[~index["timestamp"].isin([_ts("2016-01-12"), _ts("2016-03-01")])]
    base = align_to_index(stock, index).frame
    rng = np.random.default_rng(1)
    for t in np.sort(stock["timestamp"].unique())[::5]:
        got = align_to_index(stock, _perturb_after(index, t, rng)).frame
        seen = (base["timestamp"] <= t).to_numpy()
        pd.testing.assert_frame_equal(got.loc[seen], base.loc[seen])


# ------------------------------------------------------------------- index alignment


def test_align_to_index_backward_only_and_reports_missing_dates() -> None:
    stock = _load("stocks_daily_aapl_wbs_2015-10_2016-04.csv")
    index = _load("index_daily_gspc_2015-10_2016-04.csv")
    holes = [_ts("2016-01-12"), _ts("2016-03-01")]
    result = align_to_index(stock, index[~index["timestamp"].isin(holes)])
    frame = result.frame
    assert result.n_missing_dates == 2 and list(result.missing_dates) == holes
    assert len(frame) == len(stock) and (frame["index_timestamp"] <= frame["timestamp"]).all()
    row = frame[(frame["symbol"] == "AAPL") & (frame["timestamp"] == holes[0])].iloc[0]
    monday = index[index["timestamp"] == _ts("2016-01-11")].iloc[0]
    assert row["index_timestamp"] == _ts("2016-01-11") and not row["same_day"]
    assert row["index_close"] == monday["close"]
    assert frame["same_day"].sum() == len(stock) - 2 * 2  # two symbols, two holes each


def test_align_to_index_before_index_start_and_staleness() -> None:
    stock = _bars([("S", "2016-01-04", 1, 1, 1, 1, 1), ("S", "2016-01-05", 1, 1, 1, 1, 1),
                   ("S", "2016-01-08", 1, 1, 1, 1, 1)])
    index = _bars([("^X", "2016-01-05", 5, 6, 4, 5.5, 10)])
    result = align_to_index(stock, index)
    assert result.frame["index_close"].isna().tolist() == [True, False, False]
    assert result.n_missing_dates == 2
    strict = align_to_index(stock, index, max_staleness_days=1).frame
    assert strict["index_close"].isna().tolist() == [True, False, True]
    with pytest.raises(DataValidationError, match="exactly one symbol"):
        align_to_index(stock, pd.concat([index, index.assign(symbol="^Y")]))


# ------------------------------------------------------------------- intraday


def test_resample_intraday_hand_computed_4h() -> None:
    hourly = _bars([("X", f"2021-01-01T{h:02d}:00Z", o, o + 2, o - 1, o + 1, 10.0 * (h + 1))
                    for h, o in [(0, 10), (1, 11), (2, 12), (3, 13), (4, 20), (6, 22)]])
    out = resample_intraday(hourly, "4h")
    assert out["timestamp"].dt.strftime("%H").tolist() == ["00", "04"]
    assert out[OHLCV].values.tolist() == [[10, 15, 9, 14, 100], [20, 24, 19, 23, 120]]
    assert out["n_bars"].tolist() == [4, 2]
    assert len(resample_intraday(hourly, "4h", drop_incomplete=True)) == 1


def test_resample_intraday_real_gap_is_flagged_or_dropped() -> None:
    hourly = _load("crypto_spot_1h_btc_eth_2020-12-20_22.csv")
    four = resample_intraday(hourly, "4h")
    short = four[four["n_bars"] < 4]
    assert short["timestamp"].dt.strftime("%d %H").tolist() == ["21 12", "21 16"] * 2
    assert short["n_bars"].tolist() == [3, 2, 3, 2]
    kept = resample_intraday(hourly, "4h", drop_incomplete=True)
    assert len(kept) == len(four) - 4 and (kept["n_bars"] == 4).all()
    daily = resample(hourly, "1d", source_timeframe="1h").set_index(["symbol", "timestamp"])
    assert daily.loc[("BTC/USDT", _ts("2020-12-21")), "n_bars"] == 21
    raw = hourly[(hourly["symbol"] == "BTC/USDT") & (hourly["timestamp"].dt.day == 21)]
    got = daily.loc[("BTC/USDT", _ts("2020-12-21"))]
    assert got["open"] == raw["open"].iloc[0] and got["close"] == raw["close"].iloc[-1]
    assert got["high"] == raw["high"].max() and got["low"] == raw["low"].min()
    assert got["volume"] == pytest.approx(raw["volume"].sum(), rel=1e-12)


# ------------------------------------------------------------------- errors


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="'2w'"):
        resample_daily(DAILY, "2w")
    with pytest.raises(ValueError, match="'3h'"):
        resample(DAILY, "3h", source_timeframe="1h")
    with pytest.raises(ValueError, match="whole multiple"):
        resample_intraday(DAILY, "1h", source_timeframe="4h")
    with pytest.raises(DataValidationError, match="volume"):
        resample_daily(DAILY.drop(columns="volume"), "1w")
    with pytest.raises(DataValidationError, match="time zone"):
        resample_daily(DAILY.assign(timestamp=DAILY["timestamp"].dt.tz_localize(None)), "1w")
    with pytest.raises(DataValidationError, match="00:00 UTC"):
        resample_daily(DAILY.assign(timestamp=DAILY["timestamp"] + pd.Timedelta(hours=5)), "1w")
    with pytest.raises(DataValidationError, match="duplicate"):
        resample_daily(pd.concat([DAILY, DAILY.head(1)]), "1w")
    with pytest.raises(DataValidationError, match="NaN"):
        resample_daily(DAILY.assign(close=np.where(np.arange(len(DAILY)) == 2, np.nan, DAILY["close"])), "1w")
    with pytest.raises(DataValidationError, match="1h grid"):
        resample_intraday(DAILY.assign(timestamp=DAILY["timestamp"] + pd.Timedelta(minutes=30)), "4h")
    with pytest.raises(TypeError, match="DataFrame"):
        resample_daily(DAILY.to_numpy(), "1w")  # type: ignore[arg-type]


# ------------------------------------------------------------------- properties


@st.composite
def daily_bars(draw: st.DrawFn) -> pd.DataFrame:
    days = pd.date_range("2015-12-01", "2016-03-15", freq="D", tz="UTC")
    rows = []
    for symbol in draw(st.sets(st.sampled_from(["A", "B", "C"]), min_size=1)):
        picked = draw(st.sets(st.integers(0, len(days) - 1), min_size=1, max_size=60))
        for i in sorted(picked):
            o, c = draw(st.floats(1, 100)), draw(st.floats(1, 100))
            up, down = draw(st.floats(0, 10)), draw(st.floats(0, 0.99))
            rows.append((symbol, days[i], o, max(o, c) + up, min(o, c) * (1 - down), c,
                         draw(st.floats(0, 1e7))))
    return _bars(rows)


@settings(max_examples=40, deadline=None)
@given(bars=daily_bars(), timeframe=st.sampled_from(["1w", "1mo"]))
def test_property_daily_resample(bars: pd.DataFrame, timeframe: str) -> None:
    for out in (resample_daily(bars, timeframe), partial_bars_asof(bars, timeframe)):
        assert (out["high"] >= np.maximum(out["open"], out["close"])).all()
        assert (out["low"] <= np.minimum(out["open"], out["close"])).all()
    out = resample_daily(bars, timeframe)
    by_symbol = out.groupby("symbol")["volume"].sum()
    np.testing.assert_allclose(by_symbol, bars.groupby("symbol")["volume"].sum().loc[by_symbol.index], rtol=1e-9)
    assert out["n_bars"].sum() == len(bars)
    assert out["timestamp"].isin(bars["timestamp"]).all() and (out["timestamp"] >= out["period_start"]).all()
    span = pd.Timedelta(days=7) if timeframe == "1w" else pd.Timedelta(days=31)
    assert (out["timestamp"] - out["period_start"] < span).all()


@settings(max_examples=40, deadline=None)
@given(hours=st.sets(st.integers(0, 24 * 6), min_size=1, max_size=100), seed=st.integers(0, 2**16))
def test_property_4h_alignment_and_volume(hours: set[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    stamps = pd.Timestamp("2021-03-01", tz="UTC") + pd.to_timedelta(sorted(hours), unit="h")
    o, c = rng.uniform(1, 100, len(stamps)), rng.uniform(1, 100, len(stamps))
    bars = pd.DataFrame({"timestamp": stamps, "open": o, "high": np.maximum(o, c) + 1,
                         "low": np.minimum(o, c) - 0.5, "close": c,
                         "volume": rng.uniform(0, 1e6, len(stamps)), "symbol": "X"})
    out = resample_intraday(bars, "4h")
    assert (out["timestamp"].dt.hour % 4 == 0).all() and (out["timestamp"].dt.minute == 0).all()
    assert out["n_bars"].between(1, 4).all() and out["n_bars"].sum() == len(bars)
    assert out["volume"].sum() == pytest.approx(bars["volume"].sum(), rel=1e-9)
    assert (out["high"] >= np.maximum(out["open"], out["close"])).all()
    assert (out["low"] <= np.minimum(out["open"], out["close"])).all()
    assert set(bars["timestamp"].dt.floor("4h")) == set(out["timestamp"])
