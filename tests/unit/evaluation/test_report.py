"""The HTML backtest report, checked structurally on a synthetic backtest (no browser, no Ray)."""

from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.evaluation.backtest import BacktestResult
from app.evaluation.report import SECTIONS, _paths, render_report
from app.evaluation.summary import (
    ALL_LABEL,
    CAVEATS,
    PORTFOLIO_LABEL,
    position_weights,
    summary_table,
)

INITIAL_USD = 10_000.0
FEE_RATE = 0.001
ACTION_NAMES = ["flat", "long", "short"]  # action -> target weight 0, +1, -1


def synthetic_backtest(n_symbols: int = 4, n_bars: int = 160, samples: int = 1, seed: int = 0,
                       ragged: bool = False) -> dict:
    """Records shaped like ``BacktestResult.to_table()`` from a tiny env-like simulation (an
    action at bar t fills at bar t + 1's open, equity marked at its close, fees on the fill),
    plus the matching closes, index and ``summary_table``."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2023-01-02", periods=n_bars + 1, freq="B", tz="UTC").as_unit("ns")
    index = 4000 * np.cumprod(np.r_[1, 1 + rng.normal(3e-4, 0.008, n_bars)])
    rows, close_usd, equity, position, closes, actions = [], {}, {}, {}, {}, {}
    for i in range(n_symbols):
        sym = f"SYM{i}"
        start = 10 * i if ragged else 0  # ragged: later symbols start later
        close = 50 * (i + 1) * np.cumprod(np.r_[1, 1 + rng.normal(2e-4 * (i - 1), 0.015, n_bars)])
        open_ = np.r_[close[0], close[:-1] * (1 + rng.normal(0, 0.002, n_bars))]
        close_usd[sym] = (ts.asi8, close)
        for sample in range(samples):
            cash, qty, eq = INITIAL_USD, 0.0, INITIAL_USD
            acts = rng.choice(3, size=n_bars - start, p=[0.4, 0.4, 0.2])
            acts = np.repeat(acts[::5], 5)[: n_bars - start]  # hold a few bars
            probs = rng.dirichlet([2, 2, 1], size=len(acts))
            eqs, qtys = [eq], []
            for k, t in enumerate(range(start + 1, n_bars + 1)):
                weight = (0.0, 1.0, -1.0)[acts[k]]
                target = weight * (cash + qty * open_[t]) / open_[t]
                dq = target - qty
                fee = abs(dq) * open_[t] * FEE_RATE
                cash -= dq * open_[t] + fee
                qty = target
                eq = cash + qty * close[t]
                rows.append({"timestamp": ts[t], "symbol": sym, "sample": sample, "step": k,
                             "observation_id": t - 1, "action": int(acts[k]), "value": 0.0,
                             "reward": float(eq - eqs[-1]) / INITIAL_USD, "equity_usd": eq,
                             "position_qty": qty, "fill_price_usd": open_[t], "fee_usd": fee,
                             "funding_usd": 0.0, **{f"prob_{a}": probs[k, a] for a in range(3)}})
                eqs.append(eq)
                qtys.append(qty)
            if sample == 0:
                equity[sym] = np.array(eqs)
                position[sym] = position_weights(np.array(qtys), close[start:], np.array(eqs))
                closes[sym], actions[sym] = close[start:], acts
    index_per_symbol = {s: index[n_bars + 1 - len(closes[s]):] for s in closes}
    summary = summary_table(equity, position, closes, index_per_symbol, periods_per_year=252, rng=0,
                            actions=actions, action_names=ACTION_NAMES, n_boot=200)
    return {"records": pd.DataFrame(rows), "summary": summary, "close_usd": close_usd,
            "index_close": (ts.asi8, index), "equity": equity}


def through_backtest_result(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` as the backtest hands them over: ``BacktestResult.to_table().to_pandas()``
    (arrow types, env order sample-major, ``prob_<a>`` columns, a live mask for ragged ends)."""
    symbols, samples = sorted(records["symbol"].unique()), int(records["sample"].nunique())
    envs = [(s, k) for k in range(samples) for s in symbols]
    steps = int(records["step"].max()) + 1
    names = ("observation_id", "action", "value", "reward", "equity_usd", "position_qty",
             "fill_price_usd", "fee_usd", "funding_usd")
    cols = {c: np.zeros((steps, len(envs))) for c in names}
    cols |= {"live": np.zeros((steps, len(envs)), bool), "ts_ns": np.zeros((steps, len(envs)), np.int64),
             "prob": np.zeros((steps, len(envs), 3), np.float32)}
    for j, (sym, k) in enumerate(envs):
        g = records[(records["symbol"] == sym) & (records["sample"] == k)].sort_values("step")
        n = len(g)
        cols["live"][:n, j] = True
        cols["ts_ns"][:n, j] = pd.DatetimeIndex(g["timestamp"]).as_unit("ns").asi8
        for c in names:
            cols[c][:n, j] = g[c].to_numpy()
        cols["prob"][:n, j] = g[[f"prob_{a}" for a in range(3)]].to_numpy()
    cols["action"] = cols["action"].astype(np.int64)
    return BacktestResult(symbols, samples, False, cols, 1.0).to_table().to_pandas()


def render(tmp_path: Path, name: str = "report.html", **kw) -> tuple[Path, str]:
    data = synthetic_backtest(**{k: kw.pop(k) for k in ("n_symbols", "n_bars", "samples", "ragged") if k in kw})
    records = kw.pop("transform", lambda r: r)(data["records"])
    path = render_report(tmp_path / name, title="Backtest <smoke> & co", records=records,
                         summary=data["summary"], close_usd=data["close_usd"],
                         index_close=kw.pop("index_close", data["index_close"]),
                         meta={"run": "abc123", "checkpoint": "ckpt/7", "split": "test", "seed": "0"},
                         greedy=kw.pop("greedy", True), **kw)
    return path, path.read_text(encoding="utf-8")


class _Dom(HTMLParser):
    """Collects ids, <img> attributes, <section> ids and <tr data-*> rows."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.sections: list[str] = []
        self.rows: dict[str, list[dict[str, str]]] = {}
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a)
        elif tag == "section":
            self.sections.append(a.get("id", ""))
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and self._table and "data-strategy" in a:
            self.rows.setdefault(self._table, []).append(a)
        elif tag == "td" and self._table and "data-ci-low" in a:
            self.rows[self._table][-1].setdefault("cells", []).append(a)  # type: ignore[arg-type]


def _dom(text: str) -> _Dom:
    dom = _Dom()
    dom.feed(text)
    return dom


@pytest.fixture(scope="module")
def default_report(tmp_path_factory) -> tuple[Path, str]:
    """One report with the defaults, shared by the structural tests (a render takes ~1 s)."""
    return render(tmp_path_factory.mktemp("report"), name="sub/dir/report.html")


def test_sections_images_and_tables(default_report):
    _, text = default_report
    dom = _dom(text)
    assert "header" in dom.ids and dom.sections == list(SECTIONS[1:])
    assert len(dom.ids) == len(set(dom.ids)), "ids are unique"
    # every figure: an id, alt text, a PNG that decodes
    ids = {img["id"] for img in dom.imgs}
    assert {"fig-equity", "fig-drawdowns", "fig-returns", "fig-actions"} <= ids
    assert 1 <= sum(i.startswith("fig-price-") for i in ids) <= 3
    for img in dom.imgs:
        assert img["alt"].strip()
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        png = base64.b64decode(img["src"][len(prefix):], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width >= 600 and height >= 250
    # the headline table: agent / buy & hold / index for PORTFOLIO and ALL, with intervals
    headline = dom.rows["headline-table"]
    assert {(r["data-strategy"], r["data-symbol"]) for r in headline} == {
        (s, scope) for s in ("agent", "buy_and_hold", "index") for scope in (ALL_LABEL, PORTFOLIO_LABEL)}
    for row in headline:
        sharpe = next(c for c in row["cells"] if c["data-metric"] == "sharpe")
        low, value, high = (float(sharpe[k]) for k in ("data-ci-low", "data-value", "data-ci-high"))
        assert low <= value <= high
    # the full table: every (strategy, symbol) of the summary
    full = {(r["data-strategy"], r["data-symbol"]) for r in dom.rows["metrics-table"]}
    assert full == {(s, sym) for s in ("agent", "buy_and_hold", "index")
                    for sym in [ALL_LABEL, PORTFOLIO_LABEL] + [f"SYM{i}" for i in range(4)]}
    # the conventions and caveats block: costs, price index vs total return, survivorship
    assert 'id="caveats-list"' in text and all(html.escape(c) in text for c in CAVEATS)
    assert 'id="action-table"' in text and text.count('<tr data-action=') == 3
    assert "short" in text and "mean probability" in text


def test_self_contained_and_escaped(default_report):
    _, text = default_report
    without_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}|<script|<link|@import|url\(", without_data, re.I)
    assert "<title>Backtest &lt;smoke&gt; &amp; co</title>" in text
    assert "abc123" in text and "ckpt/7" in text and "greedy" in text


def test_atomic_write_and_default_chart_symbols(default_report):
    path, text = default_report
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left
    assert path.stat().st_mode & 0o444 == 0o444
    data = synthetic_backtest()
    s = data["summary"]
    ret = s[(s.strategy == "agent") & (s.metric == "total_return") & s.symbol.str.startswith("SYM")]
    ranked = list(ret.sort_values("value", ascending=False).symbol)
    charted = re.findall(r'id="fig-price-\d+" data-symbol="([^"]+)"', text)
    assert charted == [ranked[0], ranked[len(ranked) // 2], ranked[-1]]


def test_options_stochastic_ragged_no_index(tmp_path):
    _, text = render(tmp_path, samples=3, ragged=True, greedy=False, index_close=None,
                     chart_symbols=["SYM2"], action_names=["cash", "buy", "sell"],
                     transform=through_backtest_result)
    dom = _dom(text)
    assert [i["data-symbol"] for i in dom.imgs if i["id"].startswith("fig-price-")] == ["SYM2"]
    assert "stochastic, 3 sample(s)" in text and ">sell<" in text
    assert "No PORTFOLIO rows" in text and "the index" not in text
    with pytest.raises(ValueError, match="chart_symbols"):
        render(tmp_path, chart_symbols=["NOPE"])


@pytest.mark.parametrize("as_index", [False, True])
def test_initial_equity_is_inferred_from_the_first_record(as_index):
    data = synthetic_backtest(n_symbols=2, n_bars=30)
    closes = data["close_usd"]
    if as_index:  # timestamps as a tz-naive DatetimeIndex instead of int ns
        closes = {s: (pd.DatetimeIndex(ts), c) for s, (ts, c) in closes.items()}
    for p in _paths(through_backtest_result(data["records"]), closes, data["index_close"], None):
        np.testing.assert_allclose(p.equity.to_numpy(), data["equity"][p.symbol], rtol=1e-12)
        assert p.close.index[0] < p.equity.index[1]  # the start point is the bar before
        assert p.close.iloc[0] == closes[p.symbol][1][0]
