"""Corporate-action columns in imported files: applied, or warned about, never silently dropped.

Decision (what raytrade does with them; the canonical schema has no such columns):

* ``adj_close`` present (Yahoo's ``Adj Close``, Alpha Vantage's ``adjusted_close``): prices are
  **adjusted**. Each row's open, high, low and close are multiplied by ``adj_close / close`` of
  that row and its volume divided by it (so traded value is unchanged and a 2:1 split leaves
  no step in price or volume). The result is the vendor's adjusted series: split-adjusted, and
  total-return when the vendor's ``adj_close`` includes dividends (Yahoo's and Alpha Vantage's
  do). A row without ``adj_close`` gets NaN prices, which validation reports.
* ``split_coefficient`` without ``adj_close`` (Alpha Vantage; yfinance's ``Stock Splits``): a
  coefficient ``k`` on day t means a k:1 split took effect at t's open, so every earlier row of
  the symbol is divided by ``k`` (volume multiplied). Splits only: dividends stay unadjusted.
* ``dividend`` without ``adj_close``: not applied; a warning says the prices are price-return.
* ``adjust=False``: nothing applied, and a warning names the ignored columns.

Every adjustment is logged at WARNING level with the file and the number of rows changed. Files
without these columns may still hold unadjusted splits: validation warns about split-sized steps
that persist (``probable_split``, :mod:`app.data.anomalies`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from app.data.schema import PRICE_COLUMNS

log = logging.getLogger("raytrade.data")

#: Lower-cased vendor names of the corporate-action columns.
ALIASES: dict[str, str] = {
    "adj close": "adj_close", "adjclose": "adj_close", "adjusted_close": "adj_close",
    "adjusted close": "adj_close", "dividend_amount": "dividend", "dividends": "dividend",
    "stock splits": "split_coefficient", "splits": "split_coefficient",
}
ACTION_COLUMNS: tuple[str, ...] = ("adj_close", "split_coefficient", "dividend")


def apply_corporate_actions(df: pd.DataFrame, *, where: str, adjust: bool = True) -> pd.DataFrame:
    """``df`` (lower-cased columns, parsed timestamps) with its action columns applied and
    removed; see the module docstring for the rules."""
    df = df.rename(columns={c: ALIASES[c] for c in df.columns if c in ALIASES})
    present = [c for c in ACTION_COLUMNS if c in df.columns]
    if not present:
        return df
    if not adjust:
        log.warning("%s: columns %s ignored (adjustment turned off): prices are as the file "
                    "holds them", where, present)
        return df.drop(columns=present)
    df = df.copy()
    if "adj_close" in df.columns:
        df = _adjust_by_adj_close(df, where)
    else:
        if "split_coefficient" in df.columns:
            df = _adjust_splits(df, where)
        if "dividend" in df.columns and (pd.to_numeric(df["dividend"], errors="coerce").fillna(0) != 0).any():
            log.warning("%s: column 'dividend' is not applied (no adj_close): prices are "
                        "price-return, not total-return", where)
    return df.drop(columns=[c for c in ACTION_COLUMNS if c in df.columns])


def _adjust_by_adj_close(df: pd.DataFrame, where: str) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = (pd.to_numeric(df["adj_close"], errors="coerce").to_numpy(np.float64)
                  / pd.to_numeric(df["close"], errors="coerce").to_numpy(np.float64))
    _scale(df, factor)
    changed = int((~np.isclose(factor, 1.0)).sum())
    log.warning("%s: prices adjusted by adj_close/close (volume inversely) on %d of %d rows",
                where, changed, len(df))
    return df


def _adjust_splits(df: pd.DataFrame, where: str) -> pd.DataFrame:
    coef = pd.to_numeric(df["split_coefficient"], errors="coerce").to_numpy(np.float64)
    coef = np.where(np.isfinite(coef) & (coef > 0), coef, 1.0)
    if "symbol" in df.columns:
        symbols = df["symbol"].astype(str).to_numpy()
    else:
        symbols = np.zeros(len(df), dtype=object)
    order = np.lexsort((df["timestamp"].to_numpy(), pd.factorize(symbols)[0]))
    factor = np.ones(len(df), dtype=np.float64)
    sorted_symbols, sorted_coef = symbols[order], coef[order]
    for symbol in pd.unique(sorted_symbols):
        idx = np.flatnonzero(sorted_symbols == symbol)
        # factor of a row: 1 / product of the coefficients of every later row of the symbol
        later = np.r_[np.cumprod(sorted_coef[idx][::-1])[::-1][1:], 1.0]
        factor[order[idx]] = 1.0 / later
    _scale(df, factor)
    n_splits = int((coef != 1.0).sum())
    log.warning("%s: %d split(s) from 'split_coefficient' applied to earlier prices (volume "
                "inversely); %d rows changed", where, n_splits, int((factor != 1.0).sum()))
    return df


def _scale(df: pd.DataFrame, factor: np.ndarray) -> None:
    for col in PRICE_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64) * factor
    if "volume" in df.columns:
        df["volume"] = pd.to_numeric(df["volume"], errors="coerce").to_numpy(np.float64) / factor
