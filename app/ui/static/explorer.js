"use strict";
nav("/explorer");
const state = {runs: [], table: null, detail: null, cursor: 0, charts: [], candles: null, trades: []};
const $ = (id) => document.getElementById(id);

function setQuery() {
  const q = new URLSearchParams({run: $("run").value, backtest: $("backtest").value, symbol: $("symbol").value});
  history.replaceState(null, "", "/explorer?" + q.toString());
}

function fillRuns(wanted) {
  const sel = $("run"); sel.replaceChildren();
  for (const r of state.runs) sel.append(el("option", {value: r.run_dir}, r.run_dir));
  if (wanted && state.runs.some((r) => r.run_dir === wanted)) sel.value = wanted;
}

function fillBacktests(wanted) {
  const run = state.runs.find((r) => r.run_dir === $("run").value);
  const sel = $("backtest"); sel.replaceChildren();
  for (const b of run ? run.backtests : []) sel.append(el("option", {value: b}, b));
  if (wanted && run && run.backtests.includes(wanted)) sel.value = wanted;
}

function fillSymbols(wanted) {
  const metric = $("metric").value, min = parseFloat($("min").value), text = $("symbol-filter").value.trim().toUpperCase();
  let rows = state.table.symbols.filter((r) => (!text || r.symbol.toUpperCase().includes(text)) &&
    (isNaN(min) || (r[metric] !== null && r[metric] !== undefined && r[metric] >= min)));
  rows = rows.sort((a, b) => (b[metric] ?? -Infinity) - (a[metric] ?? -Infinity));
  const sel = $("symbol"), before = wanted || sel.value; sel.replaceChildren();
  for (const r of rows) sel.append(el("option", {value: r.symbol}, `${r.symbol}  (${fmt(r[metric], 3)})`));
  if (rows.some((r) => r.symbol === before)) sel.value = before;
  $("count").textContent = `${rows.length} of ${state.table.symbols.length} symbols`;
}

async function loadBacktest(wantedSymbol) {
  const run = $("run").value, bt = $("backtest").value;
  if (!run || !bt) return;
  state.table = await getJSON(`/api/backtests/${encodeURIComponent(run)}/${encodeURIComponent(bt)}/symbols`);
  const m = $("metric"), before = m.value; m.replaceChildren();
  for (const k of state.table.metrics) m.append(el("option", {value: k}, k));
  m.value = state.table.metrics.includes(before) ? before :
    (state.table.metrics.includes("agent.total_return") ? "agent.total_return" : state.table.metrics[0]);
  fillSymbols(wantedSymbol);
  await loadSymbol();
}

async function loadSymbol() {
  const symbol = $("symbol").value;
  if (!symbol) return;
  document.body.dataset.ready = "0";
  const d = await getJSON(`/api/backtests/${encodeURIComponent($("run").value)}/${encodeURIComponent($("backtest").value)}/symbol/${encodeURIComponent(symbol)}`);
  state.detail = d;
  $("title").textContent = `${d.symbol} · ${d.run} · ${d.backtest}`;
  draw(d);
  setQuery();
  state.cursor = 0; moveCursor(0);
  document.body.dataset.symbol = d.symbol;
  ready();
}

function draw(d) {
  for (const c of state.charts) c.remove();
  state.charts = [];
  const opts = {autoSize: true, layout: {attributionLogo: false}, timeScale: {timeVisible: d.timeframe !== "1d"}};
  const price = LC.createChart($("price"), opts);
  const b = d.bars;
  const candles = price.addSeries(LC.CandlestickSeries, {upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
    wickUpColor: "#26a69a", wickDownColor: "#ef5350"}, 0);
  candles.setData(b.time.map((t, i) => ({time: t, open: b.open[i], high: b.high[i], low: b.low[i], close: b.close[i]})));
  LC.createSeriesMarkers(candles, d.marks.map((m) => ({time: m.time, position: m.side === "buy" ? "belowBar" : "aboveBar",
    color: m.side === "buy" ? "#1b5e20" : "#b71c1c", shape: m.side === "buy" ? "arrowUp" : "arrowDown", text: m.side})));
  const dec = d.decisions;
  const labels = d.action_labels.length ? d.action_labels : (dec.probs[0] || []).map((_, i) => "action " + i);
  labels.forEach((name, a) => {
    if (!dec.probs.length) return;
    price.addSeries(LC.LineSeries, {color: COLORS[a % COLORS.length], lineWidth: 1, title: "p(" + name + ")",
      priceFormat: {type: "price", precision: 2, minMove: 0.01}}, 1)
      .setData(dec.time.map((t, i) => ({time: t, value: dec.probs[i][a]})));
  });
  if (dec.value.length && dec.value.some((v) => v !== null)) {
    price.addSeries(LC.LineSeries, {color: "#8e24aa", lineWidth: 1, title: "value"}, 2)
      .setData(dec.time.map((t, i) => dec.value[i] === null ? {time: t} : {time: t, value: dec.value[i]}));
  }
  price.addSeries(LC.HistogramSeries, {color: "#90a4ae", title: "position"}, 3)
    .setData(dec.fill_time.map((t, i) => ({time: t, value: dec.position_qty[i]})));
  const panes = price.panes();
  [4, 1.3, 1, 0.8].forEach((f, i) => { if (panes[i]) panes[i].setStretchFactor(f); });
  price.timeScale().fitContent();
  const eq = LC.createChart($("equity"), opts);
  eq.addSeries(LC.LineSeries, {color: "#1d2733", lineWidth: 2, title: "agent"})
    .setData(dec.fill_time.map((t, i) => ({time: t, value: dec.equity_usd[i]})));
  const bm = d.benchmarks;
  eq.addSeries(LC.LineSeries, {color: "#888", lineWidth: 1, lineStyle: 2, title: "buy & hold"})
    .setData(bm.time.map((t, i) => ({time: t, value: bm.buy_and_hold[i]})));
  if (bm.index.length) eq.addSeries(LC.LineSeries, {color: "#5c6bc0", lineWidth: 1, title: "index"})
    .setData(bm.time.map((t, i) => bm.index[i] === null ? {time: t} : {time: t, value: bm.index[i]}));
  eq.timeScale().fitContent();
  price.timeScale().subscribeVisibleTimeRangeChange((range) => {  // the equity chart follows the price chart
    if (range) { try { eq.timeScale().setVisibleRange(range); } catch (e) { /* outside the equity's data */ } }
  });
  state.charts = [price, eq]; state.candles = candles;
  state.trades = dec.position_qty.map((q, i) => i).filter((i) => dec.position_qty[i] !== (i ? dec.position_qty[i - 1] : 0));
  document.body.dataset.bars = String(b.time.length);
}

function moveCursor(k) {
  const d = state.detail; if (!d) return;
  const n = d.decisions.time.length;
  state.cursor = Math.max(0, Math.min(n - 1, k));
  const i = state.cursor, dec = d.decisions, t = dec.time[i];
  const bi = d.bars.time.indexOf(t);
  if (bi >= 0) {
    state.charts[0].setCrosshairPosition(d.bars.close[bi], t, state.candles);
    const range = state.charts[0].timeScale().getVisibleLogicalRange();
    if (range && (bi < range.from || bi > range.to)) {
      const w = Math.max(20, range.to - range.from);
      state.charts[0].timeScale().setVisibleLogicalRange({from: bi - w / 2, to: bi + w / 2});
    }
  }
  const labels = d.action_labels.length ? d.action_labels : null;
  const probs = dec.probs.length ? dec.probs[i].map((p, a) => `${labels ? labels[a] : a} ${p.toFixed(3)}`).join("  ") : "–";
  const day = new Date(t * 1000).toISOString().slice(0, d.timeframe === "1d" ? 10 : 16).replace("T", " ");
  const ohlc = bi >= 0 ? `O ${fmt(d.bars.open[bi], 2)} H ${fmt(d.bars.high[bi], 2)} L ${fmt(d.bars.low[bi], 2)} C ${fmt(d.bars.close[bi], 2)}` : "";
  $("details").textContent =
    `decision ${i + 1}/${n}  ${day}  ${ohlc}\n` +
    `action ${labels && Number.isInteger(dec.action[i]) ? labels[dec.action[i]] : fmt(dec.action[i], 3)}   probabilities ${probs}   value ${fmt(dec.value[i], 4)}\n` +
    `after the fill: position ${fmt(dec.position_qty[i], 4)}   equity ${fmt(dec.equity_usd[i], 2)} ` +
    `(${pct(dec.equity_usd[i] / d.initial_equity_usd - 1)})`;
  document.body.dataset.cursor = String(i);
}

document.addEventListener("keydown", (e) => {
  if (!state.detail || ["INPUT", "SELECT"].includes(document.activeElement.tagName)) return;
  const i = state.cursor;
  if (e.key === "ArrowRight" && e.shiftKey) moveCursor(state.trades.find((k) => k > i) ?? i);
  else if (e.key === "ArrowLeft" && e.shiftKey) moveCursor([...state.trades].reverse().find((k) => k < i) ?? i);
  else if (e.key === "ArrowRight") moveCursor(i + 1);
  else if (e.key === "ArrowLeft") moveCursor(i - 1);
  else if (e.key === "Home") moveCursor(0);
  else if (e.key === "End") moveCursor(Infinity);
  else return;
  e.preventDefault();
});

(async () => {
  const main = document.querySelector("main");
  const guard = (fn) => async () => { try { await fn(); } catch (err) { showError(main, err); } };
  try {
    state.runs = (await getJSON("/api/runs")).filter((r) => r.run_dir && r.backtests.length);
    if (!state.runs.length) { main.append(el("p", {class: "muted"}, "No backtests yet: raytrade backtest RUN (make demo makes two).")); ready(); return; }
    const q = params();
    fillRuns(q.get("run")); fillBacktests(q.get("backtest"));
    $("run").addEventListener("change", guard(async () => { fillBacktests(); await loadBacktest(); }));
    $("backtest").addEventListener("change", guard(() => loadBacktest()));
    for (const id of ["metric", "min", "symbol-filter"]) $(id).addEventListener("input", guard(async () => {
      const before = $("symbol").value; fillSymbols();
      if ($("symbol").value && $("symbol").value !== before) await loadSymbol();
    }));
    $("symbol").addEventListener("change", guard(loadSymbol));
    await loadBacktest(q.get("symbol"));
  } catch (err) { showError(main, err); ready(); }
})();
