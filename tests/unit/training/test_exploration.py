"""The exploration bandit's RLlib glue without Ray: per-sub-env arms, episode returns over
chunks, the module's per-row temperatures, metrics through RLlib's own MetricsLogger, and the
callbacks class composed with the curriculum."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from app.config.schema import CurriculumConfig, ExplorationConfig
from app.training.callbacks import TradingCallbacks
from app.training.curriculum import CurriculumCallbacks, make_callbacks
from app.training.exploration import BanditExplorationCallbacks, EpisodeArms, episode_return
from app.training.results import flatten_result

TEMPS = [0.5, 1.0, 2.0]
_ids = itertools.count()


class Episode:
    """An episode chunk: its id and the rewards in it (``get_return`` as RLlib's)."""

    def __init__(self, rewards: list[float], id_: str | None = None) -> None:
        self.id_ = id_ or f"ep{next(_ids)}"
        self.rewards = rewards

    def get_return(self) -> float:
        return float(sum(self.rewards))

    def get_infos(self) -> list:  # TradingCallbacks reads infos: none here, so it logs nothing
        return []


class Module:
    exploration_temperature: object = 1.0


def runner(num_envs: int = 4, seed: int = 3, worker_index: int = 0, in_evaluation: bool = False):
    return SimpleNamespace(num_envs=num_envs, worker_index=worker_index,
                           config=SimpleNamespace(seed=seed, in_evaluation=in_evaluation))


def callbacks(**exploration) -> BanditExplorationCallbacks:
    config = ExplorationConfig(bandit=True, temperatures=TEMPS, **exploration)
    return make_callbacks(252.0, exploration=config)()


def test_each_sub_env_episode_gets_its_own_arm_and_the_module_its_temperatures():
    cb, run, module = callbacks(), runner(), Module()
    episodes = [Episode([]) for _ in range(4)]
    for i, ep in enumerate(episodes):
        cb.on_episode_start(episode=ep, env_runner=run, env_index=i, rl_module=module)
    temps = module.exploration_temperature
    assert isinstance(temps, torch.Tensor) and temps.shape == (4,)
    # untried arms first, across sub-envs: 0, 1, 2, then the bandit's choice
    assert temps[:3].tolist() == TEMPS
    assert cb._arms.bandit.t == 0  # nothing rewarded yet


def test_the_whole_episode_return_rewards_the_arm_that_played_it():
    cb, run, module = callbacks(), runner(num_envs=2), Module()
    first, second = Episode([]), Episode([])
    cb.on_episode_start(episode=first, env_runner=run, env_index=0, rl_module=module)   # arm 0
    cb.on_episode_start(episode=second, env_runner=run, env_index=1, rl_module=module)  # arm 1
    earlier = [Episode([0.25, 0.25], first.id_), Episode([0.5], first.id_)]
    last = Episode([-0.25], first.id_)
    cb.on_episode_end(episode=last, prev_episode_chunks=earlier, env_runner=run, env_index=0, rl_module=module)
    assert cb._arms.bandit.counts().tolist() == [1, 0, 0]
    assert cb._arms.bandit.values()[0] == pytest.approx(0.75)


def test_an_abandoned_episode_rewards_nothing():
    """A forced reset starts new episodes without ending the old ones: a late end of the old
    episode (other id) must not reward the arm of the new one."""
    arms = EpisodeArms(ExplorationConfig(bandit=True, temperatures=TEMPS), num_envs=1, seed=0)
    arms.start(0, "old")
    arms.start(0, "new")
    assert arms.end(0, "old", 1.0) is None and arms.bandit.t == 0
    assert arms.end(0, "new", math.nan) is None and arms.bandit.t == 0  # NaN: not a reward
    arms.start(0, "next")
    assert arms.end(0, "next", 2.0) is not None and arms.bandit.t == 1


def test_episode_return_sums_all_chunks():
    assert episode_return(Episode([1.0, 2.0]), [Episode([0.5]), Episode([-1.0])]) == pytest.approx(2.5)
    assert episode_return(Episode([1.0]), None) == 1.0


def test_the_bandit_follows_the_better_temperature():
    """Through the callbacks: episodes at T = 2 return more; the bandit then starts most
    episodes there (epsilon 0.2 keeps some exploration)."""
    cb, run, module = callbacks(epsilon=0.2, window=60), runner(num_envs=1), Module()
    rng = np.random.default_rng(0)
    chosen = []
    for _ in range(400):
        ep = Episode([])
        cb.on_episode_start(episode=ep, env_runner=run, env_index=0, rl_module=module)
        temp = float(module.exploration_temperature[0])
        chosen.append(temp)
        ep.rewards = [rng.normal(0.05 if temp == 2.0 else 0.0, 0.02)]
        cb.on_episode_end(episode=ep, prev_episode_chunks=[], env_runner=run, env_index=0, rl_module=module)
    assert np.mean(np.array(chosen[-200:]) == 2.0) > 0.75


def test_seeded_per_runner():
    def arms(seed: int, worker: int) -> list[int]:
        cb, run, module = callbacks(epsilon=1.0), runner(num_envs=1, seed=seed, worker_index=worker), Module()
        out = []
        for _ in range(40):
            ep = Episode([0.0])
            cb.on_episode_start(episode=ep, env_runner=run, env_index=0, rl_module=module)
            out.append(float(module.exploration_temperature[0]))
            cb.on_episode_end(episode=ep, env_runner=run, env_index=0, rl_module=module)
        return out

    assert arms(1, 0) == arms(1, 0)
    assert arms(1, 0) != arms(1, 1) and arms(1, 0) != arms(2, 0)


def test_evaluation_runners_and_a_disabled_bandit_leave_the_module_alone():
    for cb, run in ((callbacks(), runner(in_evaluation=True)),
                    (BanditExplorationCallbacks(), runner())):  # exploration unset
        module = Module()
        cb.on_episode_start(episode=Episode([]), env_runner=run, env_index=0, rl_module=module)
        assert module.exploration_temperature == 1.0


def test_a_module_without_a_temperature_is_a_clear_error():
    with pytest.raises(TypeError, match="exploration_temperature"):
        callbacks().on_episode_start(episode=Episode([]), env_runner=runner(), env_index=0, rl_module=object())


def test_metrics_reach_the_flat_result_through_rllibs_logger():
    """Two iterations' worth on one runner, aggregated as the Algorithm does: the arm fractions
    cover the episode starts, values are the windowed means, all under ``bandit/``."""
    cb, run, module = callbacks(), runner(num_envs=2), Module()
    logger = MetricsLogger()
    for k in range(6):
        ep = Episode([])
        cb.on_episode_start(episode=ep, env_runner=run, env_index=0, rl_module=module, metrics_logger=logger)
        ep.rewards = [float(k)]
        cb.on_episode_end(episode=ep, prev_episode_chunks=[], env_runner=run, env_index=0, rl_module=module,
                          metrics_logger=logger)
    root = MetricsLogger(root=True)
    root.aggregate([logger.reduce()], key="env_runners")
    flat = flatten_result(root.reduce(compile=True))
    fracs = [flat[f"bandit/arm_{i}_frac"] for i in range(3)]
    assert sum(fracs) == pytest.approx(1.0) and min(fracs) > 0
    values = cb._arms.bandit.values()
    for i in range(3):
        assert flat[f"bandit/arm_{i}_value"] == pytest.approx(values[i])
        assert flat[f"bandit/arm_{i}_count"] == cb._arms.bandit.counts()[i]
    assert flat["bandit/temperature"] == pytest.approx(sum(f * t for f, t in zip(fracs, TEMPS, strict=True)))
    assert flat["bandit/greedy_temperature"] == TEMPS[int(np.nanargmax(values))]


def test_make_callbacks_composes_the_bandit_with_the_curriculum():
    curriculum = CurriculumConfig(stages=[{"name": "only"}])
    exploration = ExplorationConfig(bandit=True)
    both = make_callbacks(8760, curriculum=curriculum, exploration=exploration)
    assert issubclass(both, BanditExplorationCallbacks) and issubclass(both, CurriculumCallbacks)
    cb = both()
    assert cb.curriculum is curriculum and cb.exploration is exploration and cb.periods_per_year == 8760
    assert hasattr(cb, "state") and cb._arms is None  # both __init__s ran
    # the bandit's hooks hand on to the trading metrics (TradingCallbacks.on_episode_end)
    assert both.__mro__.index(BanditExplorationCallbacks) < both.__mro__.index(TradingCallbacks)
    only = make_callbacks(252, exploration=exploration)
    assert issubclass(only, BanditExplorationCallbacks) and not issubclass(only, CurriculumCallbacks)
    off = make_callbacks(252, exploration=ExplorationConfig(bandit=False))
    assert not issubclass(off, BanditExplorationCallbacks) and off.__name__ == "RunTradingCallbacks"
