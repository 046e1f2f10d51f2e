"use strict";
nav("");
(async () => {
  const id = params().get("id");
  try {
    const r = await getJSON("/api/runs/" + encodeURIComponent(id));
    document.getElementById("title").textContent = r.name;
    document.getElementById("summary").textContent =
      `${r.experiment || ""} · ${r.status} · started ${r.started} · ${r.env_steps === null ? "?" : r.env_steps.toLocaleString("en")} env steps` +
      (r.run_dir ? ` · runs/${r.run_dir}` : "");
    const curves = document.getElementById("curves");
    for (const [key, points] of Object.entries(r.curves)) {
      const box = el("div", {}, el("div", {class: "muted"}, key));
      const chart = el("div", {class: "chart curve"});
      box.append(chart); curves.append(box);
      stepChart(chart, {[key]: points});
    }
    if (!Object.keys(r.curves).length) curves.append(el("p", {class: "muted"}, "No curves logged."));
    const bts = document.getElementById("backtests");
    for (const b of r.backtests) bts.append(el("li", {}, el("a", {href: `/explorer?run=${encodeURIComponent(r.run_dir)}&backtest=${encodeURIComponent(b)}`, class: "bt"}, b)));
    if (!r.backtests.length) bts.append(el("li", {class: "muted"}, "none (raytrade backtest RUN)"));
    const box = document.getElementById("studies");
    const studies = r.run_dir ? await getJSON(`/api/runs/${encodeURIComponent(r.run_dir)}/studies`) : [];
    for (const s of studies) {
      const notes = el("table", {class: "notes"});
      for (const [k, v] of Object.entries(s.notes)) notes.append(el("tr", {}, el("td", {}, k), el("td", {class: "num"}, typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v, 4))));
      const table = el("table", {}, el("thead", {}, el("tr", {}, ...s.columns.map((c) => el("th", {}, c)))));
      const tb = el("tbody"); table.append(tb);
      for (const row of s.rows.slice(0, 50)) tb.append(el("tr", {}, ...row.map((v) => el("td", {class: typeof v === "number" ? "num" : ""}, fmt(v, 4)))));
      const part = el("div", {class: "study"}, el("h3", {}, s.study), notes);
      if (s.plot) part.append(el("img", {src: `/api/runs/${encodeURIComponent(r.run_dir)}/studies/${encodeURIComponent(s.study)}/plot.png`, alt: s.study, style: "max-width: 100%"}));
      part.append(el("details", {}, el("summary", {}, `table (${s.n_rows} rows)`), table));
      box.append(part);
    }
    if (!studies.length) box.append(el("p", {class: "muted"}, "none (raytrade evaluate STUDY RUN)"));
    const mt = document.querySelector("#metrics tbody");
    for (const [k, v] of Object.entries(r.all_metrics)) mt.append(el("tr", {}, el("td", {}, k), el("td", {class: "num"}, fmt(v, 4))));
    const pt = document.querySelector("#params tbody");
    for (const [k, v] of Object.entries(r.params)) pt.append(el("tr", {}, el("td", {}, k), el("td", {}, v)));
    await Promise.all([...document.querySelectorAll(".study img")].map((i) => i.decode().catch(() => null)));
  } catch (err) { showError(document.querySelector("main"), err); }
  ready();
})();
