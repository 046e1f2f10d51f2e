"""THE cost model: fills, fees, slippage, margin, liquidation and funding.

Every function here is pure and *polymorphic*: it only uses arithmetic, comparisons and the
builtin ``abs``, so the same code runs on Python floats (the single-env face, the paper broker,
a backtest of one order) and on numpy arrays ``[B]`` or ``[B, A]`` (the vectorized engine).
That is how "one cost model" is enforced: the engine, the paper broker and the backtest call
these functions, nothing else computes a fee.

Conventions:
    * quantities are signed units of the instrument (``qty > 0`` long, ``qty < 0`` short);
    * ``side`` is ``+1.0`` for a buy, ``-1.0`` for a sell, ``0.0`` for no trade;
    * rates are fractions (``fee_rate = fee_bps * 1e-4``); configs speak bps, hot paths rates;
    * ``notional_usd`` of a fill is signed (``qty_delta * fill_price``): buying spends cash.

Accounting identity (spot and linear perpetuals alike)::

    equity_usd = cash_usd + sum(qty * price)

For a linear perpetual, ``cash_usd`` is the wallet balance minus the entry notional, so the same
identity gives wallet + unrealized PnL; funding is a cash flow (:func:`funding_usd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BPS = 1e-4


@dataclass(frozen=True, kw_only=True)
class CostModel:
    """Cost parameters in bps; the engine and the paper broker read the ``*_rate`` properties.

    Attributes:
        fee_bps: commission on the absolute notional of every fill (10 = 0.10 %).
        slippage_bps: adverse price move on every fill: buys fill above the reference price,
            sells below it.
        maintenance_margin_bps: maintenance margin of a futures position as a share of its
            notional at the mark price (used by :func:`liquidation_price`).
    """

    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    maintenance_margin_bps: float = 50.0

    def __post_init__(self) -> None:
        for name in ("fee_bps", "slippage_bps", "maintenance_margin_bps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value < 10_000:
                raise ValueError(f"CostModel.{name}: must be a finite number in [0, 10000), got {value!r}")

    @property
    def fee_rate(self) -> float:
        return self.fee_bps * BPS

    @property
    def slippage_rate(self) -> float:
        return self.slippage_bps * BPS

    @property
    def maintenance_margin_rate(self) -> float:
        return self.maintenance_margin_bps * BPS


def side_of(qty_delta):
    """``+1.0`` for a buy, ``-1.0`` for a sell, ``0.0`` when nothing trades."""
    return (qty_delta > 0) * 1.0 - (qty_delta < 0)


def slipped_price(ref_price, side, slippage_rate):
    """Fill price after slippage: adverse to the trader on both sides."""
    return ref_price * (1.0 + side * slippage_rate)


def fee_usd(notional_usd, fee_rate):
    """Commission on the absolute notional."""
    return abs(notional_usd) * fee_rate


def fill(qty_delta, ref_price, fee_rate, slippage_rate):
    """Execute ``qty_delta`` units at ``ref_price`` (the next bar's open).

    Returns ``(fill_price, notional_usd, fee_usd)``; ``notional_usd`` is signed, so
    ``cash_usd -= notional_usd + fee_usd`` and ``qty += qty_delta`` settle the trade.
    """
    price = slipped_price(ref_price, side_of(qty_delta), slippage_rate)
    notional = qty_delta * price
    return price, notional, fee_usd(notional, fee_rate)


def target_qty(weight, equity_usd, ref_price, qty_now, fee_rate, slippage_rate):
    """Units to hold so that the position's notional at the fill price plus its fee is
    ``weight * equity_usd``.

    ``weight = 1`` from flat spends exactly the equity (cash ends at 0, never below, up to
    rounding), ``weight = 0`` closes, ``weight = -L`` is a short of ``L`` times equity (futures).
    The slippage side is taken from the direction of the rebalance; for a partial rebalance of
    an existing position (portfolio weights) the fee factor applies to the whole target, a
    conservative approximation that under-invests by at most the fee on the unchanged part.
    """
    side = side_of(weight * equity_usd - qty_now * ref_price)
    return weight * equity_usd / (slipped_price(ref_price, side, slippage_rate) * (1.0 + fee_rate))


def rebalance(trade, weight, equity_usd, qty, ref_price, fee_rate, slippage_rate, sign=None):
    """:func:`target_qty` then :func:`fill` in one call, the engine's hot path.

    Where ``trade`` is true, rebalance to ``weight`` of ``equity_usd`` (marked at
    ``ref_price``); elsewhere fill nothing. Returns ``(qty_delta, fill_price, notional_usd,
    fee_usd)``, bit-identical to composing the two functions (a unit test checks it).
    ``sign`` (``np.sign`` for arrays) replaces :func:`side_of` with one call, same values.
    """
    gap = weight * equity_usd - qty * ref_price
    side = (gap > 0) * 1.0 - (gap < 0) if sign is None else sign(gap)
    target = weight * equity_usd / (ref_price * (1.0 + side * slippage_rate) * (1.0 + fee_rate))
    qty_delta = trade * (target - qty)
    side = (qty_delta > 0) * 1.0 - (qty_delta < 0) if sign is None else sign(qty_delta)
    price = ref_price * (1.0 + side * slippage_rate)
    notional = qty_delta * price
    return qty_delta, price, notional, abs(notional) * fee_rate


def settle_fill(cash_usd, qty, qty_delta, notional_usd, fee):
    """New ``(cash_usd, qty)`` after a fill returned by :func:`fill`."""
    return cash_usd - notional_usd - fee, qty + qty_delta


def equity_usd(cash_usd, qty, price):
    """Mark to market (one asset; sum over assets for a portfolio)."""
    return cash_usd + qty * price


# --- Perpetual futures (isolated margin, linear contracts) -----------------------------------

def initial_margin_usd(notional_usd, leverage):
    """Margin locked when opening ``notional_usd`` at ``leverage`` (isolated)."""
    return abs(notional_usd) / leverage


def maintenance_margin_usd(notional_usd, maintenance_margin_rate):
    """Margin below which an isolated position is liquidated."""
    return abs(notional_usd) * maintenance_margin_rate


def liquidation_price(entry_price, qty, isolated_margin_usd, maintenance_margin_rate):
    """Mark price at which ``margin + qty * (mark - entry) == mmr * |qty| * mark``.

    Long: ``(e*q - M) / (q * (1 - mmr))``; short: ``(e*|q| + M) / (|q| * (1 + mmr))``.
    Returns 0 for a flat position (never liquidated).
    """
    flat = qty == 0
    denom = qty - maintenance_margin_rate * abs(qty) + flat * 1.0
    return (qty * entry_price - isolated_margin_usd) / denom * (1 - flat * 1.0)


def liquidated(qty, liq_price, mark_low, mark_high):
    """True where the bar's mark range crossed the liquidation price."""
    return ((qty > 0) & (mark_low <= liq_price)) | ((qty < 0) & (mark_high >= liq_price))


def funding_usd(qty, mark_price, funding_rate):
    """Funding paid at a funding timestamp (negative = received): longs pay when rate > 0."""
    return qty * mark_price * funding_rate


def isolated_rebalance(trade, target_margin_usd, qty, entry_price, margin_usd, free_usd, ref_price, leverage,
                       fee_rate, slippage_rate, sign=None, minimum=min, maximum=max):
    """Move an isolated-margin linear perpetual position toward a margin budget, in one fill.

    The target spends ``|target_margin_usd|`` on initial margin plus opening fee
    (``|q| * price * (1/leverage + fee_rate)``), long if positive. One order fills
    ``qty_delta`` at ``ref_price`` moved by slippage against the trader (as :func:`fill`);
    conceptually two legs at that price:

    * the *closing* leg (a reduce, a close, or the old side of a flip) releases its share of
      the margin plus its PnL minus its fee, floored at 0: a deficit (a gap through the
      liquidation price) is absorbed by the venue and reported as ``cover_usd``, so a position
      never costs more than its margin and fees;
    * the *opening* leg is capped by what is free afterwards (``free_usd`` plus what the closing
      leg released): free balance never goes negative.

    Where ``trade`` is false, or the slipped target is no move in the priced direction, nothing
    fills. Polymorphic like the rest of this module: ``sign``/``minimum``/``maximum`` are
    ``np.sign``/``np.minimum``/``np.maximum`` for arrays. Returns ``(qty, qty_delta, fill_price,
    notional_usd, fee_usd, margin_usd, entry_price, cover_usd)``: the new signed quantity, then
    ``cash_usd -= notional_usd + fee_usd - cover_usd``; the new isolated margin and average entry
    price (0 flat).
    """
    per_unit = 1.0 / leverage + fee_rate
    gap = target_margin_usd / (ref_price * per_unit) - qty
    side = (gap > 0) * 1.0 - (gap < 0) if sign is None else sign(gap)
    price = ref_price * (1.0 + side * slippage_rate)
    target = trade * (target_margin_usd / (price * per_unit)) + (1 - trade) * qty
    moves = (target - qty) * side > 0
    target = moves * target + (1 - moves) * qty
    abs_qty = abs(qty)
    smaller = abs(target) < abs_qty
    same_side = ((target > 0) & (qty > 0)) | ((target < 0) & (qty < 0))
    keep = same_side * (smaller * target + (1 - smaller) * qty)  # part of qty kept
    closed = qty - keep
    released = margin_usd * (abs(closed) / (abs_qty + (qty == 0)))
    value = released + closed * (price - entry_price) - abs(closed) * price * fee_rate
    returned = maximum(value, 0.0)
    want = target - keep  # part to open, same side as target
    cap = maximum(free_usd + returned, 0.0) / (price * per_unit)
    opened = ((want > 0) * 1.0 - (want < 0)) * minimum(abs(want), cap)
    new_qty = keep + opened
    qty_delta = new_qty - qty
    traded = qty_delta != 0
    fill_price = ref_price * (1.0 + traded * side * slippage_rate)
    notional = qty_delta * fill_price
    grew = opened != 0
    entry = (grew * ((keep * entry_price + opened * price) / (new_qty + (new_qty == 0)))
             + (1 - grew) * entry_price * (new_qty != 0))
    margin = margin_usd - released + abs(opened) * price / leverage
    return new_qty, qty_delta, fill_price, notional, abs(notional) * fee_rate, margin, entry, returned - value


def liquidation_close(qty, entry_price, isolated_margin_usd, liq_price, liquidation_fee_rate, minimum=min,
                      maximum=max):
    """Close an isolated position at its liquidation price (:func:`liquidation_price`).

    What is left of the margin, ``margin + qty * (liq - entry)`` (= the maintenance margin at
    ``liq``), pays the liquidation fee ``liquidation_fee_rate * |qty| * liq`` up to all of it:
    the loss never exceeds the margin. Returns ``(notional_usd, fee_usd, cover_usd)`` for
    ``cash_usd -= notional_usd + fee_usd - cover_usd``; ``cover_usd`` > 0 only where the margin
    was already below water (rounding, funding), absorbed by the venue.
    """
    value = isolated_margin_usd + qty * (liq_price - entry_price)
    left = maximum(value, 0.0)
    return -qty * liq_price, minimum(abs(qty) * liq_price * liquidation_fee_rate, left), left - value
