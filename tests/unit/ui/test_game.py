"""The game's state: the player trades through the env itself (its fills and fees), buy-and-hold
and the agent play the same bars."""

from __future__ import annotations

import numpy as np
import pytest

from app.ui.game import GameSession
from envs.core.market import CLOSE, OPEN
from tests.unit.ui.helpers import ScriptedPolicy, market_and_index

STOCK = "raytrade/StockSwing-v0"
FUTURES = "raytrade/CryptoFutures-v0"
FEE, SLIP = 10e-4, 5e-4


@pytest.fixture(scope="module")
def data():
    return market_and_index()


def _game(data, **kw) -> GameSession:
    market, index = data
    kw.setdefault("env_id", STOCK)
    kw.setdefault("env_config", {})
    return GameSession(market, index, play_bars=kw.pop("play_bars", 40), view_bars=30, **kw)


def test_buy_then_sell_pays_the_env_fills_and_fees(data):
    g = _game(data, seed=4)
    opens = g.market.ohlcv[:, OPEN]
    s = g.start_row
    g.buy()   # decided on bar s, filled at bar s+1's open
    assert g.position_label == "long" and g.row == s + 1
    g.sell()  # filled at bar s+2's open
    assert g.position_label == "flat"
    expected = 10_000.0 * opens[s + 2] * (1 - SLIP) * (1 - FEE) / (opens[s + 1] * (1 + SLIP) * (1 + FEE))
    assert g.player.equity[-1] == pytest.approx(expected, rel=1e-12)
    assert [m.side for m in g.player.marks] == ["buy", "sell"]
    assert g.player.marks[0].price == pytest.approx(opens[s + 1] * (1 + SLIP), rel=1e-12)
    assert g.player.marks[1].row == s + 2
    assert g.player.fees_usd == pytest.approx(
        10_000.0 * FEE / (1 + FEE) + g.player.equity[-1] * FEE / (1 - FEE), rel=1e-9)


def test_swing_semantics_ignore_a_second_buy_and_a_sell_while_flat(data):
    g = _game(data, seed=5)
    g.sell()
    assert g.position_label == "flat" and not g.player.marks and g.player.equity[-1] == 10_000.0
    g.buy()
    qty = g.position_qty
    g.buy()
    assert g.position_qty == qty and len(g.player.marks) == 1


def test_week_steps_five_daily_bars_and_the_game_ends_after_play_bars(data):
    g = _game(data, seed=6, play_bars=12)
    g.week()
    assert g.step_count == 5 and g.row == g.start_row + 5
    g.week()
    g.week()  # only 2 bars left
    assert g.done and g.step_count == 12
    g.buy()  # nothing happens after the end
    assert g.step_count == 12 and not g.player.marks


def test_buy_and_hold_and_the_result(data):
    g = _game(data, seed=7, play_bars=20)
    closes = g.market.ohlcv[:, CLOSE]
    g.finish()
    r = g.result()
    s = g.start_row
    bh = 10_000.0 / (g.market.ohlcv[s + 1, OPEN] * (1 + SLIP) * (1 + FEE)) * closes[s + 20]
    assert r["buy_hold_return"] == pytest.approx(bh / 10_000.0 - 1.0, rel=1e-12)
    assert r["player_return"] == 0.0 and r["agent_return"] is None and r["bars"] == 20
    assert r["symbol"] == g.symbol and r["start"] < r["end"]
    assert r["index_return"] == pytest.approx(g.index_close[s + 20] / g.index_close[s] - 1.0)


def test_the_seed_picks_the_symbol_and_the_period(data):
    a, b = _game(data, seed=11), _game(data, seed=11)
    assert (a.symbol, a.start_row) == (b.symbol, b.start_row)
    starts = {(g.symbol, g.start_row) for g in (_game(data, seed=k) for k in range(6))}
    assert len(starts) > 1
    assert _game(data, seed=3, symbol="CCC").symbol == "CCC"


def test_the_agent_plays_the_same_bars_with_its_own_env(data):
    def factory(space):
        return ScriptedPolicy(int(space.n), buy_steps={3})

    g = _game(data, seed=8, env_config={"mode": "buy_only", "horizon_bars": 5}, policy_factory=factory,
              agent_env_id=STOCK, reveal="end")
    agent = g.agent
    assert agent is not None and len(agent.equity) == 41
    assert [m.side for m in agent.marks] == ["buy", "sell"]  # buy_only: the env closes after 5 bars
    assert agent.marks[0].row == g.start_row + 4 and agent.marks[1].row == g.start_row + 9
    assert len(agent.probs) == 40 and agent.probs[3][1] == pytest.approx(0.9) and agent.values[0] == 1.5
    assert not g.agent_visible  # reveal at the end only
    g.finish()
    assert g.agent_visible and g.result()["agent_return"] == pytest.approx(agent.equity[-1] / 1e4 - 1)


def test_futures_levels_go_long_flat_short(data):
    g = _game(data, seed=9, env_id=FUTURES, env_config={"leverage": 1.0})
    g.buy()
    assert g.position_label == "long"
    g.sell()
    assert g.position_label == "flat"
    g.sell()
    assert g.position_label == "short" and g.position_qty < 0
    g.sell()  # already at the lowest level
    assert [m.side for m in g.player.marks] == ["buy", "sell", "sell"]
    assert g.week_bars == 5  # daily bars in this test


def test_an_unknown_env_or_reveal_is_refused(data):
    with pytest.raises(ValueError, match="StockSwing or CryptoFutures"):
        _game(data, env_id="raytrade/Portfolio-v0")
    with pytest.raises(ValueError, match="'ZZZ': not among this market's 3 symbols"):
        _game(data, symbol="ZZZ")
    with pytest.raises(ValueError, match="reveal"):
        _game(data, reveal="never")


def test_equity_is_marked_at_each_close(data):
    g = _game(data, seed=10)
    g.buy()
    qty = g.position_qty
    g.step()
    closes = g.market.ohlcv[:, CLOSE]
    assert g.player.equity[-1] == pytest.approx(qty * closes[g.row], rel=1e-12)
    assert np.isfinite(g.market_return())
