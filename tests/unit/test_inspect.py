"""The review report and registry entries of app/tracking/review.py from literal records (no
MLflow; the CLI on a real store is tested in test_cli_runs.py)."""

from __future__ import annotations

from app.tracking import review
from app.tracking.review import RunInfo
from app.tracking.runs_view import GLYPHS, MetricSpec

RETURN = "env_runners/episode_return_mean"
BOX_DRAWING = {chr(c) for c in range(0x2500, 0x2580)}
PARAMS = {"name": "exp", "seed": "1", "env.id": "raytrade/CryptoFutures-v0", "model.name": "gru",
          "algorithm.name": "PPO", "algorithm.lr": "0.001"}


def _record() -> dict:
    history = {RETURN: [(i * 100, i / 10) for i in range(1, 11)],
               "learners/default_policy/entropy": [(i * 100, 1 - i / 20) for i in range(1, 11)],
               "actions/frac_0": [(100, 0.475), (1000, 0.25)], "actions/frac_1": [(100, 0.525), (1000, 0.75)],
               "val_greedy/return": [(i * 200, i / 50) for i in range(1, 6)]}
    return {"run_id": "n" * 32, "name": "exp-20261202-000000", "experiment": "tests", "status": "FINISHED",
            "start_ms": 1_764_633_600_000, "end_ms": 1_764_637_200_000, "parent_id": None, "params": PARAMS,
            "tags": {"alert.5": "return_mean above bound", "raytrade.env": "raytrade/CryptoFutures-v0"},
            "metrics": {k: v[-1][1] for k, v in history.items()} | {"iteration": 10.0}, "history": history}


def _info() -> RunInfo:
    rows = [{"strategy": s, "scope": "portfolio", "symbol": "*PORTFOLIO*", "metric": m, "value": v,
             "ci_low": v - 0.1, "ci_high": v + 0.1} for s, m, v in
            (("agent", "sharpe", 1.25), ("buy_and_hold", "sharpe", 0.5), ("agent", "total_return", 0.3))]
    rows.append({"strategy": "agent", "scope": "symbol", "symbol": "BTC", "metric": "sharpe", "value": 9.0,
                 "ci_low": None, "ci_high": None})
    return RunInfo("/runs/exp-20261202-000000", {"iteration": 10, "env_steps": 1000, "best_metric": 0.42,
                                                  "best_iteration": 8, "status": "finished",
                                                  "alerts": ["entropy collapsed", "return_mean above bound"]},
                   checkpoints={"final": "/runs/exp-20261202-000000/checkpoints/final"},
                   backtests={"test-greedy": rows})


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:end if end > 0 else None]


def test_review_has_every_section():
    parent = {"run_id": "p" * 32, "name": "exp-20261201-000000", "params": PARAMS | {"algorithm.lr": "0.0003"}}
    out = review.review_text(_record(), _info(), parent=parent, parent_why="the previous run of the same name")
    assert out.startswith("# run exp-20261202-000000 (nnnn")
    assert "status finished, env raytrade/CryptoFutures-v0, model gru, algorithm PPO" in out
    assert "1.0k env steps, 10 iterations, config hash " in out and "best validation score 0.420 at iteration 8" in out
    diff = section(out, "config diff")
    assert "against exp-20261201-000000 (pppppppp), the previous run of the same name: 1 of 6" in diff
    assert diff.splitlines()[1:] == ["- algorithm.lr: 0.0003 -> 0.001"]
    curves = section(out, "learning curves")
    chart = [line for line in curves.splitlines() if " |" in line]
    assert len(chart) == 8 and chart[0].split("|")[0].strip() == "1.000" and chart[-1].split("|")[0].strip() == "0.100"
    assert chart[0].split("|")[1].strip() == "▁█" and chart[-1].split("|")[1][0] in GLYPHS  # rising
    assert "learners/default_policy/entropy" in curves and "val_greedy/return" in curves
    alerts = section(out, "alerts").splitlines()  # the MLflow tag and state.json's copy merge
    assert alerts[1:] == ["- iteration 5: return_mean above bound", "- entropy collapsed"]
    actions = [line.split()[1:4] for line in section(out, "action distribution").splitlines()[1:] if line]
    assert actions == [["0", "0.250", "[0.475]"], ["1", "0.750", "[0.525]"]]
    assert "return                      0.100  (max 0.100, min 0.020, 5 evals)" in section(out, "validation")
    backtests = section(out, "backtests")
    sharpe = next(line for line in backtests.splitlines() if line.strip().startswith("sharpe"))
    assert "test-greedy (portfolio)" in backtests and "9.000" not in backtests
    assert "1.250 [1.150, 1.350]" in sharpe and "0.500 [0.400, 0.600]" in sharpe
    total = next(line for line in backtests.splitlines() if line.strip().startswith("total_return"))
    assert total.split()[-1] == "-"  # buy_and_hold has no total_return row
    assert not BOX_DRAWING & set(out)


def test_review_of_a_bare_run_says_what_is_missing():
    out = review.review_text(None, RunInfo("/runs/orphan-20261203-000000", {"status": "failed"}))
    assert out.startswith("# run orphan-20261203-000000\nstatus failed")
    for text in ("no parent run", "no metric history logged", "none raised", "no actions/frac_*",
                 "no validation metrics logged", "none under the run dir"):
        assert text in out


def test_registry_entry_joins_mlflow_and_the_run_dir():
    specs = [MetricSpec(RETURN), MetricSpec("val_greedy/sharpe")]
    entry = review.registry_entry(_record(), _info(), specs, "sqlite:///m.db")
    assert entry["time"] == "2025-12-02T00:00:00+00:00" and entry["status"] == "finished"
    assert entry["metrics"] == {RETURN: {"last": 1.0, "best": 1.0, "mode": "max"},
                                "best_validation": {"value": 0.42, "iteration": 8}}  # no sharpe logged
    assert entry["alerts"] == 2 and entry["env_steps"] == 1000 and entry["iterations"] == 10
    assert entry["paths"]["mlflow"] == {"uri": "sqlite:///m.db", "run_id": "n" * 32}
    assert entry["paths"]["backtests"] == ["/runs/exp-20261202-000000/backtests/test-greedy"]
    # the same config from experiment.yaml (a run MLflow never saw) hashes the same
    nested = {"name": "other", "seed": 1, "env": {"id": "raytrade/CryptoFutures-v0"}, "model": {"name": "gru"},
              "algorithm": {"name": "PPO", "lr": 0.001}}
    bare = review.registry_entry(None, RunInfo("/runs/x", config=nested), specs)
    assert bare["config_hash"] == entry["config_hash"] and bare["id"] is None and bare["model"] == "gru"


def test_text_chart_and_config_hash():
    assert review.text_chart([]) == ["(no data)"]
    flat = review.text_chart([2.0, 2.0, 2.0], height=4)
    assert len(flat) == 5 and all("█" not in line for line in flat[:2]) and flat[2].endswith("███")
    step = review.text_chart([0, 0, 1, 1], width=4, height=2)
    assert step[0].endswith("|  ██") and step[1].split("|")[1][:2] == "▁▁"
    assert review.config_hash({"name": "a", "seed": "1"}) == review.config_hash({"name": "b", "seed": "1"})
    assert review.config_hash({"seed": "1"}) != review.config_hash({"seed": "2"})
    assert review.config_hash({"name": "a", "tracking.runs_dir": "x"}) is None
    assert review.flat_params({"a": {"b": 1e-3, "c": [1, 2]}}) == {"a.b": "0.001", "a.c": "[1, 2]"}


def test_find_parent_prefers_the_sweep():
    sweep = {"run_id": "s", "name": "sweep", "start_ms": 1}
    prior = {"run_id": "p", "name": "exp-20261201-000000", "start_ms": 2}
    trial = {"run_id": "t", "name": "exp-20261202-000000", "start_ms": 3, "parent_id": "s"}
    solo = {"run_id": "u", "name": "exp-20261203-000000", "start_ms": 4}
    assert review.find_parent(trial, [sweep, prior, trial, solo]) == (sweep, "its sweep")
    assert review.find_parent(solo, [sweep, prior, trial, solo])[0] is trial
    assert review.find_parent(prior, [sweep, prior, trial, solo]) == (None, "")
