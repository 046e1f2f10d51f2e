"""THE observation builder: arrays + position state at bar t -> the observation dict.

Training, backtests, Serve and the trader build observations with these functions only, so what
the policy saw in training is what it sees live. Two entry points share one code path:

* :func:`build_observation` -- one plain window of recent bars (Serve, the trader): the
  observation at the window's LAST bar.
* :func:`prepare_features` + :func:`market_observation` -- the same maths batched over many rows
  of a multi-symbol market (the envs precompute or gather with them; they live in
  :mod:`envs.core.features`, which explains the gather).

Layout (``w = spec.window_bars``, all float32, oldest first, newest last):

* ``{bar_name}_hloc`` ``[w, 4]``: the last ``w`` bars as High, Low, Open, Close;
* ``weekly_hloc`` / ``monthly_hloc`` ``[w, 4]``: the last ``w`` calendar periods, the newest
  one PARTIAL (built from the bars up to t only, see :mod:`envs.core.resample`);
* ``index_hloc`` ``[w, 4]``: the market index on the same calendar;
* ``{bar_name}_volume`` / ``weekly_volume`` ``[w]``: volume over its window mean (0 if the
  window has no volume), so it lies in ``[0, w]``;
* ``funding_bps`` ``[w]`` (perpetuals, ``spec.with_funding``): the funding rate settled at each of
  the last ``w`` bars, in bps (0 where no funding event fell in the bar), clipped to
  ``+-spec.funding_clip_bps``;
* ``owned`` ``[1]`` (0/1) and ``bars_held`` ``[1]`` (bars since the position was opened, 0 flat).
  Futures envs replace ``owned`` by :data:`FUTURES_POSITION_KEYS`
  (:func:`futures_position_observation`);
* ``action_mask`` (:data:`ACTION_MASK_KEY`, discrete action spaces, ``config.action_mask``)
  ``[n_actions]`` (``[n_assets, n_choices]`` in a portfolio), float32 0/1: 0 where the env would
  ignore the action in the current position. It is the env's mask rule (``EnvSpec.action_mask``)
  applied to the position: the engines tabulate the rule once (:func:`action_mask_table`) and
  look it up per step, the raw-bars builder applies it (:func:`action_mask_observation`).

Prices are ``log(price / latest close)`` (the index relative to ITS latest close), clipped to
``+-spec.clip_log_ratio``. Before a series has ``w`` bars/periods the oldest one is repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces as gym_spaces

from envs.core import spaces
from envs.core.features import HLOC as HLOC  # re-exported: the builder's names live here
from envs.core.features import PERIOD_NAMES, market_observation, prepare_features
from envs.core.features import FeatureBase as FeatureBase
from envs.core.market import CLOSE, VOLUME
from envs.core.resample import PERIODS

POSITION_KEYS = ("owned", "bars_held")
FUTURES_POSITION_KEYS = ("side", "size", "entry_distance", "unrealized_pnl", "margin_ratio")
ACTION_MASK_KEY = "action_mask"
#: an env's mask rule: position arrays ``[...]`` -> bool ``[..., *mask_shape]`` (True: the action
#: does something there); see ``action_mask`` in each env module and ``EnvSpec.action_mask``
MaskRule = Callable[[Mapping[str, Any]], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class ObservationSpec:
    """What the observation contains.

    Attributes:
        window_bars: bars (and periods) per window.
        bar_name: key prefix of the raw bars ("daily" for daily data, "hourly" for 1h bars).
        periods: calendar periods ("D", "W", "M") resampled into partial bars.
        volume_periods: periods whose volume window is observed (besides the raw bars').
        with_index: include the market index window.
        clip_log_ratio: bound of the price log ratios.
        max_bars_held: bound of ``bars_held``.
        with_funding: include the ``funding_bps`` window (perpetual futures).
        funding_clip_bps: bound of ``funding_bps``.
    """

    window_bars: int = 50
    bar_name: str = "daily"
    periods: tuple[str, ...] = ("W", "M")
    volume_periods: tuple[str, ...] = ("W",)
    with_index: bool = True
    clip_log_ratio: float = 10.0
    max_bars_held: int = 100_000
    with_funding: bool = False
    funding_clip_bps: float = 100.0

    def __post_init__(self) -> None:
        if not isinstance(self.window_bars, int) or self.window_bars < 1:
            raise ValueError(f"ObservationSpec.window_bars: must be an int >= 1, got {self.window_bars!r}")
        for name in ("periods", "volume_periods"):
            bad = [p for p in getattr(self, name) if p not in PERIODS]
            if bad:
                raise ValueError(f"ObservationSpec.{name}: unknown periods {bad}, expected {PERIODS}")
        if not set(self.volume_periods) <= set(self.periods):
            raise ValueError("ObservationSpec.volume_periods: must be a subset of periods")
        if not self.clip_log_ratio > 0:
            raise ValueError(f"ObservationSpec.clip_log_ratio: must be > 0, got {self.clip_log_ratio}")
        if self.max_bars_held < 1:
            raise ValueError(f"ObservationSpec.max_bars_held: must be >= 1, got {self.max_bars_held}")
        if not self.funding_clip_bps > 0:
            raise ValueError(f"ObservationSpec.funding_clip_bps: must be > 0, got {self.funding_clip_bps}")

    def fields(self) -> dict[str, tuple[tuple[int, ...], float, float]]:
        """``{key: (shape, low, high)}`` of every observation field, in order."""
        w, c = self.window_bars, float(self.clip_log_ratio)
        out: dict[str, tuple[tuple[int, ...], float, float]] = {f"{self.bar_name}_hloc": ((w, 4), -c, c)}
        for p in self.periods:
            out[f"{PERIOD_NAMES[p]}_hloc"] = ((w, 4), -c, c)
        if self.with_index:
            out["index_hloc"] = ((w, 4), -c, c)
        out[f"{self.bar_name}_volume"] = ((w,), 0.0, float(w))
        for p in self.volume_periods:
            out[f"{PERIOD_NAMES[p]}_volume"] = ((w,), 0.0, float(w))
        if self.with_funding:
            out["funding_bps"] = ((w,), -float(self.funding_clip_bps), float(self.funding_clip_bps))
        out["owned"] = ((1,), 0.0, 1.0)
        out["bars_held"] = ((1,), 0.0, float(self.max_bars_held))
        return out

    def market_bytes_per_row(self) -> int:
        """float32 bytes of the market part of one observation (precompute budget)."""
        return 4 * sum(int(np.prod(s)) for k, (s, _, _) in self.fields().items() if k not in POSITION_KEYS)


def observation_space(spec: ObservationSpec) -> gym_spaces.Dict:
    return spaces.dict_space(spec.fields())


def position_observation(owned: np.ndarray, bars_held: np.ndarray, spec: ObservationSpec) -> dict[str, np.ndarray]:
    """Position part, batched ``[n, 1]``: whether a position is owned and bars since it was opened."""
    owned = np.asarray(owned).reshape(-1, 1)
    held = np.minimum(np.asarray(bars_held).reshape(-1, 1), spec.max_bars_held)
    return {"owned": owned.astype(np.float32), "bars_held": held.astype(np.float32)}


def action_mask_field(shape: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], float, float]]:
    """``{ACTION_MASK_KEY: (shape, 0, 1)}``: the mask's entry of an observation space."""
    return {ACTION_MASK_KEY: (tuple(shape), 0.0, 1.0)}


def action_mask_observation(rule: MaskRule, position: Mapping[str, Any], steps: int,
                            shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The ``action_mask`` entry for ``steps`` positions (client-side arrays, Serve, the
    trader): ``rule(position)`` as float32 ``[steps, *shape]``."""
    mask = np.asarray(rule(position), dtype=np.float32).reshape(steps, *shape)
    return {ACTION_MASK_KEY: mask}


def action_mask_table(rule: MaskRule, open_key: str) -> np.ndarray:
    """``rule`` tabulated for a flat (row 0) and an open (row 1) position, read-only float32
    ``[2, *row_shape]``: an engine observes ``table[position_is_open]`` (one gather per step,
    per asset in a portfolio). Valid for rules that depend only on whether a position is open
    (every env's rule; ``tests/unit/envs/test_action_mask.py`` checks the engines against the
    rule at every step); ``open_key`` is the position key the rule reads (``owned``, ``qty``)."""
    table = np.asarray(rule({open_key: np.array([0.0, 1.0])}), dtype=np.float32)
    table.flags.writeable = False
    return table


def futures_position_fields(spec: ObservationSpec) -> dict[str, tuple[tuple[int, ...], float, float]]:
    """``{key: (shape, low, high)}`` of :data:`FUTURES_POSITION_KEYS`."""
    c = float(spec.clip_log_ratio)
    return {"side": ((1,), -1.0, 1.0), "size": ((1,), 0.0, c), "entry_distance": ((1,), -c, c),
            "unrealized_pnl": ((1,), -c, c), "margin_ratio": ((1,), 0.0, 1.0)}


def futures_position_values(qty, mark_price, entry_price, margin_usd, equity_usd, leverage,
                            maintenance_margin_rate, clip, minimum=min, maximum=max) -> tuple:
    """Float64 values of :data:`FUTURES_POSITION_KEYS` on floats (``min``/``max``) or arrays
    (``np.minimum``/``np.maximum``), same arithmetic (the env's faces agree bit for bit):

    * ``side``: -1 short, 0 flat, +1 long;
    * ``size``: ``|qty| * mark / (equity * leverage)``, the share of the allowed leverage in use;
    * ``entry_distance``: ``mark / entry - 1`` (0 flat);
    * ``unrealized_pnl``: ``qty * (mark - entry) / equity``;
    * ``margin_ratio``: maintenance margin over the position's margin balance
      (``margin + unrealized PnL``); the position is liquidated at 1 (0 flat).

    Bounded to the :func:`futures_position_fields` ranges.
    """
    flat = qty == 0
    side = (qty > 0) * 1.0 - (qty < 0)
    notional = abs(qty) * mark_price
    equity = maximum(equity_usd, 1e-12)
    upnl = qty * (mark_price - entry_price)
    size = minimum(notional / (equity * leverage), clip)
    distance = (mark_price / (entry_price + flat) - 1.0) * (1 - flat)
    distance = minimum(maximum(distance, -clip), clip)
    pnl = minimum(maximum(upnl / equity, -clip), clip)
    ratio = minimum(maintenance_margin_rate * notional / maximum(margin_usd + upnl, 1e-12), 1.0)
    return side, size, distance, pnl, ratio


def futures_position_observation(qty, mark_price, entry_price, margin_usd, equity_usd, bars_held, *,
                                 leverage: float, maintenance_margin_rate: float,
                                 spec: ObservationSpec) -> dict[str, np.ndarray]:
    """Position part of a futures observation, batched ``[n, 1]`` (Serve, the trader, the vector
    env): :data:`FUTURES_POSITION_KEYS` (:func:`futures_position_values`) and ``bars_held``."""
    qty, mark_price, entry_price, margin_usd, equity_usd = [
        np.asarray(a, dtype=np.float64).reshape(-1)
        for a in (qty, mark_price, entry_price, margin_usd, equity_usd)]
    values = futures_position_values(qty, mark_price, entry_price, margin_usd, equity_usd, leverage,
                                     maintenance_margin_rate, float(spec.clip_log_ratio),
                                     np.minimum, np.maximum)
    block = np.stack(values, axis=1).astype(np.float32)
    out = {k: block[:, i:i + 1] for i, k in enumerate(FUTURES_POSITION_KEYS)}
    out["bars_held"] = np.minimum(np.asarray(bars_held).reshape(-1, 1), spec.max_bars_held).astype(np.float32)
    return out


def _where(r: int, ts_ns: np.ndarray, offsets: np.ndarray | None, symbols) -> str:
    """``row r`` plus, in a multi-symbol market, the symbol and its bar number there."""
    where = f"row {r} (ts_ns={int(ts_ns[r])}"
    if offsets is not None and symbols is not None:
        i = int(np.searchsorted(np.asarray(offsets), r, "right")) - 1
        where += f", symbol {symbols[i]!r} bar {r - int(offsets[i])}"
    return where + ")"


def validate_bars(name: str, ts_ns: np.ndarray, ohlcv: np.ndarray, offsets: np.ndarray | None = None,
                  symbols=None, check_order: bool = True) -> None:
    """Clear errors for arrays an env or the builder cannot use (NaN, non-positive prices, time
    not increasing within a series), naming ``name``, the row and (with ``offsets`` and
    ``symbols``) the symbol. ``check_order=False`` for arrays on another array's timestamps."""
    ts_ns, ohlcv = np.asarray(ts_ns), np.asarray(ohlcv)
    if ohlcv.ndim != 2 or ohlcv.shape[1] < 4 or len(ohlcv) != len(ts_ns):
        raise ValueError(f"{name}: ohlcv must be [len(ts_ns)={len(ts_ns)}, >=4], got shape {ohlcv.shape}")
    finite = np.isfinite(ohlcv).all(axis=1)
    if not finite.all():
        r = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name}: NaN or inf in ohlcv at {_where(r, ts_ns, offsets, symbols)}")
    bad = (ohlcv[:, :4] <= 0).any(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: prices must be > 0, {_where(r, ts_ns, offsets, symbols)} has "
                         f"{ohlcv[r, :4].tolist()}")
    if ohlcv.shape[1] > VOLUME and (ohlcv[:, VOLUME] < 0).any():
        r = int(np.flatnonzero(ohlcv[:, VOLUME] < 0)[0])
        raise ValueError(f"{name}: volume must be >= 0, {_where(r, ts_ns, offsets, symbols)} has "
                         f"{ohlcv[r, VOLUME]}")
    if not check_order:
        return
    step = np.diff(np.asarray(ts_ns, dtype=np.int64))
    if offsets is not None and len(step):
        cuts = np.asarray(offsets[1:-1], dtype=np.int64)
        step[cuts[(cuts > 0) & (cuts < len(ts_ns))] - 1] = 1  # series boundaries may go back
    if (step <= 0).any():
        r = int(np.flatnonzero(step <= 0)[0]) + 1
        raise ValueError(f"{name}: ts_ns must strictly increase within a series (sorted, no duplicates); "
                         f"{_where(r, ts_ns, offsets, symbols)} is not after the bar before it "
                         f"(ts_ns={int(ts_ns[r - 1])})")


def build_observation(ts_ns: np.ndarray, ohlcv: np.ndarray, *, spec: ObservationSpec | None = None,
                      index_ts_ns: np.ndarray | None = None, index_ohlc: np.ndarray | None = None,
                      owned: bool = False, bars_held: int = 0, funding_rate: np.ndarray | None = None,
                      ) -> dict[str, np.ndarray]:
    """Observation at the LAST bar of a plain window of recent bars (one symbol), unbatched.

    Exactly what the envs return at that bar when the window holds the series from its start,
    or at least enough bars that every observed period is complete in the window (for monthly
    windows: the bars since the start of the month ``window_bars`` months back). The index
    bars need not share the window's timestamps: they are aligned causally. ``funding_rate``
    (perpetuals) is the funding settled at each bar of the window (0 if omitted). Futures envs
    replace ``owned`` with :func:`futures_position_observation` of the live position.
    """
    spec = spec or ObservationSpec()
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    ohlcv = np.asarray(ohlcv, dtype=np.float64)
    if ohlcv.ndim == 2 and ohlcv.shape[1] == 4:
        ohlcv = np.column_stack([ohlcv, np.zeros(len(ohlcv))])
    validate_bars("build_observation.ohlcv", ts_ns, ohlcv)
    if len(ts_ns) < spec.window_bars:
        raise ValueError(f"build_observation: window_bars={spec.window_bars} is longer than the "
                         f"{len(ts_ns)} bars given")
    if spec.with_index and index_ohlc is not None:
        if index_ts_ns is None:
            raise ValueError("build_observation.index_ts_ns: required with index_ohlc")
        validate_bars("build_observation.index_ohlc", index_ts_ns, index_ohlc)
        if index_ts_ns[0] > ts_ns[-1]:
            raise ValueError("build_observation.index_ohlc: the index starts after the last bar")
    if funding_rate is not None:
        funding_rate = np.asarray(funding_rate, dtype=np.float64)
        if funding_rate.shape != ts_ns.shape or not np.isfinite(funding_rate).all():
            raise ValueError("build_observation.funding_rate: must be finite, one rate per bar")
    base = prepare_features(ts_ns, ohlcv, np.array([0, len(ts_ns)]), spec, index_ts_ns, index_ohlc, funding_rate)
    row = np.array([len(ts_ns) - 1])
    obs = market_observation(base, row)
    obs.update(position_observation(np.array([owned]), np.array([bars_held]), spec))
    return {k: v[0] for k, v in obs.items()}


# --- Portfolio-v0 -------------------------------------------------------------------------------

PORTFOLIO_POSITION_FEATURES = ("weight", "bars_held")  # ``positions`` [n_assets, 2]
PORTFOLIO_STATE_FEATURES = ("cash_fraction", "gross_exposure", "log_equity_ratio")  # ``portfolio`` [3]
EXPOSURE_CLIP_PER_LEVERAGE = 10.0  # weights and exposure are clipped to +-10 * max_leverage


def portfolio_position_fields(n_assets: int, max_leverage: float, spec: ObservationSpec
                              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{key: (low, high)}`` float32 bounds of ``positions`` ``[n_assets, 2]`` and ``portfolio`` ``[3]``."""
    c, lc = EXPOSURE_CLIP_PER_LEVERAGE * float(max_leverage), float(spec.clip_log_ratio)
    f32 = np.float32
    return {"positions": (np.tile(np.array([-c, 0.0], f32), (n_assets, 1)),
                          np.tile(np.array([c, float(spec.max_bars_held)], f32), (n_assets, 1))),
            "portfolio": (np.array([-c - 1.0, 0.0, -lc], f32), np.array([c + 1.0, c, lc], f32))}


def portfolio_position_observation(qty, close_usd, cash_usd, equity_usd, bars_held, *, initial_cash_usd: float,
                                   max_leverage: float, spec: ObservationSpec) -> dict[str, np.ndarray]:
    """Position part of a portfolio observation, batched (Serve, the trader, the vector env):

    * ``positions`` ``[n, A, 2]``: per asset the signed weight ``qty * close / equity`` and the
      bars since the position was opened or flipped (:data:`PORTFOLIO_POSITION_FEATURES`);
    * ``portfolio`` ``[n, 3]``: ``cash / equity``, ``sum(|qty * close|) / equity`` and
      ``log(equity / initial_cash_usd)`` (:data:`PORTFOLIO_STATE_FEATURES`).

    ``qty``, ``close_usd``, ``bars_held`` are ``[n, A]``; ``cash_usd``, ``equity_usd`` ``[n]``.
    Clipped to the :func:`portfolio_position_fields` bounds (equity <= 0 reads as bankrupt).
    """
    qty, close_usd = np.asarray(qty, dtype=np.float64), np.asarray(close_usd, dtype=np.float64)
    n, n_assets = qty.shape
    safe = np.maximum(np.asarray(equity_usd, dtype=np.float64), 1e-300)
    clip, log_clip = EXPOSURE_CLIP_PER_LEVERAGE * max_leverage, float(spec.clip_log_ratio)
    value = qty * close_usd
    pos = np.empty((n, n_assets, 2), dtype=np.float32)
    pos[..., 0] = np.minimum(np.maximum(value / safe[:, None], -clip), clip)
    np.minimum(bars_held, spec.max_bars_held, out=pos[..., 1], casting="unsafe")
    port = np.empty((n, 3), dtype=np.float32)
    port[:, 0] = np.minimum(np.maximum(np.asarray(cash_usd, dtype=np.float64) / safe, -clip - 1.0), clip + 1.0)
    port[:, 1] = np.minimum(np.add.reduce(np.abs(value), -1) / safe, clip)
    port[:, 2] = np.minimum(np.maximum(np.log(safe / initial_cash_usd), -log_clip), log_clip)
    return {"positions": pos, "portfolio": port}


def build_portfolio_observation(bars, *, spec: ObservationSpec, qty, cash_usd: float, bars_held,
                                initial_cash_usd: float, max_leverage: float, index_ts_ns: np.ndarray | None = None,
                                index_ohlc: np.ndarray | None = None, funding_rates=None) -> dict[str, np.ndarray]:
    """Portfolio observation at the LAST bar of each asset's window, unbatched (Serve, the trader).

    ``bars`` is one ``(ts_ns, ohlcv)`` window per asset, all ending at the same bar (see
    :func:`build_observation`); ``funding_rates`` one ``[len]`` array per asset (perpetuals,
    ``spec.with_funding``). Per-asset market windows are stacked ``[A, w, F]`` (volume and
    funding get a trailing axis of 1); equity is ``cash_usd + sum(qty * last close)``.
    """
    rates = funding_rates if funding_rates is not None else [None] * len(bars)
    per_asset = [build_observation(ts, ohlcv, spec=spec, index_ts_ns=index_ts_ns, index_ohlc=index_ohlc,
                                   funding_rate=rate) for (ts, ohlcv), rate in zip(bars, rates, strict=True)]
    obs = {k: np.stack([o[k] if o[k].ndim == 2 else o[k][:, None] for o in per_asset])
           for k in per_asset[0] if k not in POSITION_KEYS}
    close = np.array([[float(np.asarray(ohlcv)[-1, CLOSE]) for _, ohlcv in bars]])
    qty = np.asarray(qty, dtype=np.float64).reshape(1, -1)
    cash = np.array([float(cash_usd)])
    equity = cash + np.add.reduce(qty * close, -1)
    position = portfolio_position_observation(qty, close, cash, equity, np.asarray(bars_held).reshape(1, -1),
                                              initial_cash_usd=initial_cash_usd, max_leverage=max_leverage,
                                              spec=spec)
    obs.update({k: v[0] for k, v in position.items()})
    return obs
