"""What ``raytrade runs`` shows, from plain data: sparklines, the sweep/trial listing, run lookup
and the side-by-side comparison of two runs.

No MLflow here (app/tracking/mlflow_tracker.py reads the store into :class:`RunRecord` dicts) and no
rich (app/cli/runs.py draws the :class:`Table` objects built here, or prints
:func:`render_plain`), so everything below is unit-testable with literals.

A record is a mapping with the keys of ``app.tracking.mlflow_tracker.RunRecord``: ``run_id``, ``name``,
``status``, ``start_ms``, ``parent_id``, ``params``, ``tags``, ``metrics`` (latest values) and
``history`` (metric key -> ``[(step, value), ...]`` ordered by step).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.errors import RaytradeError

GLYPHS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 20
DEFAULT_METRICS = ("env_runners/episode_return_mean", "val_greedy/sharpe")
#: the latest step-count metric, where a run logs one (otherwise the largest logged step counts)
ENV_STEPS_METRIC = "num_env_steps_sampled_lifetime"
#: logged every iteration with step = env steps: its history gives the run's env steps
CLOCK_METRIC = "iteration"
EMPTY_STORE_HINT = "no runs yet: try `raytrade train tune_configs/smoke.yaml`"
SHORT_LABELS = {
    "env_runners/episode_return_mean": "return",
    "val_greedy/sharpe": "val sharpe",
    "val_greedy/return": "val return",
    "learners/default_policy/entropy": "entropy",
}

Record = Mapping[str, Any]


class RunLookupError(RaytradeError):
    """A run reference matches no run, or several; ``candidates`` are the names to suggest."""

    def __init__(self, message: str, candidates: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.candidates = list(candidates)


# --- sparklines -------------------------------------------------------------------------------

def finite(values: Iterable[float | None]) -> list[float]:
    """The values that are real finite numbers (None, NaN and inf dropped)."""
    out = []
    for v in values:
        if v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def downsample(values: Sequence[float], width: int) -> list[float]:
    """At most ``width`` points: the mean of ``width`` consecutive, near-equal slices (the first
    and last slices keep the curve's ends). Non-finite values are dropped first."""
    points = finite(values)
    if width <= 0:
        return []
    if len(points) <= width:
        return points
    out = []
    for i in range(width):
        lo, hi = i * len(points) // width, (i + 1) * len(points) // width
        chunk = points[lo:hi]
        out.append(sum(chunk) / len(chunk))
    return out


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH, lo: float | None = None,
              hi: float | None = None) -> str:
    """A one-line chart of ``values`` with the glyphs ▁▂▃▄▅▆▇█: at most ``width`` characters
    (longer series are downsampled), NaN/inf skipped, a constant series flat at mid height.
    ``lo``/``hi`` fix the scale (to draw two series on the same one); values outside are clipped."""
    points = downsample(values, width)
    if not points:
        return ""
    lo = min(points) if lo is None else lo
    hi = max(points) if hi is None else hi
    if not hi > lo:
        return GLYPHS[len(GLYPHS) // 2 - 1] * len(points)
    top = len(GLYPHS) - 1
    return "".join(GLYPHS[min(top, max(0, round((p - lo) / (hi - lo) * top)))] for p in points)


# --- metrics ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricSpec:
    """A metric to show: its MLflow key, whether higher (``max``) or lower (``min``) is better,
    and a short column label."""

    key: str
    mode: str = "max"
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or self.key


def parse_metrics(specs: Sequence[str] | None) -> list[MetricSpec]:
    """``KEY`` or ``KEY:min`` / ``KEY:max`` (default max) -> specs with short, distinct labels
    (the last path part of the key, or the whole key where two would clash)."""
    parsed: list[tuple[str, str]] = []
    for spec in specs or DEFAULT_METRICS:
        key, mode = spec.strip(), "max"
        if key.endswith((":min", ":max")):
            key, mode = key[:-4], key[-3:]
        if not key:
            raise ValueError(f"empty metric key in {spec!r}")
        parsed.append((key, mode))
    shorts = [SHORT_LABELS.get(k, k.rsplit("/", 1)[-1]) for k, _ in parsed]
    return [MetricSpec(key, mode, short if shorts.count(short) == 1 else key)
            for (key, mode), short in zip(parsed, shorts, strict=True)]


@dataclass(frozen=True)
class Summary:
    """One metric of one run: the last and best values, the values in step order."""

    last: float | None
    best: float | None
    values: tuple[float, ...]


def summarize(record: Record, spec: MetricSpec) -> Summary:
    """``spec``'s metric for a run (from its history, or its latest value if no history was read)."""
    history = record.get("history", {}).get(spec.key)
    values = finite(v for _, v in history) if history else []
    if not values:
        latest = finite([record.get("metrics", {}).get(spec.key)])
        return Summary(latest[0], latest[0], ()) if latest else Summary(None, None, ())
    best = max(values) if spec.mode == "max" else min(values)
    return Summary(values[-1], best, tuple(values))


def better(a: float | None, b: float | None, mode: str) -> float | None:
    """The better of two values (None loses)."""
    if a is None or b is None:
        return b if a is None else a
    return max(a, b) if mode == "max" else min(a, b)


def env_steps(record: Record) -> int | None:
    """The run's env steps: its step-count metric, else the largest step it logged."""
    metrics = record.get("metrics", {})
    if ENV_STEPS_METRIC in metrics and math.isfinite(metrics[ENV_STEPS_METRIC]):
        return int(metrics[ENV_STEPS_METRIC])
    steps = [s for points in record.get("history", {}).values() for s, _ in points]
    return max(steps) if steps else None


# --- formatting -------------------------------------------------------------------------------

def fmt_num(value: float | None, signed: bool = False) -> str:
    """Three decimals (so a column lines up), fewer for big numbers, thousands separators from
    10,000, scientific below 0.001; ``-`` for none."""
    if value is None or not math.isfinite(value):
        return "-"
    sign = "+" if signed else ""
    size = abs(value)
    if size >= 1e4:
        return f"{value:{sign},.0f}"
    if size >= 100:
        return f"{value:{sign}.1f}"
    if size >= 1e-3 or value == 0:
        return f"{value:{sign}.3f}"
    return f"{value:{sign}.2e}"


def fmt_steps(steps: int | None) -> str:
    """Env steps, compact: 950, 12.5k, 3.20M."""
    if steps is None:
        return "-"
    if steps < 1_000:
        return str(steps)
    if steps < 1_000_000:
        return f"{steps / 1e3:.1f}k"
    return f"{steps / 1e6:.2f}M"


def fmt_time(ms: int | None) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM`` (UTC)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# --- tables -----------------------------------------------------------------------------------

@dataclass
class Row:
    """A table row: its cells, and for the first (name) cell the tree position."""

    cells: list[str]
    depth: int = 0
    last_child: bool = False
    status: str = ""
    end_section: bool = False


@dataclass
class Table:
    """Headers, per-column alignment (``l``/``r``) and rows; drawn by the CLI (rich) or
    :func:`render_plain`."""

    headers: list[str]
    align: list[str]
    rows: list[Row] = field(default_factory=list)
    title: str = ""


def render_plain(table: Table, indent: str = "  ") -> str:
    """Aligned columns separated by two spaces, no box drawing: pastes cleanly into a chat.
    Trials are indented under their sweep; trailing spaces are stripped."""
    cells = [list(table.headers)] + [
        [indent * row.depth + row.cells[0], *row.cells[1:]] for row in table.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.headers))]
    lines = [table.title] if table.title else []
    for n, row in enumerate(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, table.align, strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tree(records: Sequence[Record]) -> list[tuple[Record, list[Any]]]:
    """Runs as a forest: ``[(run, children), ...]`` with children in the same shape. A run whose
    parent is not among ``records`` is a root. Roots keep the input order (newest first from the
    store); children are in start order (trial 0 first)."""
    ids = {r["run_id"] for r in records}
    kids: dict[str, list[Record]] = {}
    for r in records:
        if r.get("parent_id") in ids and r.get("parent_id") != r["run_id"]:
            kids.setdefault(r["parent_id"], []).append(r)

    def build(r: Record, seen: frozenset[str]) -> tuple[Record, list[Any]]:
        children = sorted(kids.get(r["run_id"], []), key=lambda c: (c.get("start_ms") or 0, c["name"]))
        return r, [build(c, seen | {r["run_id"]}) for c in children if c["run_id"] not in seen]

    forest = [build(r, frozenset()) for r in records if r.get("parent_id") not in ids
              or r.get("parent_id") == r["run_id"]]
    reached = {r["run_id"] for r in flatten_tree(forest)}
    forest += [(r, []) for r in records if r["run_id"] not in reached]  # a parent cycle: shown flat
    return forest


def flatten_tree(forest: Sequence[tuple[Record, list[Any]]]) -> list[Record]:
    """Every run in a forest (parents before their children)."""
    out: list[Record] = []
    for run, children in forest:
        out.append(run)
        out.extend(flatten_tree(children))
    return out


def listing_table(forest: Sequence[tuple[Record, list[Any]]], specs: Sequence[MetricSpec],
                  width: int = SPARK_WIDTH) -> Table:
    """The ``raytrade runs`` table: each sweep (a run with child runs) then its trials, one level
    deeper; standalone runs on their own. Columns: name, id, status, start time (UTC), env
    steps, then per metric its last and best value and a sparkline of its history.

    A sweep row that logged no metric of its own shows its trials' total env steps and the
    best value over its trials; the best trial (by the first metric) is marked ``*``. A trial
    named ``<sweep>/<trial>`` (as app/tuning names them) shows as ``<trial>`` under its sweep."""
    headers = ["name", "id", "status", "started (UTC)", "env steps"]
    align = ["l", "l", "l", "l", "r"]
    for spec in specs:
        headers += [f"{spec.title} last", "best", "curve"]
        align += ["r", "r", "l"]
    table = Table(headers, align)

    def add(node: tuple[Record, list[Any]], depth: int, last_child: bool, mark: bool,
            parent_name: str = "") -> tuple[int | None, list]:
        run, children = node
        child_stats = []
        best_child = _best_child(children, specs[0]) if children and specs else None
        rows_before = len(table.rows)
        table.rows.append(Row([], depth, last_child, str(run.get("status", ""))))
        for i, child in enumerate(children):
            child_stats.append(add(child, depth + 1, i == len(children) - 1, child[0] is best_child,
                                   run["name"]))
        summaries = [summarize(run, s) for s in specs]
        steps = env_steps(run)
        if children and steps is None:
            child_steps = [s for s, _ in child_stats if s is not None]
            steps = sum(child_steps) if child_steps else None
        name = run["name"].removeprefix(f"{parent_name}/") if parent_name else run["name"]
        cells = [name + (f" ({len(children)} trials)" if children else "") + (" *" if mark else ""),
                 run["run_id"][:8], str(run.get("status", "")).lower(), fmt_time(run.get("start_ms")),
                 fmt_steps(steps)]
        bests = []
        for i, (spec, summ) in enumerate(zip(specs, summaries, strict=True)):
            best = summ.best
            if children and summ.last is None:
                for _, child_bests in child_stats:
                    best = better(best, child_bests[i], spec.mode)
            bests.append(best)
            cells += [fmt_num(summ.last), fmt_num(best), sparkline(summ.values, width)]
        table.rows[rows_before].cells = cells
        return steps, bests

    for root in forest:
        add(root, 0, False, False)
    return table


def _best_child(children: Sequence[tuple[Record, list[Any]]], spec: MetricSpec) -> Record | None:
    scored = [(summarize(run, spec).best, run) for run, _ in children]
    scored = [(b, r) for b, r in scored if b is not None]
    if len(scored) < 2:
        return None
    pick = max if spec.mode == "max" else min
    return pick(scored, key=lambda br: br[0])[1]


# --- lookup -----------------------------------------------------------------------------------

def describe(record: Record, by_id: Mapping[str, Record] | None = None) -> str:
    """``name (id8)``, with its sweep where it has one."""
    text = f"{record['name']} ({record['run_id'][:8]})"
    parent = (by_id or {}).get(record.get("parent_id") or "")
    return f"{text} in sweep {parent['name']}" if parent else text


def resolve_run(ref: str, records: Sequence[Record]) -> Record:
    """The run ``ref`` names: a run id, a run name, or a unique prefix of either; then a trial's
    own name (``trial_00001`` for ``sweep/trial_00001``) or its prefix. No match or several
    matches raise RunLookupError with the close names (or the ambiguous ones)."""
    if not records:
        raise RunLookupError(f"no run {ref!r}: {EMPTY_STORE_HINT}")
    by_id = {r["run_id"]: r for r in records}
    if ref in by_id:
        return by_id[ref]
    own = [(r["name"].rsplit("/", 1)[-1], r) for r in records]
    for matches in ([r for r in records if r["name"] == ref],
                    [r for r in records if r["name"].startswith(ref) or r["run_id"].startswith(ref)],
                    [r for name, r in own if name == ref],
                    [r for name, r in own if name.startswith(ref)]):
        if len(matches) == 1:
            return matches[0]
        if matches:
            listed = [describe(r, by_id) for r in matches[:10]]
            more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
            raise RunLookupError(f"{ref!r} matches {len(matches)} runs: {', '.join(listed)}{more}; "
                                 "give a longer prefix or the run id", listed)
    names = sorted({r["name"] for r in records})
    close = difflib.get_close_matches(ref, names, n=5, cutoff=0.5)
    close += [r["name"] for name, r in own if r["name"] not in close
              and difflib.get_close_matches(ref, [name], n=1, cutoff=0.6)][:5 - len(close)]
    close += [n for n in names if ref.lower() in n.lower() and n not in close][:5 - len(close)]
    hint = f"; close matches: {', '.join(close)}" if close else f"; runs: {', '.join(names[:8])}" + (
        " ..." if len(names) > 8 else "")
    raise RunLookupError(f"no run named {ref!r} (by name, name prefix or run id){hint}", close)


# --- compare ----------------------------------------------------------------------------------

def param_diff(a: Mapping[str, str], b: Mapping[str, str]) -> list[tuple[str, str | None, str | None]]:
    """``(key, a value, b value)`` for every param that differs (None: the run lacks it), by key."""
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def params_table(a: Record, b: Record) -> Table:
    """The params that differ between runs A and B (``-`` where a run lacks one)."""
    diff = param_diff(a.get("params", {}), b.get("params", {}))
    total = len(set(a.get("params", {})) | set(b.get("params", {})))
    table = Table(["param", "A", "B"], ["l", "l", "l"],
                  title=f"params that differ: {len(diff)} of {total}")
    for key, va, vb in diff:
        table.rows.append(Row([key, short("-" if va is None else va), short("-" if vb is None else vb)]))
    return table


def compare_table(a: Record, b: Record, specs: Sequence[MetricSpec], width: int = SPARK_WIDTH) -> Table:
    """Per metric: A's and B's last and best values, env steps and sparklines (drawn on one
    shared scale so heights compare), then the difference B - A."""
    table = Table(["metric", "run", "last", "best", "env steps", "curve"], ["l", "l", "r", "r", "r", "l"],
                  title="metrics (Δ = B - A; both curves on one scale)")
    for spec in specs:
        sa, sb = summarize(a, spec), summarize(b, spec)
        both = downsample(sa.values, width) + downsample(sb.values, width)
        lo, hi = (min(both), max(both)) if both else (None, None)
        for tag, run, summ in (("A", a, sa), ("B", b, sb)):
            steps = max((s for s, _ in run.get("history", {}).get(spec.key, [])), default=None)
            table.rows.append(Row([spec.title if tag == "A" else "", tag, fmt_num(summ.last),
                                   fmt_num(summ.best), fmt_steps(steps), sparkline(summ.values, width, lo, hi)]))
        table.rows.append(Row(["", "Δ", _delta(sa.last, sb.last), _delta(sa.best, sb.best), "", ""],
                              end_section=True))
    return table


def compare_header(a: Record, b: Record, by_id: Mapping[str, Record] | None = None) -> list[str]:
    """One line per run: label, name, id, sweep, status, env steps, env."""
    lines = []
    for tag, run in (("A", a), ("B", b)):
        env = run.get("tags", {}).get("raytrade.env")
        lines.append(f"{tag}: {describe(run, by_id)}, {str(run.get('status', '')).lower()}, "
                     f"{fmt_steps(env_steps(run))} env steps, started {fmt_time(run.get('start_ms'))} UTC"
                     + (f", env {env}" if env else ""))
    return lines


def _delta(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else fmt_num(b - a, signed=True)
