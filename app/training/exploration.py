"""Agent57-style exploration meta-controller: a bandit picks each episode's sampling temperature.

Agent57 (Badia et al. 2020) runs, in every actor, a non-stationary bandit over a family of
exploration settings; an arm is chosen when an episode starts and rewarded with the episode's
extrinsic return (:mod:`app.training.bandit`). Here the family is the temperature ``T`` of the
policy's sampling distribution during exploration (``exploration.temperatures``, e.g.
``[0.5, 1.0, 1.5, 2.0]``: ``pi^(1/T)``, see :mod:`app.models.common`), the knob an env runner
controls for PPO.

Granularity: **per episode and per sub-env**. An env runner steps its ``num_envs`` sub-envs with
ONE batched forward pass, but the temperature is applied after that pass, row by row: the
module's ``exploration_temperature`` is a tensor ``[num_envs]`` and row ``i`` of the batch is
sub-env ``i`` (RLlib's single-agent runner builds the batch in sub-env order, every step, for
all sub-envs). So each sub-env's episode gets its own arm:

* ``on_episode_start(env_index)`` (after the reset observation, before the first action of the
  episode is computed): the runner's bandit selects an arm; ``temperature[env_index]`` is set;
* ``on_episode_end(env_index)``: the episode's return (all its chunks: ``prev_episode_chunks``
  plus the last one) rewards that arm.

Episodes abandoned by a forced reset (no ``on_episode_end``) reward nothing. One bandit per env
runner, as in Agent57 (one per actor), seeded from the run's seed and the runner's index.
Evaluation runners (``in_evaluation``) are left alone; inference (backtests, Serve, validation)
never tempers. The bandit's state is not checkpointed: a resumed run, or a recreated runner,
starts a fresh bandit (the window refills within ``window`` episodes).

Metrics (env-runner metrics, so ``env_runners/bandit/...`` in RLlib's result; flattened to
``bandit/...`` by :func:`app.training.results.flatten_result`, hence in MLflow):

* ``bandit/arm_<i>_frac``: fraction of this iteration's episodes started with arm ``i``;
* ``bandit/temperature``: mean temperature of this iteration's episode starts;
* ``bandit/arm_<i>_value``, ``bandit/arm_<i>_count``: the bandit's windowed mean return (the
  return's own units) and outcome count of arm ``i`` (latest, averaged over runners);
* ``bandit/greedy_temperature``: the temperature of the arm with the best windowed mean.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.config.schema import ExplorationConfig
from app.training.bandit import SlidingWindowUCB
from app.training.callbacks import TradingCallbacks

log = logging.getLogger("raytrade.exploration")

PREFIX = "bandit"
#: per-iteration fractions: at most this many episode starts are averaged (a deque per key)
START_WINDOW = 10_000


class EpisodeArms:
    """One env runner's bandit and which arm each sub-env's current episode plays (no Ray).

    ``start(env_index, episode_id)`` picks the arm of a new episode; ``end(env_index,
    episode_id, ret)`` rewards it (ignored if that sub-env is playing another episode: it was
    abandoned by a reset). :attr:`temperatures` holds the current temperature of every sub-env.
    """

    def __init__(self, config: ExplorationConfig, num_envs: int, seed: Any) -> None:
        self.arms = [float(t) for t in config.temperatures]
        self.bandit = SlidingWindowUCB(len(self.arms), config.window, config.ucb_c, seed,
                                       epsilon=config.epsilon, normalize=config.normalize)
        self.temperatures = np.ones(num_envs, dtype=np.float32)
        self._playing: list[tuple[Any, int] | None] = [None] * num_envs

    def start(self, env_index: int, episode_id: Any) -> int:
        arm = self.bandit.select()
        self._playing[env_index] = (episode_id, arm)
        self.temperatures[env_index] = self.arms[arm]
        return arm

    def end(self, env_index: int, episode_id: Any, episode_return: float) -> int | None:
        """The arm rewarded with ``episode_return`` (None: unknown episode or non-finite return)."""
        playing = self._playing[env_index]
        if playing is None or playing[0] != episode_id:
            return None
        self._playing[env_index] = None
        if not math.isfinite(episode_return):
            return None
        self.bandit.update(playing[1], episode_return)
        return playing[1]

    def metrics(self) -> dict[str, float]:
        """The bandit's beliefs (see the module docstring), finite values only."""
        out: dict[str, float] = {}
        for i, (value, count) in enumerate(zip(self.bandit.values(), self.bandit.counts(), strict=True)):
            out[f"{PREFIX}/arm_{i}_count"] = float(count)
            if np.isfinite(value):
                out[f"{PREFIX}/arm_{i}_value"] = float(value)
        greedy = self.bandit.greedy_arm()
        if greedy is not None:
            out[f"{PREFIX}/greedy_temperature"] = self.arms[greedy]
        return out


def episode_return(episode: Any, prev_episode_chunks: Sequence[Any] | None) -> float:
    """Undiscounted return of the whole episode (earlier chunks + the last one), as RLlib's
    ``episode_return_mean`` counts it."""
    return float(episode.get_return()) + sum(float(c.get_return()) for c in prev_episode_chunks or ())


def runner_seed(env_runner: Any) -> np.random.SeedSequence:
    """Run seed and runner index: runners explore independently, reproducibly."""
    seed = getattr(env_runner.config, "seed", None)
    return np.random.SeedSequence([int(seed or 0), int(getattr(env_runner, "worker_index", 0) or 0)])


class BanditExplorationCallbacks(TradingCallbacks):
    """Trading metrics plus the bandit of :attr:`exploration` (see the module docstring).

    Composed with the curriculum by :func:`app.training.curriculum.make_callbacks` (a mixin:
    every hook calls ``super()``)."""

    #: set by :func:`app.training.curriculum.make_callbacks`
    exploration: ExplorationConfig | None = None

    def __init__(self) -> None:
        super().__init__()
        self._arms: EpisodeArms | None = None
        self._temps: Any = None  # the torch tensor shared with the module

    # --- helpers --------------------------------------------------------------------------
    def _runner_arms(self, env_runner: Any, rl_module: Any) -> EpisodeArms | None:
        """This runner's bandit (created on first use); None where the bandit does not run."""
        if self.exploration is None or not self.exploration.bandit or env_runner is None:
            return None
        if getattr(env_runner.config, "in_evaluation", False) or rl_module is None:
            return None
        if self._arms is None:
            if not hasattr(rl_module, "exploration_temperature"):
                raise TypeError(f"exploration.bandit: the RLModule {type(rl_module).__name__} has no "
                                "exploration_temperature (only the PPO/APPO TradingRLModules do)")
            import torch

            self._arms = EpisodeArms(self.exploration, int(env_runner.num_envs), runner_seed(env_runner))
            self._temps = torch.from_numpy(self._arms.temperatures)  # shares memory
            log.info("exploration bandit on env runner %s: temperatures %s",
                     getattr(env_runner, "worker_index", 0), self._arms.arms)
        if rl_module.exploration_temperature is not self._temps:
            rl_module.exploration_temperature = self._temps
        return self._arms

    # --- RLlib hooks ----------------------------------------------------------------------
    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        """Fail at build time, not in a runner, if the module cannot be tempered (e.g. DQN's)."""
        super().on_algorithm_init(algorithm=algorithm, **kwargs)
        if self.exploration is None or not self.exploration.bandit:
            return
        module = algorithm.get_module()
        if module is not None and not hasattr(module, "exploration_temperature"):
            raise ValueError(f"exploration.bandit needs a module with a sampling temperature (PPO/APPO); "
                             f"{type(module).__name__} has none")

    def on_episode_start(self, *, episode: Any, env_runner: Any = None, metrics_logger: Any = None,
                         env_index: int = 0, rl_module: Any = None, **kwargs: Any) -> None:
        super().on_episode_start(episode=episode, env_runner=env_runner, metrics_logger=metrics_logger,
                                 env_index=env_index, rl_module=rl_module, **kwargs)
        arms = self._runner_arms(env_runner, rl_module)
        if arms is None:
            return
        arm = arms.start(env_index, episode.id_)
        if metrics_logger is not None:
            for i in range(len(arms.arms)):
                metrics_logger.log_value(f"{PREFIX}/arm_{i}_frac", float(arm == i), reduce="mean",
                                         window=START_WINDOW)
            metrics_logger.log_value(f"{PREFIX}/temperature", arms.arms[arm], reduce="mean", window=START_WINDOW)

    def on_episode_end(self, *, episode: Any, prev_episode_chunks: list | None = None,
                       metrics_logger: Any = None, env_runner: Any = None, env_index: int = 0,
                       rl_module: Any = None, **kwargs: Any) -> None:
        super().on_episode_end(episode=episode, prev_episode_chunks=prev_episode_chunks,
                               metrics_logger=metrics_logger, env_runner=env_runner, env_index=env_index,
                               rl_module=rl_module, **kwargs)
        arms = self._runner_arms(env_runner, rl_module)
        if arms is None:
            return
        if arms.end(env_index, episode.id_, episode_return(episode, prev_episode_chunks)) is None:
            return
        if metrics_logger is not None:
            for key, value in arms.metrics().items():
                metrics_logger.log_value(key, value, reduce="mean", window=1)
