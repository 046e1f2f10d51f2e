"""The run registry (``raytrade runs --json``) and the review report (``raytrade inspect RUN``),
from plain data.

The registry is *derived*, not stored: every field comes from the MLflow store (params, tags,
metrics, start time) and the run's directory (``state.json``, ``experiment.yaml``, checkpoints,
backtests), which are already written atomically by their one writer. A second registry file
would be a copy that can drift from both and would need its own lock; reading the two sources
each time cannot disagree with them.

Like :mod:`app.tracking.runs_view`, nothing here imports MLflow, pandas or app.runs: the CLI reads
the store and the run directory into a :class:`RunInfo` and the record dicts, so this is
unit-testable with literals.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.tracking.mlflow_tracker import flatten
from app.tracking.runs_view import (
    CLOCK_METRIC,
    GLYPHS,
    MetricSpec,
    Record,
    downsample,
    env_steps,
    finite,
    fmt_num,
    fmt_steps,
    fmt_time,
    param_diff,
    sparkline,
    summarize,
)

#: param keys left out of the config hash: the name and where results are logged do not change
#: what is trained, so a re-run of one config under another name hashes the same
HASH_IGNORED = ("name", "tracking.")
RETURN_METRIC = "env_runners/episode_return_mean"
#: curves drawn in the review (those the run logged), the first as a tall chart
CURVE_METRICS = (RETURN_METRIC, "val_greedy/return", "val_greedy/sharpe", "trading/sharpe",
                 "learners/default_policy/entropy", "learners/default_policy/vf_explained_var",
                 "learners/default_policy/mean_kl_loss", "learners/default_policy/total_loss")
VALIDATION_PREFIXES = ("val_greedy/", "val_stochastic/")
ACTION_PREFIX = "actions/frac_"
RUN_STAMP = re.compile(r"-\d{8}-\d{6}$")


@dataclass
class RunInfo:
    """What a run's directory says (read by the CLI with :class:`app.runs.run_dir.RunDir`)."""

    path: str
    state: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    #: backtest dir name -> summary rows (``app.evaluation.summary.COLUMNS`` as dict keys)
    backtests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    mtime_ms: int | None = None


# --- registry ---------------------------------------------------------------------------------

def flat_params(tree: Mapping[str, Any]) -> dict[str, str]:
    """A nested config as MLflow params: dotted keys, ``str`` values (as MlflowTracker logs them)."""
    return {name: str(value)[:6000] for name, value in flatten(tree).items()}


def config_hash(params: Mapping[str, str]) -> str | None:
    """12 hex digits of the SHA-256 of the flattened config (sorted), ignoring
    :data:`HASH_IGNORED`; None for a run that logged no config."""
    kept = {k: str(v) for k, v in params.items() if not any(
        k == p or (p.endswith(".") and k.startswith(p)) for p in HASH_IGNORED)}
    if not kept:
        return None
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def run_params(record: Record | None, info: RunInfo | None) -> dict[str, str]:
    """The run's config as flat params: MLflow's, else the run directory's experiment.yaml."""
    if record is not None and record.get("params"):
        return dict(record["params"])
    return flat_params(info.config) if info is not None and info.config else {}


def iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds") if ms else None


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def registry_entry(record: Record | None, info: RunInfo | None, specs: Sequence[MetricSpec],
                   uri: str | None = None) -> dict[str, Any]:
    """One run of ``raytrade runs --json``: an MLflow record, its run directory, or both."""
    if record is None and info is None:
        raise ValueError("registry_entry: needs an MLflow record or a run directory")
    params = run_params(record, info)
    tags = dict(record.get("tags", {})) if record else {}
    state = info.state if info else {}
    start_ms = record.get("start_ms") if record else (info.mtime_ms if info else None)
    status = str(record.get("status", "")).lower() if record else ""
    metrics: dict[str, Any] = {}
    for spec in specs:
        summ = summarize(record, spec) if record else None
        if summ is not None and summ.last is not None:
            metrics[spec.key] = {"last": _num(summ.last), "best": _num(summ.best), "mode": spec.mode}
    if state.get("best_metric") is not None:
        metrics["best_validation"] = {"value": _num(float(state["best_metric"])),
                                      "iteration": state.get("best_iteration")}
    steps = env_steps(record) if record else None
    paths: dict[str, Any] = {}
    if info is not None:
        paths = {"run_dir": info.path, "experiment_yaml": f"{info.path}/experiment.yaml",
                 "checkpoints": dict(info.checkpoints),
                 "backtests": [f"{info.path}/backtests/{name}" for name in info.backtests]}
    elif tags.get("raytrade.run_dir") or tags.get("raytrade.sweep_dir"):
        paths = {"run_dir": tags.get("raytrade.run_dir") or tags.get("raytrade.sweep_dir")}
    if record is not None and uri:
        paths["mlflow"] = {"uri": uri, "run_id": record["run_id"]}
    iterations = state.get("iteration")
    clock = _num(record.get("metrics", {}).get(CLOCK_METRIC)) if record else None
    if iterations is None and clock is not None:
        iterations = int(clock)
    name = record["name"] if record else str(info.path).rstrip("/").rsplit("/", 1)[-1] if info else ""
    return {
        "id": record["run_id"] if record else None,
        "name": name,
        "experiment": record.get("experiment") if record else None,
        "time": iso(start_ms),
        "end_time": iso(record.get("end_ms")) if record else None,
        "status": state.get("status") or status or None,
        "mlflow_status": status or None,
        "kind": tags.get("raytrade.kind") or ("run" if info else None),
        "parent_id": record.get("parent_id") if record else None,
        "config_hash": config_hash(params),
        "env": params.get("env.id") or tags.get("raytrade.env"),
        "model": params.get("model.name"),
        "algorithm": params.get("algorithm.name"),
        "env_steps": steps if steps is not None else state.get("env_steps"),
        "iterations": iterations,
        "metrics": metrics,
        "alerts": len(alerts(record, info)),
        "paths": paths,
    }


def name_stem(name: str) -> str:
    """A run name without the ``-YYYYMMDD-HHMMSS`` stamp RunDir.create adds."""
    return RUN_STAMP.sub("", name)


def find_parent(record: Record, records: Sequence[Record]) -> tuple[Record | None, str]:
    """The run to diff ``record``'s config against, and why: its sweep (MLflow parent), else the
    newest earlier run of the same config name (a re-run, a resume under a new dir)."""
    by_id = {r["run_id"]: r for r in records}
    parent = by_id.get(record.get("parent_id") or "")
    if parent is not None:
        return parent, "its sweep"
    stem, start = name_stem(record["name"]), record.get("start_ms") or 0
    earlier = [r for r in records if r["run_id"] != record["run_id"] and name_stem(r["name"]) == stem
               and (r.get("start_ms") or 0) < start]
    if earlier:
        return max(earlier, key=lambda r: r.get("start_ms") or 0), "the previous run of the same name"
    return None, ""


def alerts(record: Record | None, info: RunInfo | None) -> list[tuple[int | None, str]]:
    """``(iteration, message)`` from the MLflow ``alert.<iteration>`` tags and ``state.json``,
    deduplicated, by iteration."""
    out: dict[str, int | None] = {}
    for key, message in sorted((record or {}).get("tags", {}).items()):
        if key.startswith("alert."):
            step = key.removeprefix("alert.")
            out.setdefault(message, int(step) if step.isdigit() else None)
    for message in (info.state.get("alerts") or [] if info else []):
        out.setdefault(str(message), None)
    return sorted(((s, m) for m, s in out.items()), key=lambda sm: (sm[0] is None, sm[0] or 0))


# --- text charts ------------------------------------------------------------------------------

def text_chart(values: Sequence[float], width: int = 60, height: int = 8) -> list[str]:
    """A multi-line column chart (eighth blocks) with the max and min on the y axis; NaN/inf
    dropped, longer series averaged down to ``width`` columns."""
    points = downsample(values, width)
    if not points:
        return ["(no data)"]
    lo, hi = min(points), max(points)
    span = hi - lo
    levels = [height * 8 // 2 if span == 0 else 1 + round((p - lo) / span * (height * 8 - 1)) for p in points]
    labels = [fmt_num(hi), fmt_num(lo)]
    pad = max(len(s) for s in labels)
    rows = []
    for r in range(height - 1, -1, -1):
        cells = []
        for level in levels:
            fill = level - r * 8
            cells.append("█" if fill >= 8 else GLYPHS[fill - 1] if fill > 0 else " ")
        label = labels[0] if r == height - 1 else labels[1] if r == 0 else ""
        rows.append(f"{label:>{pad}} |{''.join(cells)}".rstrip())
    rows.append(" " * pad + " +" + "-" * len(points))
    return rows


def bar(fraction: float, width: int = 30) -> str:
    """A horizontal bar of ``fraction`` (0..1) of ``width`` characters."""
    cells = max(0.0, min(1.0, fraction)) * width
    full = int(cells)
    part = int(round((cells - full) * 8))
    return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if 0 < part < 8 else "")


# --- the review -------------------------------------------------------------------------------

def _history(record: Record | None, key: str) -> list[tuple[int, float]]:
    return list((record or {}).get("history", {}).get(key) or [])


def review_text(record: Record | None, info: RunInfo | None, *, parent: Record | None = None,
                parent_why: str = "", uri: str | None = None, width: int = 60) -> str:
    """The plain-text review of one run: header, config diff against ``parent``, learning
    curves, alerts, action distribution, validation and backtest summaries. ``record`` should
    carry the histories of :data:`CURVE_METRICS` and the ``actions/frac_*`` keys."""
    entry = registry_entry(record, info, [], uri)
    lines = [f"# run {entry['name']}" + (f" ({entry['id']})" if entry["id"] else "")]
    lines.append(", ".join(f"{k} {entry[k]}" for k in ("status", "env", "model", "algorithm")
                           if entry.get(k)))
    started = record.get("start_ms") if record else info.mtime_ms if info else None
    lines.append(f"started {fmt_time(started)} UTC"
                 + (f", ended {fmt_time(record.get('end_ms'))} UTC" if record and record.get("end_ms") else "")
                 + f", {fmt_steps(entry['env_steps'])} env steps"
                 + (f", {entry['iterations']} iterations" if entry.get("iterations") is not None else "")
                 + f", config hash {entry['config_hash'] or '-'}")
    if info is not None:
        lines.append(f"run dir: {info.path}")
        if info.checkpoints:
            lines.append("checkpoints: " + ", ".join(f"{k} {v}" for k, v in info.checkpoints.items()))
    if info is not None and info.state.get("best_metric") is not None:
        lines.append(f"best validation score {fmt_num(float(info.state['best_metric']))} at iteration "
                     f"{info.state.get('best_iteration')}")
    lines += ["", *_config_section(record, info, parent, parent_why)]
    lines += ["", *_curves_section(record, width)]
    found = alerts(record, info)
    lines += ["", f"## alerts ({len(found)})"]
    lines += [f"- iteration {s}: {m}" if s is not None else f"- {m}" for s, m in found] or ["none raised"]
    lines += ["", *_actions_section(record)]
    lines += ["", *_validation_section(record)]
    lines += ["", *_backtest_section(info)]
    return "\n".join(lines).rstrip() + "\n"


def _config_section(record: Record | None, info: RunInfo | None, parent: Record | None,
                    why: str) -> list[str]:
    if parent is None:
        return ["## config diff", "no parent run (not in a sweep, no earlier run of the same name)"]
    mine = run_params(record, info)
    diff = param_diff(parent.get("params", {}), mine)
    out = [f"## config diff against {parent['name']} ({parent['run_id'][:8]}), {why}: "
           f"{len(diff)} of {len(set(mine) | set(parent.get('params', {})))} params differ"]
    for key, old, new in diff:
        out.append(f"- {key}: {'-' if old is None else old} -> {'-' if new is None else new}")
    return out


def _curves_section(record: Record | None, width: int) -> list[str]:
    out = ["## learning curves"]
    logged = [k for k in CURVE_METRICS if _history(record, k)]
    if not logged:
        return out + ["no metric history logged"]
    main = _history(record, logged[0])
    values = [v for _, v in main]
    out.append(f"{logged[0]} over env steps {fmt_steps(main[0][0])} .. {fmt_steps(main[-1][0])} "
               f"({len(values)} points; first {fmt_num(values[0])}, last {fmt_num(values[-1])}, "
               f"max {fmt_num(max(finite(values), default=None))})")
    out += text_chart(values, width)
    if len(logged) > 1:
        out.append("")
        pad = max(len(k) for k in logged[1:])
        out.append(f"{'metric':<{pad}}  {'first':>8}  {'last':>8}  {'min':>8}  {'max':>8}  curve")
        for key in logged[1:]:
            vals = finite(v for _, v in _history(record, key))
            if not vals:
                continue
            out.append(f"{key:<{pad}}  {fmt_num(vals[0]):>8}  {fmt_num(vals[-1]):>8}  "
                       f"{fmt_num(min(vals)):>8}  {fmt_num(max(vals)):>8}  {sparkline(vals, width // 2)}")
    return out


def _actions_section(record: Record | None) -> list[str]:
    metrics = (record or {}).get("metrics", {})
    keys = sorted((k for k in metrics if k.startswith(ACTION_PREFIX)),
                  key=lambda k: (len(k), k))
    out = ["## action distribution (training, last iteration; first iteration in brackets)"]
    if not keys:
        return out + ["no actions/frac_* metrics logged (continuous actions log actions/mean only)"] + [
            f"{k}: {fmt_num(metrics[k])}" for k in ("actions/mean", "actions/mean_abs") if k in metrics]
    for key in keys:
        first = _history(record, key)
        start = f" [{fmt_num(first[0][1])}]" if first else ""
        out.append(f"action {key.removeprefix(ACTION_PREFIX):>3}  {fmt_num(metrics[key]):>6}{start}  "
                   f"{bar(metrics[key])}")
    return out


def _validation_section(record: Record | None) -> list[str]:
    metrics = (record or {}).get("metrics", {})
    out = ["## validation (last value; best over the run where its history was read)"]
    found = False
    for prefix in VALIDATION_PREFIXES:
        keys = sorted(k for k in metrics if k.startswith(prefix))
        if not keys:
            continue
        found = True
        out.append(prefix.rstrip("/"))
        for key in keys:
            hist = finite(v for _, v in _history(record, key))
            best = f"  (max {fmt_num(max(hist))}, min {fmt_num(min(hist))}, {len(hist)} evals)" if hist else ""
            out.append(f"  {key.removeprefix(prefix):<22} {fmt_num(metrics[key]):>10}{best}")
    return out if found else out + ["no validation metrics logged"]


def _backtest_section(info: RunInfo | None) -> list[str]:
    out = ["## backtests"]
    if info is None or not info.backtests:
        return out + ["none under the run dir (raytrade backtest RUN writes them)"]
    for name, rows in info.backtests.items():
        scopes = {r.get("scope") for r in rows}
        scope = next((s for s in ("portfolio", "cross_section", "symbol") if s in scopes), None)
        chosen = [r for r in rows if r.get("scope") == scope]
        if scope == "symbol":
            first = chosen[0].get("symbol") if chosen else None
            chosen = [r for r in chosen if r.get("symbol") == first]
        strategies = list(dict.fromkeys(str(r.get("strategy")) for r in chosen))
        metrics = list(dict.fromkeys(str(r.get("metric")) for r in chosen))
        cell = {(str(r.get("strategy")), str(r.get("metric"))): r for r in chosen}
        out.append(f"{name} ({scope or 'empty'}{'' if scope != 'symbol' else ' ' + str(first)}):")
        pad = max((len(m) for m in metrics), default=6)
        out.append(f"  {'metric':<{pad}}  " + "  ".join(f"{s:>22}" for s in strategies))
        for metric in metrics:
            cells = []
            for strategy in strategies:
                row = cell.get((strategy, metric))
                text = "-" if row is None else fmt_num(_float(row.get("value")))
                if row is not None and _float(row.get("ci_low")) is not None:
                    text += f" [{fmt_num(_float(row['ci_low']))}, {fmt_num(_float(row.get('ci_high')))}]"
                cells.append(f"{text:>22}")
            out.append(f"  {metric:<{pad}}  " + "  ".join(cells))
    return out


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
