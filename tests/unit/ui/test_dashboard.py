"""The dashboard's API and pages over a run directory with a backtest (no MLflow store here: the
browser test in tests/integration adds one)."""

from __future__ import annotations

import pytest
import requests

from app.errors import ConfigError
from app.ui.dashboard import create_app
from app.ui.dashboard_auth import ApiKeyVerifier, Sessions
from tests.unit.ui import dashboard_fixture as fx
from tests.unit.ui.server import served


class Client:
    """``requests`` against the app served on a loopback port (a session keeps cookies)."""

    def __init__(self, base: str) -> None:
        self.base, self.http = base, requests.Session()

    def get(self, path: str, **kw):
        return self.http.get(self.base + path, timeout=30, **kw)

    def post(self, path: str, **kw):
        return self.http.post(self.base + path, timeout=30, **kw)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    src = fx.build(tmp_path_factory.mktemp("dash"))
    with served(create_app(src, ApiKeyVerifier.from_key(fx.KEY))) as base:
        yield Client(base)


H = {"X-API-Key": fx.KEY}


def test_everything_but_login_health_and_assets_needs_the_key(client):
    for path in ("/", "/explorer", "/run?id=x", "/compare", "/api/runs",
                 f"/api/backtests/{fx.RUN}/{fx.BACKTEST}/symbols"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert "API key" in r.text
    assert client.get("/api/runs", headers={"X-API-Key": "wrong-key-of-enough-length"}).status_code == 401
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {fx.KEY}"}).status_code == 200
    assert client.get("/api/health").status_code == 200
    assert client.get("/static/vendor/lightweight-charts.standalone.production.js").status_code == 200
    assert "script-src 'self'" in client.get("/api/health").headers["content-security-policy"]


def test_login_sets_a_session_cookie_and_logout_ends_it():
    sessions = Sessions()
    app = create_app(fx.Sources("sqlite:////nonexistent/mlruns.db", fx.Path("/nonexistent")),
                     ApiKeyVerifier.from_key(fx.KEY), sessions)
    with served(app) as base:
        c = Client(base)
        assert c.post("/login", data={"key": "not-the-key-at-all-xx"}).status_code == 401
        r = c.post("/login", data={"key": fx.KEY}, allow_redirects=False)
        assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
        assert "samesite=strict" in r.headers["set-cookie"].lower()
        assert c.get("/").status_code == 200 and c.get("/api/runs").json() == []
        assert requests.get(base + "/api/runs", timeout=30).status_code == 401  # no cookie: refused
        c.post("/logout")
        assert c.get("/api/runs").status_code == 401


def test_runs_list_the_run_directory_and_its_backtests(client):
    runs = client.get("/api/runs", headers=H).json()
    assert [(r["run_dir"], r["backtests"]) for r in runs] == [(fx.RUN, [fx.BACKTEST])]


def test_symbol_table_has_each_strategy_metric(client):
    t = client.get(f"/api/backtests/{fx.RUN}/{fx.BACKTEST}/symbols", headers=H).json()
    assert [r["symbol"] for r in t["symbols"]] == list(fx.SYMBOLS)
    assert "agent.total_return" in t["metrics"] and "buy_and_hold.sharpe" in t["metrics"]
    assert all(isinstance(r["agent.total_return"], float) for r in t["symbols"])


def test_symbol_detail_puts_decisions_on_the_bar_before_the_fill(client):
    d = client.get(f"/api/backtests/{fx.RUN}/{fx.BACKTEST}/symbol/BBB", headers=H).json()
    bars, dec = d["bars"], d["decisions"]
    assert d["action_labels"] == ["stay_out", "buy"]
    assert len(dec["time"]) == 120 and len(dec["probs"][0]) == 2
    first_fill = bars["time"].index(dec["fill_time"][0])
    assert bars["time"][first_fill - 1] == dec["time"][0]  # decided on the previous close
    assert first_fill - 1 == 30  # 30 bars of history before the first decision
    assert [m["side"] for m in d["marks"]][:2] == ["buy", "sell"]
    buy = d["marks"][0]
    assert buy["price"] == pytest.approx(bars["open"][bars["time"].index(buy["time"])])
    assert d["benchmarks"]["buy_and_hold"][0] == pytest.approx(10_000.0)
    assert d["benchmarks"]["index"][0] == pytest.approx(10_000.0)
    assert len(d["benchmarks"]["time"]) == len(dec["time"]) + 1


def test_unknown_run_backtest_or_symbol_is_404(client):
    assert client.get(f"/api/backtests/nope/{fx.BACKTEST}/symbols", headers=H).status_code == 404
    assert client.get(f"/api/backtests/{fx.RUN}/nope/symbols", headers=H).status_code == 404
    assert client.get(f"/api/backtests/{fx.RUN}/{fx.BACKTEST}/symbol/ZZZ", headers=H).status_code == 404
    assert client.get("/api/runs/nope", headers=H).status_code == 404


def test_a_short_or_missing_key_is_a_config_error(monkeypatch):
    with pytest.raises(ConfigError, match="16 characters"):
        ApiKeyVerifier.from_key("short")
    monkeypatch.delenv("RAYTRADE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="RAYTRADE_API_KEY is not set"):
        ApiKeyVerifier.from_env()
    assert "key" not in repr(ApiKeyVerifier.from_key(fx.KEY)).replace("ApiKeyVerifier", "").lower()


def test_studies_are_listed_with_notes_table_and_plot(client):
    studies = client.get(f"/api/runs/{fx.RUN}/studies", headers=H).json()
    assert [s["study"] for s in studies] == ["greedy_vs_stochastic"]
    s = studies[0]
    assert s["notes"] == {"greedy_minus_stochastic": 0.03, "p_value": None}  # NaN is not JSON
    assert s["columns"] == ["mode", "total_return", "ci_low"] and s["rows"][1] == ["stochastic", 0.02, -0.01]
    assert s["rows"][0][2] is None and s["plot"] is True
    plot = f"/api/runs/{fx.RUN}/studies/greedy_vs_stochastic/plot.png"
    r = client.get(plot, headers=H)
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(plot).status_code == 401
    assert client.get(f"/api/runs/{fx.RUN}/studies/..%2F..%2Fbacktests/plot.png", headers=H).status_code == 404


def test_the_trader_view_reads_the_trader_state_read_only(client):
    assert client.get("/api/trader", headers=H).json()["accounts"] == [fx.ACCOUNT]
    t = client.get(f"/api/trader/{fx.ACCOUNT}", headers=H).json()
    assert [p["symbol"] for p in t["positions"]] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert t["equity_usd"] == pytest.approx(10_150.0) and len(t["equity_curve"]) == 6  # the latest books
    assert [p["equity_usd"] for p in t["equity_curve"]] == pytest.approx([10_000.0 + 30 * k for k in range(6)])
    assert t["order_states"] == {"FILLED": 1, "REJECTED": 1}
    assert {o["client_id"]: o["error"] for o in t["orders"]} == {"c-1": None, "c-2": "insufficient margin"}
    assert t["decisions"][0]["probs"] == [0.1, 0.2, 0.7]
    assert t["kill_switch"] == {"tripped": True, "ts_ns": 1_735_689_600 * 10**9 + 5 * fx.DAY_NS,
                                "reason": "drawdown 12.0% > 10.0%"}
    assert [e["kind"] for e in t["events"]] == ["kill", "start"] and t["notes"] == []
    assert client.get("/api/trader/nope", headers=H).status_code == 404
    assert client.get(f"/api/trader/{fx.ACCOUNT}").status_code == 401


def test_the_trader_database_is_never_written(tmp_path):
    import sqlite3

    from app.ui import trader_view

    path = tmp_path / "t.sqlite"
    fx.trader(path)
    before = path.read_bytes()
    snap = trader_view.snapshot(tmp_path, "t")
    assert snap["kill_switch"]["tripped"] and path.read_bytes() == before
    con = sqlite3.connect(path)
    con.execute("DROP TABLE decisions")  # an older or newer schema: the rest still reads, with a note
    con.commit()
    con.close()
    snap = trader_view.snapshot(tmp_path, "t")
    assert snap["decisions"] == [] and "decisions" in snap["notes"][0] and len(snap["orders"]) == 2
