"""Trading-calendar gaps, one-bar spikes and unadjusted splits, as validation faults."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.data.ingest import ingest_frame
from app.data.repair import RepairPolicy, repair
from app.data.schema import DatasetKey, canonicalize
from app.data.store import ParquetStore
from app.data.validate import validate
from app.errors import DataValidationError

STOOQ = Path(__file__).resolve().parents[4] / "shared" / "data" / "us_stocks_daily_1500_stooq_1962_2017.parquet"
# NYSE sessions of 2021-01-04 .. 2021-03-05, written out by hand (no exchange_calendars here):
# weekdays minus Martin Luther King Day (01-18) and Washington's Birthday (02-15).
HOLIDAYS = {"2021-01-18", "2021-02-15"}
SESSIONS = [d for d in pd.bdate_range("2021-01-04", "2021-03-05", tz="UTC")
            if d.strftime("%Y-%m-%d") not in HOLIDAYS]


def daily(closes: np.ndarray, days: list[pd.Timestamp] | None = None, symbol: str = "AAA",
          opens: np.ndarray | None = None) -> pd.DataFrame:
    days = days if days is not None else SESSIONS[: len(closes)]
    opens = np.r_[closes[0], closes[:-1]] if opens is None else opens
    return pd.DataFrame({"timestamp": pd.DatetimeIndex(days).as_unit("ns"), "open": opens,
                         "high": np.maximum(opens, closes) * 1.01, "low": np.minimum(opens, closes) * 0.99,
                         "close": closes, "volume": 1000.0, "symbol": symbol})


def codes(report, code: str) -> list[tuple[str, str]]:
    return [(f.symbol, f.timestamp.strftime("%Y-%m-%d")) for f in report.faults if f.code == code]


def walk(n: int, seed: int = 0) -> np.ndarray:
    return 50 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.01, n)))


# ----------------------------------------------------------------------------- calendar gaps

def test_weekends_and_holidays_are_not_gaps_for_stocks_but_a_missing_session_is() -> None:
    days = [d for d in SESSIONS if d != pd.Timestamp("2021-02-10", tz="UTC")]
    report = validate(daily(walk(len(days)), days), file="f", timeframe="1d", market="stock")
    assert codes(report, "gap") == [("AAA", "2021-02-10")]


def test_crypto_daily_bars_are_checked_every_day() -> None:
    days = list(pd.date_range("2021-01-01", periods=10, freq="1D", tz="UTC"))
    del days[4]
    report = validate(daily(walk(9), days), file="f", timeframe="1d", market="spot")
    assert codes(report, "gap") == [("AAA", "2021-01-05")]


# ----------------------------------------------------------------------------- spikes

def spiked(factor: float = 10.0, row: int = 20, persist: bool = False) -> pd.DataFrame:
    closes = walk(40)
    closes[row: None if persist else row + 1] /= factor
    return daily(closes, opens=np.r_[closes[0], closes[:-1]] if persist else walk(40))


@pytest.mark.parametrize(("frame", "expected"), [
    (spiked(10.0), [("AAA", SESSIONS[20].strftime("%Y-%m-%d"))]),     # x10 typo in one close
    (spiked(1 / 6), [("AAA", SESSIONS[20].strftime("%Y-%m-%d"))]),    # x6 the other way
    (spiked(4.0), []),                                                 # under x5: a market move
    (spiked(10.0, persist=True), []),                                  # stays: not a spike
    (spiked(10.0, row=39), []),                                        # last bar: unknown yet
])
def test_one_bar_spikes_that_revert_are_errors(frame, expected) -> None:
    report = validate(frame, file="f", timeframe="1d", market="stock")
    assert codes(report, "price_spike") == expected
    assert report.ok == (not expected)


def test_a_spike_is_dropped_by_the_default_repair_and_logged(tmp_path) -> None:
    frame = spiked(10.0)
    fixed, log = repair(canonicalize(frame))
    assert len(fixed) == 39 and SESSIONS[20] not in set(fixed["timestamp"])
    assert [a.action for a in log.actions] == ["drop_spikes"]
    assert SESSIONS[20].isoformat() in log.actions[0].detail
    store = ParquetStore(tmp_path)
    assert ingest_frame(store, DatasetKey("t", "stock", "1d"), frame, name="f").written == {"AAA": 39}
    with pytest.raises(DataValidationError, match="price_spike"):
        ingest_frame(store, DatasetKey("t", "stock", "1d"), frame, name="f",
                     policy=RepairPolicy(drop_spikes=False))


@pytest.mark.skipif(not STOOQ.exists(), reason="shared stooq data not present")
def test_eix_2012_03_08_in_the_stooq_data_is_flagged() -> None:
    eix = pd.read_parquet(STOOQ, filters=[("symbol", "==", "EIX")])
    report = validate(eix, file=str(STOOQ), timeframe="1d", market="stock")
    spikes = codes(report, "price_spike")
    assert ("EIX", "2012-03-08") in spikes
    print("EIX spikes:", spikes)


# ----------------------------------------------------------------------------- splits

def split_at(row: int = 20, factor: float = 2.0, revert: bool = False) -> pd.DataFrame:
    """A raw (unadjusted) k:1 split at ``row``: it opens and trades at the new level."""
    closes = walk(40)
    closes[row:] /= factor
    opens = np.r_[closes[0], closes[:-1]]
    opens[row] /= factor
    if revert:  # a one-day bad level, back the next day
        closes[row + 1:] *= factor
        opens[row + 1:] *= factor
        opens[row + 1] = closes[row] * factor
    return daily(closes, opens=opens)


def test_a_raw_2_for_1_split_is_warned_about_naming_symbol_and_date(tmp_path, caplog) -> None:
    report = validate(split_at(20, 2.0), file="f", timeframe="1d", market="stock")
    day = SESSIONS[20].strftime("%Y-%m-%d")
    assert codes(report, "probable_split") == [("AAA", day)]
    assert report.ok  # a warning: the data may be right
    assert "2:1" in next(f.message for f in report.faults if f.code == "probable_split")
    with caplog.at_level(logging.WARNING, logger="raytrade.data"):
        ingest_frame(ParquetStore(tmp_path), DatasetKey("t", "stock", "1d"), split_at(20, 2.0), name="f")
    assert "probable_split" in caplog.text and "AAA" in caplog.text and day in caplog.text


@pytest.mark.parametrize(("frame", "market", "expected"), [
    (split_at(20, 0.5), "stock", 1),              # 1:2 reverse split
    (split_at(20, 3.0), "stock", 1),
    (split_at(20, 2.0, revert=True), "stock", 0),  # back the next day: not a split
    (split_at(20, 1.3), "stock", 0),              # not a split ratio
    (split_at(20, 2.0), "swap", 0),               # crypto has no splits (redenominations: repair)
    (daily(walk(40)), "stock", 0),
])
def test_split_detection_scenarios(frame, market, expected) -> None:
    report = validate(frame, file="f", timeframe="1d", market=market)
    assert len(codes(report, "probable_split")) == expected
