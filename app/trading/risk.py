"""Risk limits and the kill switch: pure rules over equity, errors and data age.

:meth:`RiskGuard.check` returns the reason to flatten and stop, or None. Each rule is one
comparison, tested on its own (``tests/unit/trading/test_risk.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class RiskLimits:
    """``max_drawdown``: fall of total equity from its peak (0.3 = 30 %); ``max_daily_loss``:
    fall from the equity at the first bar of the UTC day; ``max_consecutive_errors``: failed
    steps in a row; ``stale_bars``: the newest closed bar is older than this many bars."""

    max_drawdown: float = 0.5
    max_daily_loss: float = 0.2
    max_consecutive_errors: int = 5
    stale_bars: int = 3


@dataclass
class RiskGuard:
    limits: RiskLimits
    peak_usd: float = 0.0
    day: int = -1
    day_start_usd: float = 0.0
    errors: int = field(default=0)

    def on_equity(self, ts_ns: int, equity_usd: float) -> str | None:
        """Record the equity at a bar; the reason to stop, if a limit is crossed."""
        self.peak_usd = max(self.peak_usd, equity_usd)
        day = ts_ns // DAY_NS
        if day != self.day:
            self.day, self.day_start_usd = day, equity_usd
        if self.peak_usd > 0 and 1 - equity_usd / self.peak_usd >= self.limits.max_drawdown:
            return f"max drawdown: equity {equity_usd:.2f} is {1 - equity_usd / self.peak_usd:.1%} below its peak " \
                   f"{self.peak_usd:.2f} (limit {self.limits.max_drawdown:.0%})"
        if self.day_start_usd > 0 and 1 - equity_usd / self.day_start_usd >= self.limits.max_daily_loss:
            return f"max daily loss: equity {equity_usd:.2f} is {1 - equity_usd / self.day_start_usd:.1%} below the " \
                   f"day's start {self.day_start_usd:.2f} (limit {self.limits.max_daily_loss:.0%})"
        return None

    def on_step(self, ok: bool) -> str | None:
        self.errors = 0 if ok else self.errors + 1
        if self.errors >= self.limits.max_consecutive_errors:
            return f"{self.errors} consecutive failed steps (limit {self.limits.max_consecutive_errors})"
        return None

    def on_data(self, last_bar_ts_ns: int, now_ns: int, bar_ns: int) -> str | None:
        """``last_bar_ts_ns``: open of the newest closed bar; it closed at ``+ bar_ns``."""
        age_bars = (now_ns - (last_bar_ts_ns + bar_ns)) / bar_ns
        if age_bars >= self.limits.stale_bars:
            return f"stale data: the newest closed bar closed {age_bars:.1f} bars ago (limit {self.limits.stale_bars})"
        return None

    def state(self) -> dict[str, float]:
        return {"peak_usd": self.peak_usd, "day": self.day, "day_start_usd": self.day_start_usd, "errors": self.errors}

    def restore(self, state: dict[str, float] | None) -> None:
        if state:
            self.peak_usd, self.day = float(state["peak_usd"]), int(state["day"])
            self.day_start_usd, self.errors = float(state["day_start_usd"]), int(state["errors"])
