"""The evaluation studies on a tiny synthetic market with a random-weight GRU (no Ray cluster),
the look-ahead study against a deliberately leaky env, and ``raytrade evaluate`` on a tiny run
directory made without training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from gymnasium.envs.registration import register, registry
from typer.testing import CliRunner

from app.config.loader import parse_experiment
from app.evaluation.backtest import backtest
from app.evaluation.studies import (
    GROUP_COLUMNS,
    METRICS,
    StudyError,
    market_view,
    records_frame,
    symbol_metrics,
    with_symbols,
)
from app.evaluation.studies_lookahead import lookahead_table, truncate, truncate_index
from app.evaluation.studies_policy import (
    HistoryMask,
    bars_per_period,
    history_length_table,
    history_mask_for,
    policy_mode_table,
)
from app.evaluation.studies_symbols import compare_symbol_groups, study_experiment
from app.evaluation.studies_time import (
    NS_PER_MONTH,
    bar_returns,
    decay_slope,
    future_distance_table,
)
from app.models import module_spec
from app.runs.env_factory import create_env
from app.runs.run_dir import RunDir
from envs import synthetic
from envs.core.market import CLOSE, MarketArrays
from envs.core.observation import ObservationSpec, market_observation, prepare_features
from envs.stock_swing import StockSwingConfig, StockSwingEngine
from envs.vector import EngineVectorEnv, resolve_inputs
from tests.unit.models import small_config

torch.set_num_threads(1)

ENV_ID = "raytrade/SyntheticMeanReversion-v0"
LEAKY_ID = "raytrade-test/LeakySwing-v0"
PPY = 252.0


# --- a deliberately leaky env: the newest close entry peeks at the NEXT bar's close ----------------

class LeakyEngine(StockSwingEngine):
    """StockSwing whose observation at bar t holds ``log(close[t+1] / close[t])`` (look-ahead)."""

    def observe(self) -> dict[str, np.ndarray]:
        obs = super().observe()
        rows = np.asarray(self.row)
        last = self.market.offsets[np.asarray(self.symbol) + 1] - 1
        close = self.market.ohlcv[:, CLOSE]
        hloc = obs["daily_hloc"].copy()
        hloc[:, -1, 3] = np.log(close[np.minimum(rows + 1, last)] / close[rows])
        return obs | {"daily_hloc": hloc}


class LeakySwingVectorEnv(EngineVectorEnv):
    def __init__(self, num_envs: int = 1, market=None, index=None, config: StockSwingConfig | None = None,
                 **overrides) -> None:
        market, index, config = resolve_inputs(StockSwingConfig, market, index, config, overrides)
        super().__init__(LeakyEngine(market, config, index=index, num_envs=num_envs, batched=True))


if LEAKY_ID not in registry:
    register(id=LEAKY_ID, entry_point=f"{__name__}:LeakySwingVectorEnv",
             vector_entry_point=f"{__name__}:LeakySwingVectorEnv",
             kwargs={"synthetic": "mean_reversion", "mode": "swing", "reward": "log_return"})


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config() -> dict:
    market = synthetic.generate("mean_reversion", seed=0, n_symbols=3, n_bars=120)
    return {"market": market.market, "index": market.index, "window_bars": 10, "episode_bars": 32}


def build_module(env_id: str, env_config: dict, name: str = "gru"):
    env = create_env(env_id, env_config | {"num_envs": 1})
    torch.manual_seed(0)
    module = module_spec(name, small_config(name), observation_space=env.single_observation_space,
                         action_space=env.single_action_space).build()
    module.eval()
    return module


@pytest.fixture(scope="module")
def module(config):
    return build_module(ENV_ID, config)


# --- history mask ----------------------------------------------------------------------------------

def test_history_mask_neutral_fill_keeps_the_newest_entries_and_renormalizes_volume():
    rng = np.random.default_rng(0)
    obs = {"daily_hloc": rng.normal(0, 0.05, (2, 6, 4)).astype(np.float32),
           "daily_volume": rng.uniform(0.2, 2.0, (2, 6)).astype(np.float32),
           "assets_volume": rng.uniform(0.2, 2.0, (2, 3, 6, 1)).astype(np.float32),
           "owned": np.ones((2, 1), np.float32)}
    before = {k: v.copy() for k, v in obs.items()}
    out = HistoryMask(2, ("daily_hloc",), ("daily_volume", "assets_volume"))(obs)
    for k in obs:
        np.testing.assert_array_equal(obs[k], before[k])  # input untouched
    np.testing.assert_array_equal(out["daily_hloc"][:, -2:], obs["daily_hloc"][:, -2:])
    assert (out["daily_hloc"][:, :4] == 0).all()
    kept = obs["daily_volume"][:, -2:].astype(np.float64)
    np.testing.assert_allclose(out["daily_volume"][:, -2:], kept / kept.mean(1, keepdims=True), rtol=1e-6)
    assert (out["daily_volume"][:, :4] == 1).all()
    assert out["assets_volume"].shape == (2, 3, 6, 1) and (out["assets_volume"][:, :, :4] == 1).all()
    np.testing.assert_allclose(out["assets_volume"][:, :, -2:].mean(axis=2), 1.0, rtol=1e-6)
    assert out["owned"] is obs["owned"] and out["daily_hloc"].dtype == np.float32


def test_history_mask_repeat_fill_is_the_builders_window_of_a_series_started_k_bars_ago():
    """Repeat-fill == what the one observation builder gives for a series that starts k bars ago."""
    bars = synthetic.generate("gbm", seed=1, n_symbols=1, n_bars=40).market
    spec = ObservationSpec(window_bars=12, periods=(), volume_periods=(), with_index=False)
    full = market_observation(prepare_features(bars.ts_ns, bars.ohlcv, bars.offsets, spec), np.array([39]))
    k = 5
    short = market_observation(prepare_features(bars.ts_ns[-k:], bars.ohlcv[-k:], np.array([0, k]), spec),
                               np.array([k - 1]))
    masked = history_mask_for(spec, k, scope="entries", fill="repeat")(full)
    np.testing.assert_array_equal(masked["daily_hloc"], short["daily_hloc"])
    np.testing.assert_allclose(masked["daily_volume"], short["daily_volume"], rtol=1e-5)
    assert set(history_mask_for(ObservationSpec(), 5, scope="bars").price_keys) == {"daily_hloc", "index_hloc"}
    with pytest.raises(StudyError, match="scope"):
        history_mask_for(spec, 5, scope="weeks")


def test_history_mask_time_scope_cuts_period_windows_to_the_same_span(config):
    per_period = bars_per_period(config["market"], ("W", "M"))
    assert per_period["W"] == pytest.approx(5.0, abs=0.2) and 19 < per_period["M"] < 23  # business days
    mask = history_mask_for(ObservationSpec(), 10, per_period={"W": 5.0, "M": 21.0})
    assert mask.keep == 10 and dict(mask.keep_by_key) == {"weekly_hloc": 2, "weekly_volume": 2, "monthly_hloc": 1}
    entries = history_mask_for(ObservationSpec(), 10, scope="entries")
    assert not entries.keep_by_key and "monthly_hloc" in entries.price_keys
    obs = {"weekly_hloc": np.ones((1, 50, 4), np.float32), "daily_hloc": np.ones((1, 50, 4), np.float32)}
    out = mask(obs)
    assert out["weekly_hloc"][0, :, 0].sum() == 2 and out["daily_hloc"][0, :, 0].sum() == 10
    with pytest.raises(StudyError, match="bars per period"):
        history_mask_for(ObservationSpec(), 10)


def test_obs_transform_identity_is_backwards_compatible(module, config):
    plain = records_frame(backtest(module, ENV_ID, config, with_values=False))
    same = records_frame(backtest(module, ENV_ID, config, with_values=False, obs_transform=lambda o: dict(o)))
    pd.testing.assert_frame_equal(plain, same)


def test_history_length_table(module, config):
    table, per_symbol = history_length_table(module, ENV_ID, config, [2, 5, 50], PPY, n_boot=200)
    assert sorted(per_symbol["window_bars"].unique()) == [2, 5, 10]  # 50 > the window: the full one
    levels = table[table["kind"] == "level"]
    full = levels[(levels["window_bars"] == 10) & (levels["metric"] == "action_agreement")]
    assert full["value"].iloc[0] == 1.0
    assert set(table.loc[table["kind"] == "diff", "group"]) == {"2 - 10", "5 - 10"}
    _assert_time_block_intervals(table, ("2 - 10", "10", "2"))
    agree = levels[(levels["window_bars"] == 2) & (levels["metric"] == "action_agreement")].iloc[0]
    assert agree.ci_low <= agree.value <= agree.ci_high and "over time" in agree.ci_method
    assert (levels.groupby("group")["n"].max() == 3).all()
    assert list(table.columns[1:]) == [*GROUP_COLUMNS, "kind"]


# --- greedy vs stochastic, unseen symbols, future distance ------------------------------------

def test_policy_mode_table(module, config):
    table, per_symbol = policy_mode_table(module, ENV_ID, config, 2, PPY, seed=3, n_boot=200)
    assert set(table["group"]) == {"greedy", "stochastic", "stochastic - greedy"}
    assert per_symbol.groupby("mode")["sample"].nunique().to_dict() == {"greedy": 1, "stochastic": 2}
    greedy = symbol_metrics(records_frame(backtest(module, ENV_ID, config, with_values=False)),
                            market_view(ENV_ID, config), PPY)
    row = table[(table["group"] == "greedy") & (table["metric"] == "total_return")]
    assert row["value"].iloc[0] == pytest.approx(greedy["total_return"].mean())
    stoch = table[(table["group"] == "stochastic") & (table["metric"] == "total_return")]
    assert np.isfinite(stoch["sample_std"].iloc[0])
    diff = table[(table["group"] == "stochastic - greedy") & (table["metric"] == "excess_return")]
    assert diff["ci_low"].iloc[0] <= diff["value"].iloc[0] <= diff["ci_high"].iloc[0]
    _assert_time_block_intervals(table, ("stochastic - greedy", "greedy", "stochastic"))
    conf = table[table["metric"] == "mean_max_prob"]
    assert conf["ci_method"].str.contains("over time").all()


def _assert_time_block_intervals(table: pd.DataFrame, groups) -> None:
    """Every resampled metric of every group has a joint time-block interval; trades none."""
    for group in groups:
        rows = table[table["group"] == group].set_index("metric")
        for metric in ("total_return", "excess_return", "sharpe", "exposure", "bh_total_return"):
            assert "joint across symbols and groups" in rows.loc[metric, "ci_method"], (group, metric)
            assert np.isfinite(rows.loc[metric, "ci_low"]) or metric == "sharpe", (group, metric)
        assert np.isnan(rows.loc["trades", "ci_low"]) and "round trips" in rows.loc["trades", "ci_method"]


def test_compare_symbol_groups(module, config):
    configs = {"seen": with_symbols(config, ["SYN0", "SYN1"]), "unseen": with_symbols(config, ["SYN2"])}
    table, per_symbol = compare_symbol_groups(module, ENV_ID, configs, PPY, n_boot=200)
    assert per_symbol.groupby("group")["symbol"].apply(sorted).to_dict() == {"seen": ["SYN0", "SYN1"],
                                                                            "unseen": ["SYN2"]}
    assert set(table["group"]) == {"seen", "unseen", "unseen - seen"}
    assert set(table["metric"]) == set(METRICS)
    _assert_time_block_intervals(table, ("seen", "unseen", "unseen - seen"))
    ex = per_symbol["total_return"] - per_symbol["bh_total_return"]
    np.testing.assert_allclose(per_symbol["excess_return"], ex)


def test_study_experiment_retargets_data_budget_and_tracking(tmp_path):
    raw = {"name": "demo", "seed": 7, "env": {"id": "raytrade/StockSwing-v0"},
           "data": {"store": str(tmp_path / "store"), "dataset": {"source": "stooq", "market_type": "stock"},
                    "by_symbol": {}, "by_time": {"train_end": "2012-01-01", "validation_end": "2015-01-01"}}}
    exp = parse_experiment(raw)
    ft = study_experiment(exp, ["BRK/B"], 4096, tmp_path / "runs", "demo-ft-BRK/B")
    assert ft.name == "demo-ft-BRK_B" and ft.data.symbols == ["BRK/B"] and ft.data.by_symbol is None
    assert ft.data.by_time == exp.data.by_time  # same time windows: never the test window
    assert ft.stopping.env_steps == 4096 and ft.stopping.iterations is None
    assert ft.tracking.runs_dir == (tmp_path / "runs").resolve()
    assert ft.tracking.mlflow_uri.startswith("sqlite:///") and str(tmp_path) in ft.tracking.mlflow_uri
    with pytest.raises(StudyError, match="synthetic"):
        study_experiment(parse_experiment({"name": "s", "env": {"id": ENV_ID}}), ["X"], 10, tmp_path, "x")


def test_future_distance_buckets(module, config):
    ts = config["market"].ts_ns
    start = int(ts[40])
    bars = bar_returns(module, ENV_ID, config, start)
    assert bars["ts_ns"].min() > start and set(bars["symbol"]) == {"SYN0", "SYN1", "SYN2"}
    table, per_symbol = future_distance_table(bars, start, PPY, windows={"test": (start, int(ts[-1]) + 1)},
                                              n_boot=200)
    assert table["n_bars"].sum() == len(bars) and (table["n_symbols"] == 3).all()
    assert list(table["months_from"]) == list(range(len(table))) and (table["part"] == "test").all()
    first = bars[(bars["symbol"] == "SYN0") & (bars["ts_ns"] < start + NS_PER_MONTH)]
    got = per_symbol[(per_symbol["symbol"] == "SYN0") & (per_symbol["bucket"] == 0)]
    assert got["bars"].iloc[0] == len(first) > 0
    assert got["agent_return"].iloc[0] == pytest.approx(np.prod(1 + first["agent_return"]) - 1, rel=1e-12)
    np.testing.assert_allclose(per_symbol["excess_return"], per_symbol["agent_return"] - per_symbol["bh_return"])
    full = table[table["n_bars"] >= 3 * 10]  # three symbols, at least MIN_BUCKET_BARS bars each
    assert len(full) and full["ci_method"].str.contains("joint across symbols").all()
    assert (full["excess_return_ci_low"] <= full["excess_return"]).all()
    assert (full["excess_return"] <= full["excess_return_ci_high"]).all()
    slope = decay_slope(per_symbol, 1, n_boot=50, bars=bars, train_end_ns=start)
    assert "over the bucket's bars" in slope["ci_method"] and slope["ci_low"] <= slope["ci_high"]


def test_decay_slope_recovers_a_known_trend():
    rng = np.random.default_rng(0)
    rows = [{"symbol": f"S{s}", "bucket": b, "excess_return": -0.01 * b + rng.normal(0, 0.005)}
            for s in range(12) for b in range(10)]
    slope = decay_slope(pd.DataFrame(rows), 1, n_boot=300)
    assert slope["ci_low"] < -0.01 < slope["ci_high"] and slope["slope_per_month"] == pytest.approx(-0.01, abs=2e-3)
    assert "independent" in slope["ci_method"]  # one number per symbol and bucket: said so


# --- look-ahead ---------------------------------------------------------------------------------------

def test_truncate_cuts_every_per_row_array():
    perp = synthetic.generate_perpetual(seed=0, n_symbols=1, n_bars=50)
    cut = truncate(perp, 20)
    assert len(cut.ts_ns) == 20 and cut.funding_rate.shape == (20,) and cut.mark_ohlc.shape == (20, 4)
    index = MarketArrays(("I",), np.array([0, 50]), perp.ts_ns, perp.ohlcv)
    assert truncate_index(index, int(perp.ts_ns[9])).ts_ns[-1] == perp.ts_ns[9]
    assert truncate_index(None, 0) is None


def test_lookahead_finds_nothing_in_the_real_env(module, config):
    table = lookahead_table(module, ENV_ID, config, n_symbols=2, n_decisions=4, seed=1)
    assert len(table) == 8 and table["symbol"].nunique() == 2
    assert table["matches_backtest"].all() and table["same_start"].all()
    assert not table["leak"].any() and (table["max_prob_diff"] == 0).all()


def test_lookahead_catches_a_leaky_env(config):
    leaky = build_module(LEAKY_ID, config)
    table = lookahead_table(leaky, LEAKY_ID, config, symbols=["SYN1"], n_decisions=5, seed=1)
    assert len(table) == 5 and table["matches_backtest"].all()
    assert table["obs_changed"].all() and table["leak"].all()
    assert (table["fields_changed"] == "daily_hloc").all()
    assert table["decision_changed"].any() and (table["max_prob_diff"] > 1e-6).any()


# --- the CLI on tiny run directories (no training: random weights saved as the final policy) --------

runner = CliRunner()


def make_run(tmp_path, env_id: str = ENV_ID):
    """A run directory whose final policy is a random-weight MLP; backtests end after ~300 bars."""
    end_ts_ns = int(pd.Timestamp("2001-03-01", tz="UTC").value)
    exp = parse_experiment({"name": "tiny", "seed": 1,
                            "env": {"id": env_id, "config": {"window_bars": 10, "end_ts_ns": end_ts_ns}},
                            "model": {"name": "mlp", "config": small_config("mlp")},
                            "tracking": {"runs_dir": str(tmp_path)}})
    run = RunDir.create(exp)
    build_module(env_id, {"window_bars": 10}, "mlp").save_to_path(str(run.policy_dir("final")))
    return run


def test_cli_help_and_argument_validation(tmp_path):
    from app.cli import app

    out = runner.invoke(app, ["evaluate", "--help"])
    assert out.exit_code == 0
    for name in ("unseen-symbols", "future-distance", "history-length", "greedy-vs-stochastic", "lookahead"):
        assert name in out.output
    run = make_run(tmp_path)
    bad = runner.invoke(app, ["evaluate", "history-length", str(run.path), "--windows", "a,b"])
    assert bad.exit_code == 2 and "--windows" in bad.output
    bad = runner.invoke(app, ["evaluate", "unseen-symbols", str(run.path), "--include-steps", "5"])
    assert bad.exit_code == 2
    for study, why in (("future-distance", "time split"), ("unseen_symbols", "by-symbol split")):
        out = runner.invoke(app, ["evaluate", study, str(run.path)])
        assert out.exit_code == 2 and why in out.output


def test_cli_runs_studies_and_lookahead_exit_codes(tmp_path):
    from app.cli import app

    run = make_run(tmp_path)
    out = runner.invoke(app, ["evaluate", "greedy-vs-stochastic", str(run.path), "--samples", "2",
                              "--n-boot", "100"])
    assert out.exit_code == 0, out.output
    done = run.path / "studies" / "greedy_vs_stochastic"
    assert (done / "result.parquet").exists() and (done / "plot.png").exists()
    notes = json.loads((done / "notes.json").read_text())
    assert notes["samples"] == 2
    assert any("joint across symbols" in method for method in notes["ci_method"])
    out = runner.invoke(app, ["evaluate", "lookahead", str(run.path), "--n-symbols", "1", "--n-decisions", "2"])
    assert out.exit_code == 0 and "no look-ahead found" in out.output
    leaky = make_run(tmp_path / "leaky", LEAKY_ID)
    out = runner.invoke(app, ["evaluate", "lookahead", str(leaky.path), "--n-symbols", "1", "--n-decisions", "2"])
    assert out.exit_code == 1 and "LOOK-AHEAD" in out.output and "daily_hloc" in out.output
