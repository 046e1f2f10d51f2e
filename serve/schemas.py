"""Request and response models of the HTTP API (pydantic v2), validated once at the boundary.

Everything a client can get wrong in the shape of a request is rejected here with a 422 that
names the field: NaN/inf anywhere, series of unequal lengths, timestamps that do not strictly
increase, non-positive prices, negative volume, unknown keys. What depends on the loaded model
(too few bars for its window, which position fields its env uses, the index it needs) is
checked by :class:`serve.policy_service.PolicyService`, also as a 422.

Bars are columnar (one list per field), timestamps are bar OPEN times in UTC nanoseconds
(``ts_ns``), oldest first; the decision is made at the LAST bar's close and would fill at the
next bar's open, as in the envs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictInt, model_validator

MAX_BARS = 20_000          # per series; the body-size limit usually binds first
MAX_SYMBOLS = 256          # per request
MAX_REPLAY_BARS = 1_024    # recurrent window replay
MAX_PRICE = 1e12           # plausible magnitudes: far beyond any real price or volume, far below
MAX_VOLUME = 1e15          # what overflows the observation's sums and float32 casts
MAX_USD = 1e15
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/^=+\-]{0,63}$"  # AAPL, BRK-B, ^GSPC, BTC/USDT:USDT
SESSION_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
TsNs = Annotated[StrictInt, Field(ge=-(2**62), le=2**62)]
PriceList = Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_BARS)]


class Strict(BaseModel):
    """Unknown fields are errors; no coercion: ``"123.5"`` is not a number, ``"yes"`` not a bool."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Bars(Strict):
    """Recent bars of one series, columnar, oldest first."""

    ts_ns: list[TsNs] = Field(min_length=1, max_length=MAX_BARS,
                              description="Bar open times, UTC nanoseconds since the epoch, strictly increasing.")
    open: PriceList
    high: PriceList
    low: PriceList
    close: PriceList
    volume: list[FiniteFloat] | None = Field(None, max_length=MAX_BARS, description="Omitted: zero volume.")
    funding_rate: list[FiniteFloat] | None = Field(
        None, max_length=MAX_BARS, description="Perpetuals: funding settled at each bar (0.0001 = 1 bp).")

    _ts: np.ndarray = PrivateAttr()
    _ohlcv: np.ndarray = PrivateAttr()
    _funding: np.ndarray | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> Bars:
        n = len(self.ts_ns)
        for name in ("open", "high", "low", "close", "volume", "funding_rate"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"{name}: {len(values)} values for {n} timestamps")
        ts = np.asarray(self.ts_ns, dtype=np.int64)
        step = np.diff(ts)
        if (step <= 0).any():
            r = int(np.flatnonzero(step <= 0)[0]) + 1
            raise ValueError(f"ts_ns: timestamps must strictly increase (oldest first); row {r} is not "
                             f"after row {r - 1}")
        ohlcv = np.zeros((n, 5))
        for col, name in enumerate(("open", "high", "low", "close")):
            ohlcv[:, col] = getattr(self, name)
        bad = (ohlcv[:, :4] <= 0).any(axis=1)
        if bad.any():
            raise ValueError(f"prices must be > 0; row {int(np.flatnonzero(bad)[0])} is not")
        _first_bad(ohlcv[:, :4] > MAX_PRICE, f"prices must be <= {MAX_PRICE:g}")
        o, h, lo, c = ohlcv[:, 0], ohlcv[:, 1], ohlcv[:, 2], ohlcv[:, 3]
        _first_bad(h < lo, "high < low")
        _first_bad((o < lo) | (o > h), "open outside [low, high]")
        _first_bad((c < lo) | (c > h), "close outside [low, high]")
        if self.volume is not None:
            ohlcv[:, 4] = self.volume
            if (ohlcv[:, 4] < 0).any():
                raise ValueError(f"volume: must be >= 0; row {int(np.flatnonzero(ohlcv[:, 4] < 0)[0])} is not")
            _first_bad(ohlcv[:, 4] > MAX_VOLUME, f"volume: must be <= {MAX_VOLUME:g}")
        if self.funding_rate is not None:
            rate = np.asarray(self.funding_rate, dtype=np.float64)
            if (np.abs(rate) >= 1).any():
                raise ValueError("funding_rate: every rate must be in (-1, 1)")
            self._funding = rate
        self._ts, self._ohlcv = ts, ohlcv
        return self

    @property
    def n_bars(self) -> int:
        return len(self.ts_ns)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(ts_ns int64 [n], ohlcv float64 [n, 5], funding_rate float64 [n] or None)``."""
        return self._ts, self._ohlcv, self._funding


def _first_bad(bad: np.ndarray, what: str) -> None:
    if bad.any():
        raise ValueError(f"{what} at row {int(np.flatnonzero(bad)[0])}")


Usd = Annotated[float, Field(gt=0, le=MAX_USD, allow_inf_nan=False)]


class Position(Strict):
    """The position held at the last bar. Which fields apply depends on the model's env
    (``GET /v1/models`` → ``env_kind``):

    * ``stock`` (StockSwing, synthetic): ``owned`` and ``bars_held`` (>= 1 when owned, else 0);
    * ``futures`` (CryptoFutures): signed ``qty``; when not flat also ``entry_price_usd``,
      ``margin_usd`` (isolated margin) and ``equity_usd``; ``mark_price_usd`` defaults to the
      last close; ``bars_held``;
    * ``portfolio``: per asset ``qty`` and ``bars_held`` (cash is the request's ``cash_usd``).
    """

    owned: bool | None = None
    bars_held: int = Field(0, ge=0, le=10**8, description="Bars since the position was opened (0 when flat).")
    qty: Annotated[float, Field(ge=-MAX_USD, le=MAX_USD, allow_inf_nan=False)] | None = None
    entry_price_usd: Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)] | None = None
    margin_usd: Annotated[float, Field(ge=0, le=MAX_USD, allow_inf_nan=False)] | None = None
    equity_usd: Usd | None = None
    mark_price_usd: Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)] | None = None


class SymbolInput(Strict):
    symbol: str = Field(pattern=NAME_PATTERN)
    bars: Bars
    position: Position = Field(default_factory=Position)
    position_history: list[Position] | None = Field(
        None, max_length=MAX_REPLAY_BARS,
        description="Recurrent replay only: the positions at the replayed bars BEFORE the last one, "
                    "oldest first (replay_bars - 1 entries). Omitted: derived from `position` "
                    "(held for its bars_held bars, flat before).")


class ActRequest(Strict):
    """Recent bars of one or more symbols plus the position state → one decision per symbol
    (per request for portfolio models, whose symbols are the portfolio's assets)."""

    # The OpenAPI example is built per loaded model (PolicyService.example_request): a valid one
    # needs the model's window of bars and its index/position fields.
    model_config = ConfigDict(extra="forbid", strict=True)

    symbols: list[SymbolInput] = Field(min_length=1, max_length=MAX_SYMBOLS)
    index: Bars | None = Field(None, description="The market index bars (models trained with an index).")
    session_id: str | None = Field(
        None, pattern=SESSION_PATTERN,
        description="Recurrent models: keep the recurrent state per (session, symbol) between calls "
                    "(send each new bar once; a repeated last bar is a retry and does not advance it).")
    replay_bars: int | None = Field(
        None, ge=1, le=MAX_REPLAY_BARS,
        description="Recurrent models: run from the initial state over the last N bars (stateless); "
                    "with a session_id, only to warm up a new session. Default without a session: "
                    "the model's max_seq_len.")
    reset_session: bool = Field(
        False, description="Recurrent sessions: start this session_id again from the initial state. "
                           "Required after the service answered 409 because the session's state was "
                           "evicted or expired (it never restarts a known session silently).")
    require_full_history: bool = Field(
        False, description="422 unless every observed calendar period (week, month) is complete in the "
                           "bars sent, i.e. the observation equals the env's over any longer history.")
    cash_usd: Annotated[float, Field(ge=-MAX_USD, le=MAX_USD, allow_inf_nan=False)] | None = Field(
        None, description="Portfolio models: the cash balance.")
    initial_cash_usd: Usd | None = Field(
        None, description="Portfolio models: the equity log(equity / initial) is measured against "
                          "(default: the env config's).")

    @model_validator(mode="after")
    def _unique_symbols(self) -> ActRequest:
        seen: set[str] = set()
        for item in self.symbols:
            if item.symbol in seen:
                raise ValueError(f"symbols: {item.symbol!r} appears twice")
            seen.add(item.symbol)
        return self


class Decision(BaseModel):
    symbols: list[str] = Field(description="The symbol (the assets, for a portfolio model).")
    ts_ns: int = Field(description="The bar the decision was made at (its close); it fills at the next open.")
    action: int | float | list[int] | list[float]
    action_label: str | list[str] | None = None
    action_probs: list[float] | list[list[float]] | None = Field(
        None, description="Discrete actions: the policy's probabilities (per asset for portfolios).")
    value: float | None = Field(None, description="The value head's estimate of the state.")
    mode: Literal["stateless", "session", "replay"]
    replayed_bars: int = Field(1, description="Policy steps run for this decision (> 1: a replay).")
    session_step: int | None = Field(
        None, description="Steps the session has taken including this one (1: it started here, e.g. "
                          "after expiry).")
    full_history: bool = Field(description="Every observed calendar period was complete in the bars sent.")
    state_reset: bool | None = Field(
        None, description="Sessions: true when this step started from the initial recurrent state (a new "
                          "session, or reset_session); false when it continued the stored state.")


class ActResponse(BaseModel):
    model_version: str
    env_id: str
    decisions: list[Decision]


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="Where: ['body', 'symbols', 0, 'bars', 'close', 3].")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer (401, 404, 409, 413, 422, 429, 431, 503, 504)."""

    detail: str | list[ErrorItem]


class Health(BaseModel):
    status: Literal["ok", "unhealthy"]
    detail: str | None = None


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_version: str
    model_class: str
    model_settings: dict[str, Any] = Field(description="The network's resolved model_config.")
    recurrent: bool
    env_id: str
    env_kind: Literal["stock", "futures", "portfolio"]
    env_config: dict[str, Any]
    observation_spec: dict[str, Any]
    observation_fields: dict[str, list[int]]
    action_space: str
    action_labels: list[str] | None
    min_bars: int
    full_history_bars: int | None = Field(description="Bars needed on a regular calendar so that every "
                                                      "observed period is complete (exact parity with the env).")
    index: dict[str, Any]
    training_run: dict[str, Any] | None
    sessions: dict[str, Any]
