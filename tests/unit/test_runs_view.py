"""app/tracking/runs_view.py: sparklines, the sweep/trial listing, run lookup and the comparison, from
plain dicts (no MLflow)."""

from __future__ import annotations

import math

import pytest

from app.tracking import runs_view as rv

BOX_DRAWING = {chr(c) for c in range(0x2500, 0x2580)}


def level(glyph: str) -> int:
    return rv.GLYPHS.index(glyph)


def record(run_id: str, name: str, *, parent: str | None = None, start: int = 0, status: str = "FINISHED",
           history: dict | None = None, params: dict | None = None, metrics: dict | None = None) -> dict:
    history = history or {}
    latest = {k: v[-1][1] for k, v in history.items() if v}
    return {"run_id": run_id, "name": name, "experiment": "exp", "status": status, "start_ms": start,
            "end_ms": None, "parent_id": parent, "params": params or {}, "tags": {},
            "metrics": latest | (metrics or {}), "history": history}


def curve(values, step: int = 100) -> list[tuple[int, float]]:
    return [((i + 1) * step, float(v)) for i, v in enumerate(values)]


# --- sparklines -------------------------------------------------------------------------------

def test_a_monotone_series_gives_non_decreasing_glyphs_from_lowest_to_highest():
    line = rv.sparkline([float(i) ** 1.5 for i in range(50)])
    levels = [level(g) for g in line]
    assert levels == sorted(levels)
    assert line[0] == "▁" and line[-1] == "█"
    falling = rv.sparkline(list(range(10, 0, -1)))
    assert [level(g) for g in falling] == sorted((level(g) for g in falling), reverse=True)


def test_a_constant_series_is_flat():
    line = rv.sparkline([3.5] * 12)
    assert len(line) == 12 and len(set(line)) == 1


def test_nan_and_inf_are_skipped():
    nan, inf = math.nan, math.inf
    assert rv.sparkline([1.0, nan, 2.0, inf, 3.0, None]) == rv.sparkline([1.0, 2.0, 3.0])
    assert rv.sparkline([nan, nan]) == "" and rv.sparkline([]) == ""
    assert rv.finite([1, nan, -inf, None, "x", 2]) == [1.0, 2.0]


@pytest.mark.parametrize("n,width,expected", [(1000, 20, 20), (1000, 5, 5), (7, 20, 7), (21, 20, 20)])
def test_width_is_respected(n, width, expected):
    assert len(rv.sparkline([math.sin(i / 10) for i in range(n)], width)) == expected


def test_downsample_averages_consecutive_slices():
    assert rv.downsample([1, 3, 5, 7], 2) == [2.0, 6.0]
    assert rv.downsample([1, 2, 3], 10) == [1.0, 2.0, 3.0]
    assert rv.downsample(list(range(100)), 0) == []


def test_a_fixed_scale_puts_two_series_on_one_axis():
    assert rv.sparkline([0.0, 1.0], lo=0.0, hi=2.0) == "▁▅"
    assert rv.sparkline([5.0, -5.0], lo=0.0, hi=1.0) == "█▁"  # clipped


# --- metrics and formatting -------------------------------------------------------------------

def test_parse_metrics_defaults_modes_and_distinct_labels():
    specs = rv.parse_metrics(None)
    assert [s.key for s in specs] == list(rv.DEFAULT_METRICS)
    assert [s.title for s in specs] == ["return", "val sharpe"]
    custom = rv.parse_metrics(["a/loss:min", "b/loss", "c/x:max"])
    assert [(s.key, s.mode, s.title) for s in custom] == [("a/loss", "min", "a/loss"),
                                                           ("b/loss", "max", "b/loss"), ("c/x", "max", "x")]
    with pytest.raises(ValueError):
        rv.parse_metrics([":min"])


def test_summarize_last_and_best_by_mode_and_falls_back_to_the_latest_value():
    run = record("r1", "r", history={"m": curve([1, 5, math.nan, 3])})
    assert rv.summarize(run, rv.MetricSpec("m")) == rv.Summary(3.0, 5.0, (1.0, 5.0, 3.0))
    assert rv.summarize(run, rv.MetricSpec("m", "min")).best == 1.0
    no_history = record("r2", "r", metrics={"m": 2.0})
    assert rv.summarize(no_history, rv.MetricSpec("m")) == rv.Summary(2.0, 2.0, ())
    assert rv.summarize(no_history, rv.MetricSpec("other")) == rv.Summary(None, None, ())


def test_env_steps_from_the_step_metric_or_the_largest_step():
    assert rv.env_steps(record("r", "r", history={"m": curve([1, 2], step=4000)})) == 8000
    assert rv.env_steps(record("r", "r", metrics={rv.ENV_STEPS_METRIC: 123.0})) == 123
    assert rv.env_steps(record("r", "r")) is None


def test_number_formats():
    assert rv.fmt_num(None) == "-" and rv.fmt_num(math.nan) == "-"
    assert rv.fmt_num(0.57312) == "0.573" and rv.fmt_num(-1.5) == "-1.500"
    assert rv.fmt_num(123456.0) == "123,456" and rv.fmt_num(0.00012) == "1.20e-04"
    assert rv.fmt_num(0.5, signed=True) == "+0.500"
    assert [rv.fmt_steps(s) for s in (None, 950, 12_500, 3_200_000)] == ["-", "950", "12.5k", "3.20M"]


# --- listing ----------------------------------------------------------------------------------

@pytest.fixture
def runs() -> list[dict]:
    """Newest first, as the store returns them: a standalone run, then a sweep with two trials."""
    return [
        record("solo0001", "solo", start=400, history={"m": curve([0.1, 0.2])}),
        record("trialb01", "trial-b", parent="sweep001", start=300,
               history={"m": curve([3, 2, 1], step=1000)}, params={"lr": "0.001", "gamma": "0.9"}),
        record("triala01", "trial-a", parent="sweep001", start=200,
               history={"m": curve([1, 2, 4], step=1000)}, params={"lr": "0.0003"}),
        record("sweep001", "sweep", start=100, status="RUNNING"),
    ]


def test_tree_groups_trials_under_their_sweep_in_start_order(runs):
    forest = rv.tree(runs)
    assert [(r["name"], [c[0]["name"] for c in kids]) for r, kids in forest] == [
        ("solo", []), ("sweep", ["trial-a", "trial-b"])]
    assert [r["name"] for r in rv.flatten_tree(forest)] == ["solo", "sweep", "trial-a", "trial-b"]


def test_tree_shows_orphans_and_cycles_as_roots():
    orphan = record("o", "orphan", parent="gone")
    a, b = record("a", "a", parent="b"), record("b", "b", parent="a")
    assert [r["name"] for r, _ in rv.tree([orphan, a, b])] == ["orphan", "a", "b"]


def test_listing_table_layout(runs):
    specs = [rv.MetricSpec("m", label="ret")]
    table = rv.listing_table(rv.tree(runs), specs, width=10)
    assert table.headers == ["name", "id", "status", "started (UTC)", "env steps", "ret last", "best", "curve"]
    assert [(r.depth, r.cells[0]) for r in table.rows] == [
        (0, "solo"), (0, "sweep (2 trials)"), (1, "trial-a *"), (1, "trial-b")]
    assert [r.last_child for r in table.rows[2:]] == [False, True]
    sweep, trial_a = table.rows[1].cells, table.rows[2].cells
    assert sweep[2] == "running" and sweep[4] == "6.0k"        # the trials' env steps, summed
    assert sweep[5] == "-" and sweep[6] == "4.000" and sweep[7] == ""  # best over its trials
    assert trial_a[1] == "triala01" and trial_a[5:7] == ["4.000", "4.000"]
    assert [level(g) for g in trial_a[7]] == sorted(level(g) for g in trial_a[7])


def test_render_plain_aligns_columns_and_indents_trials(runs):
    table = rv.listing_table(rv.tree(runs), rv.parse_metrics(["m"]))
    text = rv.render_plain(table)
    assert not BOX_DRAWING & set(text)
    lines = text.splitlines()
    assert lines[0].startswith("name") and set(lines[1]) <= {"-", " "}
    assert lines[4].startswith("  trial-a") and lines[5].startswith("  trial-b")
    starts = {line.index(run_id) for line, run_id in zip(lines[2:], ("solo0001", "sweep001", "triala01",
                                                                    "trialb01"), strict=True)}
    assert len(starts) == 1  # the id column lines up
    assert all(line == line.rstrip() for line in lines)


# --- lookup -----------------------------------------------------------------------------------

def test_resolve_by_id_name_and_unique_prefixes(runs):
    assert rv.resolve_run("triala01", runs)["name"] == "trial-a"
    assert rv.resolve_run("trial-b", runs)["run_id"] == "trialb01"
    assert rv.resolve_run("sol", runs)["name"] == "solo"
    assert rv.resolve_run("trialb", runs)["name"] == "trial-b"  # an id prefix


def test_resolve_unknown_lists_close_matches(runs):
    with pytest.raises(rv.RunLookupError, match="no run named 'trial-c'") as err:
        rv.resolve_run("trial-c", runs)
    assert set(err.value.candidates) >= {"trial-a", "trial-b"}
    assert "trial-a" in str(err.value)


def test_resolve_ambiguous_names_every_match(runs):
    with pytest.raises(rv.RunLookupError, match="matches 2 runs") as err:
        rv.resolve_run("trial-", runs)
    assert "trial-a (triala01) in sweep sweep" in str(err.value)
    twins = [record("x1", "same"), record("x2", "same")]
    with pytest.raises(rv.RunLookupError, match="matches 2 runs"):
        rv.resolve_run("same", twins)


def test_resolve_in_an_empty_store_hints_how_to_fill_it():
    with pytest.raises(rv.RunLookupError, match="raytrade train tune_configs/smoke.yaml"):
        rv.resolve_run("x", [])


# --- compare ----------------------------------------------------------------------------------

def test_param_diff_lists_changed_added_and_removed_params_by_key():
    a = {"lr": "0.001", "seed": "1", "gamma": "0.99"}
    b = {"lr": "0.0003", "seed": "1", "clip": "0.2"}
    assert rv.param_diff(a, b) == [("clip", None, "0.2"), ("gamma", "0.99", None), ("lr", "0.001", "0.0003")]
    assert rv.param_diff(a, dict(a)) == []


def test_params_table_counts_and_marks_missing(runs):
    table = rv.params_table(runs[2], runs[1])
    assert table.title == "params that differ: 2 of 2"
    assert [r.cells for r in table.rows] == [["gamma", "-", "0.9"], ["lr", "0.0003", "0.001"]]


def test_compare_table_shows_both_curves_on_one_scale_and_the_difference(runs):
    a, b = runs[2], runs[1]  # trial-a rises 1 -> 4, trial-b falls 3 -> 1
    table = rv.compare_table(a, b, [rv.MetricSpec("m", label="ret")], width=10)
    assert [r.cells[:2] for r in table.rows] == [["ret", "A"], ["", "B"], ["", "Δ"]]
    row_a, row_b, delta = (r.cells for r in table.rows)
    assert row_a[2:5] == ["4.000", "4.000", "3.0k"] and row_b[2:4] == ["1.000", "3.000"]
    assert delta[2:4] == ["-3.000", "-1.000"]
    assert row_a[5] == "▁▃█"  # 1, 2, 4 on the shared 1..4 scale
    assert row_b[5] == "▆▃▁"  # 3, 2, 1 on the same scale
    assert table.rows[-1].end_section


def test_tune_trial_names_show_short_under_their_sweep_and_resolve_by_their_own_name():
    runs = [record("t2", "lr-sweep/trial_00001", parent="sw", start=3),
            record("t1", "lr-sweep/trial_00000", parent="sw", start=2),
            record("sw", "lr-sweep", start=1)]
    table = rv.listing_table(rv.tree(runs), rv.parse_metrics(["m"]))
    assert [r.cells[0] for r in table.rows] == ["lr-sweep (2 trials)", "trial_00000", "trial_00001"]
    assert rv.resolve_run("trial_00001", runs)["run_id"] == "t2"
    assert rv.resolve_run("lr-sweep/trial_00000", runs)["run_id"] == "t1"
    with pytest.raises(rv.RunLookupError, match="matches 2 runs"):
        rv.resolve_run("trial_", runs)
    with pytest.raises(rv.RunLookupError, match="close matches: .*lr-sweep/trial_00001"):
        rv.resolve_run("trial_0001", runs)
