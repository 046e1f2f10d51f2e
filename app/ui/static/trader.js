"use strict";
nav("/trader");
const REFRESH_MS = 10000;
const tstr = (ns) => (ns === null || ns === undefined) ? "–" : new Date(ns / 1e6).toISOString().slice(0, 19).replace("T", " ");
let chart = null, series = null;

function rows(id, items, cells) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...items.map((it) => el("tr", {}, ...cells(it).map(([v, num]) => el("td", {class: num ? "num" : ""}, v)))));
}

async function refresh() {
  const account = document.getElementById("account").value;
  if (!account) return;
  const s = await getJSON("/api/trader/" + encodeURIComponent(account));
  document.getElementById("title").textContent = `Trader ${s.account}`;
  const kill = document.getElementById("kill");
  kill.className = s.kill_switch.tripped ? "error" : "muted";
  kill.textContent = s.kill_switch.tripped ? `KILL SWITCH tripped ${tstr(s.kill_switch.ts_ns)}: ${s.kill_switch.reason}` : "kill switch: not tripped";
  document.getElementById("summary").textContent = `equity ${fmt(s.equity_usd, 2)} USD · ${s.positions.length} symbol books · state ${s.path}`;
  if (!chart) {
    chart = LC.createChart(document.getElementById("equity"), {autoSize: true, layout: {attributionLogo: false}, timeScale: {timeVisible: true}});
    series = chart.addSeries(LC.LineSeries, {color: "#1d2733", lineWidth: 2, title: "equity"});
  }
  series.setData(s.equity_curve.map((p) => ({time: Math.floor(p.ts_ns / 1e9), value: p.equity_usd})));
  chart.timeScale().fitContent();
  rows("positions", s.positions, (p) => [[p.symbol], [fmt(p.qty, 6), 1], [fmt(p.mark_usd, 4), 1], [fmt(p.equity_usd, 2), 1], [tstr(p.ts_ns)]]);
  rows("events", s.events, (e) => [[tstr(e.ts_ns)], [e.kind], [e.message]]);
  rows("orders", s.orders, (o) => [[tstr(o.updated_ns)], [o.client_id], [o.symbol], [fmt(o.qty, 6), 1], [fmt(o.level, 2), 1],
    [o.state], [fmt(o.filled_qty, 6), 1], [fmt(o.avg_price, 4), 1], [fmt(o.fee_usd, 4), 1], [o.error || ""]]);
  rows("decisions", s.decisions, (d) => [[tstr(d.ts_ns)], [d.symbol], [d.action], [fmt(d.level, 2), 1],
    [Array.isArray(d.probs) ? d.probs.map((p) => fmt(p, 2)).join(" ") : ""], [fmt(d.value, 4), 1], [fmt(d.ref_price, 4), 1]]);
  document.getElementById("states").textContent = Object.entries(s.order_states).map(([k, v]) => `${k} ${v}`).join(" · ");
  document.getElementById("notes").textContent = s.notes.length ? "not read: " + s.notes.join("; ") : "";
  document.getElementById("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC (every 10 s)";
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
}

(async () => {
  const main = document.querySelector("main");
  try {
    const t = await getJSON("/api/trader");
    const sel = document.getElementById("account");
    for (const a of t.accounts) sel.append(el("option", {value: a}, a));
    const wanted = params().get("account");
    if (wanted && t.accounts.includes(wanted)) sel.value = wanted;
    if (!t.accounts.length) main.append(el("p", {class: "muted"}, `No trader state in ${t.state_dir} (raytrade trade ..., or --trader-state DIR).`));
    sel.addEventListener("change", () => { history.replaceState(null, "", "/trader?account=" + encodeURIComponent(sel.value)); refresh().catch((e) => showError(main, e)); });
    await refresh();
    setInterval(() => refresh().catch((e) => showError(main, e)), REFRESH_MS);
  } catch (err) { showError(main, err); }
  ready();
})();
