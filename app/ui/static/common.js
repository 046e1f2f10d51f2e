// Shared by every dashboard page: fetch JSON, the nav bar, number formats, chart helpers.
"use strict";
const LC = window.LightweightCharts;
const COLORS = ["#1e88e5", "#ff9800", "#43a047", "#8e24aa", "#e53935", "#00897b", "#6d4c41"];

async function getJSON(url) {
  const r = await fetch(url, {credentials: "same-origin"});
  if (r.status === 401) { window.location = "/login"; throw new Error("not signed in"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function nav(here) {
  const links = [["/", "Runs"], ["/compare", "Compare"], ["/explorer", "Backtest explorer"], ["/trader", "Trader"]];
  const header = el("header", {}, el("span", {class: "brand"}, "raytrade"),
    ...links.map(([href, text]) => el("a", {href, class: href === here ? "here" : "", id: "nav-" + text.split(" ")[0].toLowerCase()}, text)),
    el("form", {method: "post", action: "/logout"}, el("button", {type: "submit"}, "Sign out")));
  document.body.prepend(header);
  // the attribution the charting library's licence asks for (NOTICE), with its link
  document.body.append(el("footer", {class: "muted"}, "Charts: TradingView Lightweight Charts™, Copyright (c) 2023 TradingView, Inc. ",
    el("a", {href: "https://www.tradingview.com/", rel: "noreferrer"}, "https://www.tradingview.com/")));
}

function fmt(v, digits = 3) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  return Math.abs(v) >= 1e5 ? v.toExponential(2) : v.toFixed(digits);
}
function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(2) + " %"; }
function params() { return new URLSearchParams(window.location.search); }
function showError(where, err) { where.append(el("p", {class: "error"}, String(err.message || err))); }
function ready() { document.body.dataset.ready = "1"; }

// Lines over a numeric x (env steps): {name: [[x, y], ...]} -> a chart with a legend.
function stepChart(container, lines) {
  const chart = LC.createOptionsChart(container, {autoSize: true, layout: {attributionLogo: false}});
  const legend = el("div", {class: "legend"});
  Object.entries(lines).forEach(([name, points], i) => {
    const seen = new Map(); points.forEach(([x, y]) => seen.set(x, y));
    const data = [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([x, y]) => ({time: x, value: y}));
    chart.addSeries(LC.LineSeries, {color: COLORS[i % COLORS.length], lineWidth: 2, title: name}).setData(data);
    legend.append(el("span", {style: `color:${COLORS[i % COLORS.length]}`}, "■ " + name));
  });
  chart.timeScale().fitContent();
  container.after(legend);
  return chart;
}
