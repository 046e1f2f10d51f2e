"use strict";
nav("/");
(async () => {
  const body = document.querySelector("#runs tbody");
  const button = document.getElementById("compare-btn");
  const ticked = [];
  try {
    const runs = await getJSON("/api/runs");
    if (!runs.length) body.append(el("tr", {}, el("td", {colspan: 9}, "No runs yet: train one (raytrade train ... or make demo).")));
    // sweeps: each trial right under its parent run, indented
    const ids = new Set(runs.map((r) => r.id));
    const ordered = [];
    for (const r of runs.filter((x) => !x.parent_id || !ids.has(x.parent_id))) {
      ordered.push(r);
      for (const c of runs.filter((x) => x.parent_id === r.id)) ordered.push({...c, child: true});
    }
    for (const r of ordered) {
      const box = el("input", {type: "checkbox", value: r.id, onchange: (e) => {
        if (e.target.checked) ticked.push(r.id); else ticked.splice(ticked.indexOf(r.id), 1);
        button.disabled = ticked.length !== 2;
      }});
      const backtests = el("td", {});
      for (const b of r.backtests) backtests.append(el("a", {href: `/explorer?run=${encodeURIComponent(r.run_dir)}&backtest=${encodeURIComponent(b)}`, class: "bt"}, b), " ");
      body.append(el("tr", {class: "run"}, el("td", {}, box),
        el("td", {}, r.child ? "↳ " : "", el("a", {href: "/run?id=" + encodeURIComponent(r.id), class: "run-link"}, r.name)),
        el("td", {}, r.experiment || "–"), el("td", {}, r.status), el("td", {}, r.started),
        el("td", {class: "num"}, r.env_steps === null ? "–" : r.env_steps.toLocaleString("en")),
        el("td", {class: "num"}, fmt(r.metrics["env_runners/episode_return_mean"])),
        el("td", {class: "num"}, fmt(r.metrics["val_greedy/sharpe"])), backtests));
    }
  } catch (err) { showError(document.querySelector("main"), err); }
  button.addEventListener("click", () => { window.location = `/compare?a=${encodeURIComponent(ticked[0])}&b=${encodeURIComponent(ticked[1])}`; });
  ready();
})();
