"""Trading calendars for the gap check: which sessions a symbol should have bars for.

US stocks and indices trade on the NYSE calendar (``XNYS`` of ``exchange_calendars``, which
ships its holiday rules, so this works offline): weekends, holidays and special closures are not
gaps. Crypto trades 24/7, where a fixed bar length is the calendar. The module is imported only
when a gap check needs it (``exchange_calendars`` takes about a second to import).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from app.data.schema import DAY_NS, MarketType

log = logging.getLogger("raytrade.data")

#: The calendar each market type trades on; ``24/7`` means every bar of the timeframe.
CALENDAR_OF_MARKET: dict[MarketType, str] = {
    MarketType.STOCK: "XNYS", MarketType.INDEX: "XNYS",
    MarketType.SPOT: "24/7", MarketType.SWAP: "24/7",
}

#: The span asked of exchange_calendars (its default is only the last 20 years).
_EARLIEST, _LATEST = "1885-01-01", "2035-12-31"


def calendar_for(market: MarketType | str | None) -> str | None:
    """Name of the exchange calendar of ``market`` (None when the market is unknown)."""
    return None if market is None else CALENDAR_OF_MARKET[MarketType(market)]


def session_days(calendar: str, first_ns: int, last_ns: int) -> np.ndarray:
    """Sessions of ``calendar`` from the day of ``first_ns`` to the day of ``last_ns`` (both
    included), as int64 day numbers since the epoch (UTC dates)."""
    first_day, last_day = int(first_ns // DAY_NS), int(last_ns // DAY_NS)
    days = _all_sessions(calendar)
    if days is None or first_day < days[0] or last_day > days[-1]:
        log.warning("calendar %s does not cover %s..%s; using Monday-Friday instead", calendar,
                    np.datetime64(first_day, "D"), np.datetime64(last_day, "D"))
        every = np.arange(first_day, last_day + 1, dtype=np.int64)
        return every[np.is_busday(every.astype("datetime64[D]"))]
    return days[(days >= first_day) & (days <= last_day)]


@functools.lru_cache(maxsize=8)
def _all_sessions(calendar: str) -> np.ndarray | None:
    import exchange_calendars as xcals

    try:
        try:
            cal = xcals.get_calendar(calendar, start=_EARLIEST, end=_LATEST)
        except ValueError:  # a calendar whose rules start later than _EARLIEST
            cal = xcals.get_calendar(calendar, end=_LATEST)
    except Exception as exc:  # noqa: BLE001 - any calendar failure falls back to weekdays
        log.warning("cannot load trading calendar %s (%s)", calendar, exc)
        return None
    days = cal.sessions.values.astype("datetime64[D]").astype(np.int64)
    days.setflags(write=False)
    return days
