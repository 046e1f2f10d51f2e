"""Splits: sector stratification, determinism, embargo, walk-forward order, JSON round trip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.data.splits import (
    Fold,
    Split,
    Window,
    apply_split,
    calendar_of,
    split_by_symbol,
    split_by_time,
    walk_forward_bars,
    walk_forward_days,
)
from app.errors import CorruptFileError, DataValidationError

SECTOR_SIZES = {"Energy": 37, "Financials": 29, "Health Care": 23, "Utilities": 19, "Unknown": 12}


def _metadata(sizes: dict[str, int] = SECTOR_SIZES) -> pd.DataFrame:
    rows = [(f"{sector[:3].upper()}{i:03d}", sector) for sector, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["symbol", "sector"])


def _ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def _assert_stratified(split: Split, metadata: pd.DataFrame, counts: dict[str, int]) -> None:
    sector_of = dict(zip(metadata["symbol"], metadata["sector"], strict=True))
    n_total = len(metadata)
    sizes = metadata["sector"].value_counts()
    for part, count in counts.items():
        got = pd.Series([sector_of[s] for s in split.symbols[part]]).value_counts()
        for sector, size in sizes.items():
            assert abs(got.get(sector, 0) - count * size / n_total) < 1, (part, sector)


# ------------------------------------------------------------------- by symbol


@pytest.mark.parametrize("counts", [(60, 30, 30), (50, 20, 20), (120, 0, 0), (1, 1, 1)])
def test_split_by_symbol_disjoint_exact_and_stratified(counts: tuple[int, int, int]) -> None:
    metadata = _metadata()
    split = split_by_symbol(metadata, seed=7, counts=counts)
    named = dict(zip(("train", "validation", "test"), counts, strict=True))
    assert {p: len(s) for p, s in split.symbols.items()} == named
    sets = [set(s) for s in split.symbols.values()]
    assert sum(len(s) for s in sets) == len(set().union(*sets))  # disjoint
    assert set().union(*sets) <= set(metadata["symbol"])
    _assert_stratified(split, metadata, named)
    assert split.method == "by_symbol" and split.seed == 7
    assert split.params["universe_size"] == len(metadata)


def test_split_by_symbol_fractions_and_mapping() -> None:
    metadata = _metadata()
    split = split_by_symbol(metadata, seed=1, fractions=(0.7, 0.15, 0.15))
    assert {p: len(s) for p, s in split.symbols.items()} == {"train": 84, "validation": 18, "test": 18}
    assert set().union(*map(set, split.symbols.values())) == set(metadata["symbol"])
    two = split_by_symbol(metadata, seed=1, counts={"train": 100, "test": 20})
    assert two.parts == ("train", "test")
    _assert_stratified(two, metadata, {"train": 100, "test": 20})


def test_split_by_symbol_is_deterministic_and_seed_dependent() -> None:
    metadata = _metadata()
    first = split_by_symbol(metadata, seed=42, counts=(60, 30, 30))
    shuffled = metadata.sample(frac=1.0, random_state=5).reset_index(drop=True)
    assert split_by_symbol(shuffled, seed=42, counts=(60, 30, 30)) == first
    other = split_by_symbol(metadata, seed=43, counts=(60, 30, 30))
    assert other.symbols["test"] != first.symbols["test"]
    _assert_stratified(other, metadata, {"train": 60, "validation": 30, "test": 30})


def test_split_by_symbol_errors() -> None:
    metadata = _metadata()
    with pytest.raises(ValueError, match="ask for 130 symbols but the universe has only 120"):
        split_by_symbol(metadata, seed=0, counts=(100, 20, 10))
    with pytest.raises(ValueError, match="exactly one of counts or fractions"):
        split_by_symbol(metadata, seed=0)
    with pytest.raises(ValueError, match="sum to at most 1"):
        split_by_symbol(metadata, seed=0, fractions=(0.8, 0.2, 0.1))
    with pytest.raises(DataValidationError, match="sector_harmonized"):
        split_by_symbol(metadata, seed=0, counts=(1, 1, 1), sector_column="sector_harmonized")
    with pytest.raises(DataValidationError, match="duplicate symbols"):
        split_by_symbol(pd.concat([metadata, metadata.head(2)]), seed=0, counts=(1, 1, 1))
    with pytest.raises(ValueError, match="seed"):
        split_by_symbol(metadata, seed=-1, counts=(1, 1, 1))


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
       shares=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 1)),
       seed=st.integers(0, 2**31))
def test_property_stratification_within_one(sizes: list[int], shares: tuple, seed: int) -> None:
    metadata = _metadata({f"S{i}": n for i, n in enumerate(sizes)})
    n_total = len(metadata)
    weights = np.array(shares) / sum(shares)
    counts = np.floor(weights[:3] * n_total).astype(int)
    split = split_by_symbol(metadata, seed=seed, counts=tuple(int(c) for c in counts))
    named = dict(zip(("train", "validation", "test"), map(int, counts), strict=True))
    assert {p: len(s) for p, s in split.symbols.items()} == named
    _assert_stratified(split, metadata, named)


# ------------------------------------------------------------------- by time

CALENDAR = pd.date_range("2015-01-01", "2016-12-31", freq="B", tz="UTC")


def test_split_by_time_windows_and_embargo_days() -> None:
    split = split_by_time(CALENDAR, train_end="2016-01-01T00:00Z", validation_end=_ts("2016-07-01"),
                          embargo_days=10)
    train, validation, test = (split.windows[p] for p in ("train", "validation", "test"))
    assert train == Window(_ts("2015-01-01"), _ts("2016-01-01"))
    assert validation.start - train.end == pd.Timedelta(days=10)
    assert test.start - validation.end == pd.Timedelta(days=10)
    assert test.end == _ts("2016-12-31")  # the day after the last bar, Friday 2016-12-30
    bars = pd.DataFrame({"timestamp": CALENDAR, "symbol": "X"})
    parts = [apply_split(bars, split, p)["timestamp"] for p in split.parts]
    for earlier, later in zip(parts, parts[1:], strict=False):
        assert later.min() - earlier.max() > pd.Timedelta(days=10)


@pytest.mark.parametrize("embargo_bars", [0, 1, 5])
def test_split_by_time_embargo_bars_counts_calendar_bars(embargo_bars: int) -> None:
    split = split_by_time(CALENDAR, train_end=_ts("2016-01-01"), validation_end=_ts("2016-07-01"),
                          embargo_bars=embargo_bars)
    bars = pd.DataFrame({"timestamp": CALENDAR, "symbol": "X"})
    positions = {ts: i for i, ts in enumerate(CALENDAR)}
    parts = [apply_split(bars, split, p)["timestamp"] for p in ("train", "validation", "test")]
    for earlier, later in zip(parts, parts[1:], strict=False):
        assert positions[later.iloc[0]] - positions[earlier.iloc[-1]] - 1 == embargo_bars
    assert sum(map(len, parts)) == len(CALENDAR) - 2 * embargo_bars


def test_split_by_time_train_test_only_and_errors() -> None:
    split = split_by_time(start="2010-01-01T00:00Z", end="2012-01-01T00:00Z", train_end="2011-01-01T00:00Z")
    assert split.parts == ("train", "test")
    with pytest.raises(ValueError, match="validation window .* is empty"):
        split_by_time(CALENDAR, train_end=_ts("2016-01-01"), validation_end=_ts("2016-01-05"),
                      embargo_days=5)
    with pytest.raises(ValueError, match="not both"):
        split_by_time(CALENDAR, train_end=_ts("2016-01-01"), embargo_days=1, embargo_bars=1)
    with pytest.raises(ValueError, match="no time zone"):
        split_by_time(CALENDAR, train_end="2016-01-01")
    with pytest.raises(ValueError, match="needs a calendar"):
        split_by_time(start=_ts("2010-01-01"), end=_ts("2012-01-01"), train_end=_ts("2011-01-01"),
                      embargo_bars=3)
    with pytest.raises(ValueError, match="holds no bar"):
        split_by_time(CALENDAR, train_end=_ts("2015-01-05"), start=_ts("2015-01-03"))  # a weekend
    with pytest.raises(ValueError, match="overlap"):
        Split(method="by_time", windows={"a": Window(_ts("2015-01-01"), _ts("2015-06-01")),
                                         "b": Window(_ts("2015-05-01"), _ts("2015-09-01"))})


# ------------------------------------------------------------------- walk-forward


@settings(max_examples=60, deadline=None)
@given(n_bars=st.integers(5, 300), train_bars=st.integers(1, 100), test_bars=st.integers(1, 50),
       step_bars=st.integers(1, 50), embargo_bars=st.integers(0, 5), expanding=st.booleans())
def test_property_walk_forward_bars(n_bars: int, train_bars: int, test_bars: int, step_bars: int,
                                    embargo_bars: int, expanding: bool) -> None:
    cal = CALENDAR[:n_bars]
    if train_bars + embargo_bars + test_bars > n_bars:
        with pytest.raises(ValueError, match="cannot hold"):
            walk_forward_bars(cal, train_bars=train_bars, test_bars=test_bars, step_bars=step_bars,
                              embargo_bars=embargo_bars, expanding=expanding)
        return
    split = walk_forward_bars(cal, train_bars=train_bars, test_bars=test_bars, step_bars=step_bars,
                              embargo_bars=embargo_bars, expanding=expanding)
    bars = pd.DataFrame({"timestamp": cal, "symbol": "X"})
    position = {ts: i for i, ts in enumerate(cal)}
    for k, fold in enumerate(split.folds):
        train = apply_split(bars, split, "train", fold=k)["timestamp"]
        test = apply_split(bars, split, "test", fold=k)["timestamp"]
        assert fold.index == k and fold.train.end <= fold.test.start
        assert len(test) == test_bars and train.max() < test.min()
        assert position[test.iloc[0]] - position[train.iloc[-1]] - 1 == embargo_bars
        assert len(train) == (train_bars + k * step_bars if expanding else train_bars)
        if expanding:
            assert train.iloc[0] == cal[0]
    starts = [f.test.start for f in split.folds]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    last_end = position[split.folds[-1].test.start] + test_bars
    assert last_end <= n_bars < last_end + step_bars  # no room left for one more fold


def test_walk_forward_days_rolling_and_max_folds() -> None:
    split = walk_forward_days(CALENDAR, train_days=365, test_days=30, step_days=30, embargo_days=5,
                              expanding=False, max_folds=4)
    assert len(split.folds) == 4
    for a, b in zip(split.folds, split.folds[1:], strict=False):
        assert b.train.start - a.train.start == pd.Timedelta(days=30)
    for fold in split.folds:
        assert fold.train.end - fold.train.start == pd.Timedelta(days=365)
        assert fold.test.start - fold.train.end == pd.Timedelta(days=5)
        assert fold.test.end - fold.test.start == pd.Timedelta(days=30)
    all_folds = walk_forward_days(CALENDAR, train_days=365, test_days=30)
    assert all_folds.folds[-1].test.end <= _ts("2017-01-01") and len(all_folds.folds) == 12
    assert all(f.train.start == _ts("2015-01-01") for f in all_folds.folds)


def test_fold_rejects_test_before_train() -> None:
    with pytest.raises(ValueError, match="before its train window ends"):
        Fold(0, Window(_ts("2015-01-01"), _ts("2015-06-01")), Window(_ts("2015-05-01"), _ts("2015-07-01")))


# ------------------------------------------------------------------- serialization and apply


def _examples() -> list[Split]:
    return [split_by_symbol(_metadata(), seed=3, counts=(60, 30, 30)),
            split_by_time(CALENDAR, train_end=_ts("2016-01-01"), validation_end=_ts("2016-07-01"),
                          embargo_bars=3),
            walk_forward_bars(CALENDAR, train_bars=250, test_bars=20, embargo_bars=2),
            walk_forward_days(start=_ts("2015-01-01"), end=_ts("2015-12-31"), train_days=100, test_days=50)]


@pytest.mark.parametrize("split", _examples(), ids=lambda s: s.method)
def test_json_round_trip_and_atomic_save(split: Split, tmp_path: Path) -> None:
    assert Split.from_json(split.to_json()) == split
    path = split.save(tmp_path / "runs" / "split.json")
    assert Split.load(path) == split
    assert os.listdir(path.parent) == ["split.json"]  # no temp file left behind
    assert split.to_json() == Split.load(path).to_json()  # stable bytes


def test_save_keeps_the_old_file_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = _examples()[:2]
    path = old.save(tmp_path / "split.json")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert Split.load(path) == old and os.listdir(tmp_path) == ["split.json"]


def test_load_rejects_a_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 1, "method": "by_symbol", "symbols": {"a": ["X"], "b": ["X"]}}')
    with pytest.raises(CorruptFileError, match="bad.json"):
        Split.load(bad)
    bad.write_text("{not json")
    with pytest.raises(CorruptFileError, match="bad.json"):
        Split.load(bad)
    with pytest.raises(ValueError, match="format_version"):
        Split.from_json('{"format_version": 99, "method": "by_time"}')


def test_apply_split_filters_symbols_windows_and_folds() -> None:
    metadata = _metadata()
    bars = pd.DataFrame({"timestamp": np.repeat(CALENDAR[:10].to_numpy(), len(metadata)),
                         "symbol": np.tile(metadata["symbol"].to_numpy(), 10), "close": 1.0})
    by_symbol = split_by_symbol(metadata, seed=0, counts=(60, 30, 30))
    test_rows = apply_split(bars, by_symbol, "test")
    assert set(test_rows["symbol"]) == set(by_symbol.symbols["test"]) and len(test_rows) == 300
    assert list(test_rows.columns) == ["timestamp", "symbol", "close"]
    wf = walk_forward_bars(CALENDAR[:10], train_bars=5, test_bars=2)
    assert len(apply_split(bars, wf, "test", fold=1)) == 2 * len(metadata)
    with pytest.raises(ValueError, match="needs fold"):
        apply_split(bars, wf, "test")
    with pytest.raises(ValueError, match="unknown part 'holdout'"):
        apply_split(bars, by_symbol, "holdout")
    with pytest.raises(DataValidationError, match="'symbol'"):
        apply_split(bars.drop(columns="symbol"), by_symbol, "train")
    assert calendar_of(bars).equals(CALENDAR[:10].as_unit("ns"))
