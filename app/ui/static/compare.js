"use strict";
nav("/compare");
(async () => {
  const main = document.querySelector("main");
  try {
    const runs = await getJSON("/api/runs");
    const a = params().get("a"), b = params().get("b");
    for (const [sel, cur] of [[document.getElementById("a"), a], [document.getElementById("b"), b]]) {
      for (const r of runs) { const o = el("option", {value: r.id}, r.name); if (r.id === cur) o.selected = true; sel.append(o); }
    }
    if (a && b) {
      const c = await getJSON(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
      document.getElementById("title").textContent = `${c.a.name}  vs  ${c.b.name}`;
      const curves = document.getElementById("curves");
      const keys = [...new Set([...Object.keys(c.a.curves), ...Object.keys(c.b.curves)])];
      for (const key of keys) {
        const box = el("div", {}, el("div", {class: "muted"}, key)); const chart = el("div", {class: "chart curve"});
        box.append(chart); curves.append(box);
        stepChart(chart, {["A " + c.a.name]: c.a.curves[key] || [], ["B " + c.b.name]: c.b.curves[key] || []});
      }
      const mt = document.querySelector("#metrics tbody");
      for (const m of c.metrics) mt.append(el("tr", {}, el("td", {}, m.key), el("td", {class: "num"}, fmt(m.a, 4)),
        el("td", {class: "num"}, fmt(m.b, 4)), el("td", {class: "num"}, m.a === null || m.b === null ? "–" : fmt(m.b - m.a, 4))));
      const pt = document.querySelector("#params tbody");
      for (const p of c.params) pt.append(el("tr", {}, el("td", {}, p.key), el("td", {}, p.a ?? "–"), el("td", {}, p.b ?? "–")));
    } else {
      document.getElementById("result").hidden = true;
    }
  } catch (err) { showError(main, err); }
  ready();
})();
