"""Curriculum without a cluster: the promotion/demotion rules, the taskable vector env (a task
change changes behaviour and ends episodes cleanly), and the callback on fake env runners."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium.wrappers.vector import DictInfoToList

from app.config.schema import CurriculumConfig
from app.runs.env_factory import create_env
from app.training.callbacks import TradingCallbacks
from app.training.curriculum import (
    CurriculumCallbacks,
    CurriculumState,
    advance,
    apply_stage,
    get_tasks,
    lookup_metric,
    make_callbacks,
    stage_tags,
)
from app.training.rllib_env import _rllib_creator
from app.training.task_env import TaskableVectorEnv, check_no_widening, task_config

M = "env_runners/episode_return_mean"
CRYPTO = "raytrade/CryptoFutures-v0"
LONG, FLAT = 4, 2  # CryptoFutures discrete levels (-1, -0.5, 0, 0.5, 1)


def curriculum(k: int = 2) -> CurriculumConfig:
    return CurriculumConfig.model_validate({"stages": [
        {"name": "easy", "env": {"fee_bps": 0.0}, "promote": {"above": 0.5, "for_iterations": k}},
        {"name": "mid", "env": {"fee_bps": 5.0}, "promote": {"above": 0.5, "for_iterations": k},
         "demote": {"metric": "trading/sharpe", "below": -1.0, "for_iterations": k}},
        {"name": "hard", "env": {}, "promote": {"above": 0.5, "for_iterations": 1}},
    ]})


def run_rules(cur: CurriculumConfig, values: list[dict], state: CurriculumState | None = None):
    state, stages = state or CurriculumState(), []
    for metrics in values:
        state, _ = advance(cur, state, metrics)
        stages.append(state.stage)
    return state, stages


# --- rules -----------------------------------------------------------------------------------
def test_promotion_after_k_consecutive_iterations_above_the_threshold():
    state, stages = run_rules(curriculum(3), [{M: 1.0}] * 3)
    assert stages == [0, 0, 1] and state.promotions == 1 and state.promote_streak == 0


def test_a_miss_resets_the_streak_and_a_missing_metric_does_not():
    _, stages = run_rules(curriculum(2), [{M: 1.0}, {M: 0.1}, {M: 1.0}, {}, {M: math.nan}, {M: 1.0}])
    assert stages == [0, 0, 0, 0, 0, 1]


def test_threshold_is_strict():
    _, stages = run_rules(curriculum(1), [{M: 0.5}, {M: 0.5000001}])
    assert stages == [0, 1]


def test_demotion_is_the_emergency_brake_and_wins_over_promotion():
    cur = curriculum(2)
    state, stages = run_rules(cur, [{M: 1.0, "trading/sharpe": -2.0}] * 2, CurriculumState(stage=1))
    assert stages == [1, 0] and state.demotions == 1 and state.promotions == 0


def test_the_first_stage_is_never_demoted_and_the_last_stays():
    cur = curriculum(1)
    state, stages = run_rules(cur, [{M: 1.0, "trading/sharpe": -5.0}], CurriculumState(stage=0))
    assert stages == [1]  # stage 0 has no demotion; promoted
    state, stages = run_rules(cur, [{M: 9.0}] * 5, CurriculumState(stage=2))
    assert stages == [2] * 5 and state.promote_streak == 0


def test_a_stage_without_promote_rule_is_final():
    cur = CurriculumConfig.model_validate({"stages": [{"name": "a"}, {"name": "b"}]})
    _, stages = run_rules(cur, [{M: 1e9}] * 3)
    assert stages == [0, 0, 0]


def test_state_round_trips_and_stage_tags():
    state = CurriculumState(stage=2, promote_streak=1, promotions=2, demotions=1)
    assert CurriculumState.from_dict(state.to_dict()) == state
    assert stage_tags(curriculum(), {"curriculum/stage": 1.0}) == {
        "raytrade.curriculum.stage": "mid", "raytrade.curriculum.stage_index": "1"}
    assert stage_tags(None, {"curriculum/stage": 1.0}) == {} and stage_tags(curriculum(), {}) == {}


def test_metric_names_are_those_of_flatten_result():
    from app.training.results import flatten_result

    result = {"env_runners": {"episode_return_mean": 0.25, "num_episodes": 4, "trading": {"sharpe": 1.5}},
              "learners": {"default_policy": {"entropy": 0.7}}, "time_this_iter_s": 1.0, "training_iteration": 3}
    for key, value in flatten_result(result).items():
        assert lookup_metric(result, key) == pytest.approx(value), key
    assert lookup_metric(result, "env_runners/trading/sharpe") == 1.5
    assert lookup_metric(result, "training_iteration") == 3.0
    assert lookup_metric(result, "val_greedy/sharpe") is None


# --- the taskable vector env -------------------------------------------------------------------
def crypto_env(num_envs: int = 2, **config) -> TaskableVectorEnv:
    base = {"episode_bars": 6, "fee_bps": 0.0, "slippage_bps": 0.0, "market_seed": 3} | config
    return _rllib_creator(CRYPTO, base | {"num_envs": num_envs})


def round_trip_fees(env) -> np.ndarray:
    """Open long, then close: fees paid over the round trip, per env."""
    env.step(np.full(env.num_envs, LONG))
    _, _, _, _, info = env.step(np.full(env.num_envs, FLAT))
    return np.asarray(info["fees_paid_usd"])


def test_set_task_changes_the_fee_of_a_round_trip():
    env = crypto_env()
    env.reset(seed=0)
    assert np.all(round_trip_fees(env) == 0.0)
    env.set_task({"fee_bps": 10.0})
    assert env.get_task() == {"fee_bps": 10.0} and env.engine.config.fee_bps == 10.0
    env.step(np.full(2, FLAT))  # running episodes end truncated
    env.step(np.full(2, FLAT))  # the new task's first observation
    assert np.all(round_trip_fees(env) > 0.0)
    env.set_task({})
    assert env.engine.config.fee_bps == 0.0  # tasks are relative to the base config, not cumulative


def test_a_task_switch_truncates_running_episodes_then_autoresets():
    env = crypto_env(num_envs=3)
    obs0, _ = env.reset(seed=1)
    for _ in range(2):
        last_obs, *_ = env.step(np.array([LONG, FLAT, LONG]))
    env.set_task({"fee_bps": 10.0, "market_seed": 4})
    obs, reward, term, trunc, info = env.step(np.array([FLAT, FLAT, FLAT]))
    assert trunc.all() and not term.any() and np.all(reward == 0.0)
    for key in obs:  # the truncated episodes end on their own last observation
        np.testing.assert_array_equal(obs[key], last_obs[key])
    obs, reward, term, trunc, info = env.step(np.array([LONG, LONG, LONG]))  # actions ignored: autoreset
    assert not (trunc | term).any() and np.all(reward == 0.0)
    assert np.all(np.asarray(info["equity_usd"]) == 10_000.0) and np.all(np.asarray(info["position_qty"]) == 0.0)
    _, reward, *_ = env.step(np.array([LONG, FLAT, LONG]))  # the new task steps normally
    assert reward[0] != 0.0 and reward[1] == 0.0


def test_an_env_waiting_for_its_autoreset_starts_the_new_task_at_once():
    env = crypto_env(num_envs=2, episode_bars=2)
    env.reset(seed=2)
    env.step(np.array([LONG, LONG]))
    _, _, _, trunc, _ = env.step(np.array([LONG, LONG]))
    assert trunc.all()  # both episodes just ended (episode_bars=2)
    env.set_task({"fee_bps": 10.0})
    _, reward, term, trunc, info = env.step(np.array([FLAT, FLAT]))
    assert not (term | trunc).any() and np.all(np.asarray(info["equity_usd"]) == 10_000.0)
    _, reward, _, _, info = env.step(np.array([LONG, LONG]))  # no extra reset step: they trade now
    assert np.all(np.asarray(info["fees_paid_usd"]) > 0.0)


def test_set_task_is_idempotent_and_rejects_bad_tasks():
    env = crypto_env()
    env.reset(seed=0)
    env.set_task({})  # the current task: nothing happens
    _, _, _, trunc, _ = env.step(np.full(2, FLAT))
    assert not trunc.any()
    with pytest.raises(ValueError, match="unknown field"):
        env.set_task({"no_such_key": 1})
    with pytest.raises(ValueError, match="space"):
        env.set_task({"size_levels": (1.0,)})
    with pytest.raises(ValueError, match="num_envs"):
        env.set_task({"num_envs": 4})
    assert env.get_task() == {}
    _, _, _, trunc, _ = env.step(np.full(2, FLAT))
    assert not trunc.any()  # a refused task leaves the running episodes alone


def test_unwrapped_call_reaches_set_task_through_rllibs_wrapper():
    env = DictInfoToList(crypto_env())
    assert isinstance(env.unwrapped, TaskableVectorEnv)
    env.reset(seed=0)
    env.unwrapped.call("set_task", {"leverage": 1.0})
    assert env.unwrapped.call("get_task") == {"leverage": 1.0}
    assert env.unwrapped.call("num_envs") == 2
    _, _, _, trunc, infos = env.step(np.full(2, FLAT))
    assert trunc.all() and len(infos) == 2 and "equity_usd" in infos[0]


def test_the_plain_factory_is_unchanged():
    assert not isinstance(create_env(CRYPTO, {"num_envs": 2}), TaskableVectorEnv)


def test_task_config_merges_data_and_forbids_widening_the_training_data():
    base = {"fee_bps": 5.0, "start_ts_ns": 10, "end_ts_ns": 20,
            "data": {"store": "s", "source": "x", "market_type": "swap", "timeframe": "1h", "symbols": ["A", "B"]}}
    assert task_config(base, {"data": {"symbols": ["A"]}})["data"]["symbols"] == ["A"]
    synthetic = task_config(base, {"data": None, "start_ts_ns": None, "end_ts_ns": None})
    assert "data" not in synthetic and synthetic["fee_bps"] == 5.0
    check_no_widening(base, synthetic)
    check_no_widening(base, task_config(base, {"data": {"symbols": ["B"]}, "start_ts_ns": 12}))
    check_no_widening(base, task_config(base, {"data": {"source": "other", "symbols": ["Z"]}}))
    with pytest.raises(ValueError, match="not in the run's training data"):
        check_no_widening(base, task_config(base, {"data": {"symbols": ["A", "TEST"]}}))
    with pytest.raises(ValueError, match="wider"):
        check_no_widening(base, task_config(base, {"end_ts_ns": 30}))


# --- the callback on fake env runners ----------------------------------------------------------
class FakeRunner:
    def __init__(self, env=None) -> None:
        self.env = env


class FakeGroup:
    """``foreach_env_runner`` over a local runner and remote ones (ids 1..n), in process."""

    def __init__(self, local: FakeRunner, remotes: list[FakeRunner]) -> None:
        self.local, self.remotes = local, remotes

    def foreach_env_runner(self, func, *, local_env_runner=True, remote_worker_ids=None, **_):
        ids = remote_worker_ids or list(range(1, len(self.remotes) + 1))
        return ([func(self.local)] if local_env_runner else []) + [func(self.remotes[i - 1]) for i in ids]


class FakeConfig:
    env, env_config = None, {}


class FakeAlgorithm:
    def __init__(self, group: FakeGroup) -> None:
        self.env_runner_group, self.config, self.saved = group, FakeConfig(), {"weights": 1}

    def get_state(self, components=None, *, not_components=None, **kwargs):
        return dict(self.saved)

    def set_state(self, state):
        self.saved = {k: v for k, v in state.items() if k != "curriculum"}


def wrapped_env():
    return DictInfoToList(crypto_env())


def test_make_callbacks_builds_one_class_per_run():
    cls = make_callbacks(8760, curriculum=curriculum())
    assert issubclass(cls, CurriculumCallbacks) and issubclass(cls, TradingCallbacks)
    assert cls.periods_per_year == 8760.0 and cls.curriculum.stages[0].name == "easy"
    assert not issubclass(make_callbacks(252), CurriculumCallbacks)


def test_callback_moves_every_runner_reports_the_stage_and_survives_restarts_and_restores():
    group = FakeGroup(FakeRunner(None), [FakeRunner(wrapped_env()), FakeRunner(wrapped_env())])
    algo = FakeAlgorithm(group)
    cb = make_callbacks(252, curriculum=curriculum(k=1))()
    cb.on_algorithm_init(algorithm=algo, metrics_logger=None)
    assert get_tasks(group) == [{"fee_bps": 0.0}] * 2
    result = {"env_runners": {"episode_return_mean": 1.0}}
    cb.on_train_result(algorithm=algo, result=result, metrics_logger=None)
    assert result["curriculum"]["stage"] == 1 and result["curriculum"]["stage_name"] == "mid"
    assert get_tasks(group) == [{"fee_bps": 5.0}] * 2
    saved = algo.get_state()
    assert saved["curriculum"]["stage"] == 1 and saved["weights"] == 1

    group.remotes[1] = FakeRunner(wrapped_env())  # recreated with the base task
    cb.on_env_runners_recreated(algorithm=algo, env_runner_group=group, env_runner_indices=[2], is_evaluation=False)
    assert get_tasks(group) == [{"fee_bps": 5.0}] * 2

    cb.on_train_result(algorithm=algo, result={"env_runners": {"episode_return_mean": 1.0}}, metrics_logger=None)
    assert cb.state.stage == 2 and get_tasks(group) == [{}] * 2
    algo.set_state(saved)  # a restore brings back the stage of the checkpoint and moves the runners
    assert cb.state.stage == 1 and get_tasks(group) == [{"fee_bps": 5.0}] * 2


def test_a_runner_that_refuses_a_task_is_reported():
    group = FakeGroup(FakeRunner(None), [FakeRunner(wrapped_env())])
    with pytest.raises(RuntimeError, match="refused"):
        apply_stage(group, {"no_such_key": 1})
