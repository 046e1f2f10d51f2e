"""Prioritized episode replay with the importance-sampling exponent beta annealed over the run.

RLlib 2.60 cannot anneal beta natively: ``DQN.training_step`` passes the constant
``replay_buffer_config["beta"]`` to every ``sample()`` call (the config is frozen once the
algorithm is built). This small subclass of RLlib's ``PrioritizedEpisodeReplayBuffer`` ignores
that argument and samples with :func:`annealed_beta` of its env-step clock instead (Schaul et
al. 2016: beta grows linearly to 1, full correction, by the end of training).

The clock: env steps added to the buffer (every sampled step is added), re-based on the
algorithm's own lifetime env-step counter after every iteration (:func:`sync_replay_clock`,
an ``on_train_result`` callback), so a resumed run, whose buffer starts empty, continues the
schedule where the checkpoint left it instead of starting over at ``beta``.

RLlib builds the buffer from ``replay_buffer_config`` with ``type`` as a dotted class path
(:data:`BUFFER_TYPE`): it must be a string containing ``EpisodeReplayBuffer`` (RLlib tests the
type's name with ``in``), and every other key is a constructor argument.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.rllib.utils.replay_buffers.prioritized_episode_buffer import PrioritizedEpisodeReplayBuffer

BUFFER_TYPE = "app.training.dqn_replay.AnnealedPrioritizedEpisodeReplayBuffer"


def annealed_beta(env_steps: int, start: float, final: float, anneal_steps: int) -> float:
    """``start`` at 0 env steps, linear to ``final`` at ``anneal_steps``, ``final`` after."""
    if anneal_steps <= 0:
        return final
    frac = min(max(env_steps / anneal_steps, 0.0), 1.0)
    return start + frac * (final - start)


class AnnealedPrioritizedEpisodeReplayBuffer(PrioritizedEpisodeReplayBuffer):
    """``PrioritizedEpisodeReplayBuffer`` whose ``sample()`` uses the annealed beta.

    Args:
        beta: beta at env step 0 (``replay_buffer_config["beta"]``, which RLlib also passes to
            ``sample()``; that argument is ignored).
        beta_final: beta from ``beta_anneal_steps`` on.
        beta_anneal_steps: env steps over which beta grows linearly.
        capacity, alpha, **kwargs: as ``PrioritizedEpisodeReplayBuffer``.
    """

    def __init__(self, capacity: int = 10_000, *, beta: float = 0.4, beta_final: float = 1.0,
                 beta_anneal_steps: int = 1, **kwargs: Any) -> None:
        super().__init__(capacity=capacity, **kwargs)
        if not 0.0 <= beta <= beta_final <= 1.0:
            raise ValueError(f"need 0 <= beta ({beta}) <= beta_final ({beta_final}) <= 1")
        self.beta_start, self.beta_final = float(beta), float(beta_final)
        self.beta_anneal_steps = int(beta_anneal_steps)
        self._clock_base = 0
        self._added_at_base = 0

    @property
    def env_steps(self) -> int:
        """The schedule's clock: the last synced env-step count plus the steps added since."""
        return self._clock_base + (self.get_added_timesteps() - self._added_at_base)

    def sync_env_steps(self, env_steps: int) -> None:
        """Re-base the clock on the algorithm's lifetime env steps."""
        self._clock_base, self._added_at_base = int(env_steps), self.get_added_timesteps()

    @property
    def beta(self) -> float:
        return annealed_beta(self.env_steps, self.beta_start, self.beta_final, self.beta_anneal_steps)

    def sample(self, num_items: int | None = None, *, beta: float = 0.0, **kwargs: Any) -> Any:
        """Prioritized samples with importance weights ``(N * P(i)) ** -beta`` (normalized by
        their maximum), ``beta`` from the schedule; the ``beta`` argument is ignored."""
        current = self.beta
        self.metrics.log_value("beta", current, window=1)
        return super().sample(num_items, beta=current, **kwargs)

    def get_state(self) -> dict[str, Any]:
        return super().get_state() | {"_clock_base": self._clock_base, "_added_at_base": self._added_at_base}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._clock_base = int(state.get("_clock_base", 0))
        self._added_at_base = int(state.get("_added_at_base", 0))


def sync_replay_clock(*, algorithm: Any, result: dict[str, Any] | None = None, **_: Any) -> None:
    """``on_train_result`` callback: re-base the buffer's clock on the algorithm's lifetime env
    steps (no-op for other buffers)."""
    buffer = getattr(algorithm, "local_replay_buffer", None)
    if not isinstance(buffer, AnnealedPrioritizedEpisodeReplayBuffer):
        return
    steps = (result or {}).get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED_LIFETIME)
    if steps is None:
        steps = algorithm.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=None)
    if steps is not None:
        buffer.sync_env_steps(int(steps))
