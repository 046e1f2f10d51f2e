"""Decision-level advantages for PPO: forced steps are not decisions.

In StockSwing's buy_only mode a buy is held for ``horizon_bars`` bars during which the action is
ignored; the env's ``action_mask`` then allows a single action. Such a step is not a decision:
masking already gives it a one-action distribution (log-prob 0, no policy gradient), but
RLlib's GAE still (1) bootstraps the buy's advantage from the value estimates *during* the hold,
which must recognise a 1..20-bar-old pattern to be right, and (2) standardizes advantages over
all steps, so a handful of real decisions are scaled by statistics of the forced ones.

:func:`decision_value_targets` is GAE with a state-dependent lambda (Sutton & Barto, ch. 12.8):
``lambda_{t+1} = 1`` when step ``t+1`` is forced, so the return of a decision runs through the
hold's rewards (the realised PnL, discounted per bar) and mixes with the value estimate only at
the next decision. It is the semi-MDP (options) return of the decision, computed on the per-bar
data RLlib collected: the env contract, backtests and Serve are unchanged (a GRU still sees every
bar). Advantages are standardized over the decision steps only, and 0 on forced steps.
Without an ``action_mask`` (or with every step a decision) this is exactly RLlib's GAE.

With ``env.skip_forced_steps`` the env itself advances through forced holds, so a step spans
``τ`` bars (``bar_row`` infos): its discount is ``γ^τ`` (:func:`step_discounts`), the semi-MDP
discount, so ``gamma`` keeps meaning "per bar" whether or not holds are skipped.

:class:`DecisionPPOTorchLearner` is PPO's torch learner with this connector in place of
``GeneralAdvantageEstimation`` (``algorithm.decision_gae``, :func:`app.training.algo.build_algorithm_config`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.numpy import convert_to_numpy
from ray.rllib.utils.postprocessing.zero_padding import (
    split_and_zero_pad_n_episodes,
    unpad_data_if_necessary,
)

from app.training.learner import TradingPPOTorchLearner
from envs.core.observation import ACTION_MASK_KEY


def decision_steps(action_mask: np.ndarray | None, n_steps: int) -> np.ndarray:
    """Bool ``[T]``: the steps where more than one action is allowed (all, without a mask)."""
    if action_mask is None:
        return np.ones(n_steps, dtype=bool)
    mask = np.asarray(action_mask).reshape(n_steps, -1)
    return (mask > 0).sum(axis=1) > 1


def decision_value_targets(values: np.ndarray, rewards: np.ndarray, terminateds: np.ndarray,
                           truncateds: np.ndarray, decisions: np.ndarray, gamma: float | np.ndarray,
                           lambda_: float) -> np.ndarray:
    """λ-return targets with ``λ = 1`` into forced steps (see the module docstring).

    Same conventions as RLlib's ``compute_value_targets`` (one concatenated sequence; a
    terminated step does not bootstrap, a truncated step bootstraps from ``V(s_{t+1})`` but the
    recursion does not cross it). ``advantage_t = δ_t + γ_t λ_{t+1} [not done_t] advantage_{t+1}``.
    ``gamma`` may be per step (``[T]``): ``γ^τ`` for a step that spans ``τ`` bars
    (:func:`step_discounts`).
    """
    values = np.asarray(values, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    non_terminal = 1.0 - np.asarray(terminateds, dtype=np.float64)
    propagate = non_terminal * (1.0 - np.asarray(truncateds, dtype=np.float64))
    next_values = np.append(values[1:], 0.0)
    deltas = rewards + gamma * non_terminal * next_values - values
    next_lambda = np.append(np.where(np.asarray(decisions[1:], dtype=bool), lambda_, 1.0), lambda_)
    carry = gamma * next_lambda * propagate
    advantages = np.zeros_like(deltas)
    running = 0.0
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + carry[t] * running
        advantages[t] = running
    return (advantages + values).astype(np.float32)


def step_discounts(bar_rows: list[Any] | None, n_steps: int, gamma: float) -> np.ndarray:
    """Per-step discount ``γ^τ`` ``[T]``, ``τ`` the bars a step spans (the ``bar_row`` infos at
    its observation and at the next one): a step of an env that skips forced holds
    (``env.skip_forced_steps``) spans a whole hold, so a buy's hold is discounted like the bars
    it covers, not like one step (else holding looks cheaper than waiting, and the agent buys to
    pass time). Without ``bar_row`` infos, or where rows do not advance, ``τ = 1``."""
    tau = np.ones(n_steps)
    if bar_rows is not None and len(bar_rows) >= 2:
        rows = np.asarray([np.nan if r is None else r for r in bar_rows], dtype=np.float64)
        steps = np.diff(rows)[:n_steps]
        ok = np.isfinite(steps) & (steps >= 1)
        tau[:len(steps)][ok] = steps[ok]
    return gamma ** tau


def _episode_bar_rows(episode: Any) -> list[Any] | None:
    """The ``bar_row`` info at each observation of ``episode`` (None if the env reports none)."""
    try:
        infos = episode.get_infos(slice(0, len(episode) + 1))
    except (IndexError, KeyError, ValueError, AttributeError):
        return None
    rows = [info.get("bar_row") if isinstance(info, dict) else None for info in infos]
    return rows if any(r is not None for r in rows) else None


def standardize_decisions(advantages: np.ndarray, decisions: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Advantages standardized with the mean/std of the valid decision steps; 0 elsewhere."""
    use = decisions & valid
    if not use.any():
        return np.zeros_like(advantages, dtype=np.float32)
    mean, std = advantages[use].mean(), advantages[use].std()
    return np.where(decisions, (advantages - mean) / max(1e-4, std), 0.0).astype(np.float32)


def _episode_decisions(episode: Any) -> np.ndarray:
    n = len(episode)
    obs = episode.get_observations(slice(0, n))
    mask = obs.get(ACTION_MASK_KEY) if isinstance(obs, dict) else None
    return decision_steps(mask, n)


class DecisionAdvantageEstimation(GeneralAdvantageEstimation):
    """RLlib's GAE learner connector with decision-level advantages (module docstring);
    ``reward_scale`` multiplies the rewards of the value targets (the value head's units)."""

    def __init__(self, *args: Any, reward_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reward_scale = float(reward_scale)

    def __call__(self, *, rl_module: Any, episodes: list, batch: dict[str, Any], **kwargs: Any):
        sa_episodes = list(self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False))
        vf_preds = rl_module.foreach_module(
            func=lambda mid, module: (module.compute_values(batch[mid])
                                      if mid in batch and isinstance(module, ValueFunctionAPI) else None),
            return_dict=True,
        )
        device = None
        for module_id, preds in vf_preds.items():
            if preds is None:
                continue
            module = rl_module[module_id]
            device = preds.device
            mine = [e for e in sa_episodes if e.module_id in (None, module_id)]
            lens = [len(e) for e in mine]
            column = batch[module_id]
            targets, advantages = self._module_targets(
                unpad_data_if_necessary(lens, convert_to_numpy(preds)),
                {k: unpad_data_if_necessary(lens, convert_to_numpy(column[k]))
                 for k in (Columns.REWARDS, Columns.TERMINATEDS, Columns.TRUNCATEDS)},
                mine, lens)
            if module.is_stateful():
                seq = module.model_config["max_seq_len"]
                advantages = np.stack(split_and_zero_pad_n_episodes(advantages, episode_lens=lens, max_seq_len=seq), 0)
                targets = np.stack(split_and_zero_pad_n_episodes(targets, episode_lens=lens, max_seq_len=seq), 0)
            column[Postprocessing.ADVANTAGES] = advantages
            column[Postprocessing.VALUE_TARGETS] = targets
        return self._to_tensors(rl_module, episodes, batch, vf_preds, device)

    def _module_targets(self, values: np.ndarray, data: dict[str, np.ndarray], episodes: list,
                        lens: list[int]) -> tuple[np.ndarray, np.ndarray]:
        decisions = np.concatenate([_episode_decisions(e) for e in episodes]) if episodes \
            else np.zeros(0, dtype=bool)
        gammas = np.concatenate([step_discounts(_episode_bar_rows(e), n, self.gamma)
                                 for e, n in zip(episodes, lens, strict=True)]) if episodes else self.gamma
        targets = decision_value_targets(values, self.reward_scale * data[Columns.REWARDS], data[Columns.TERMINATEDS],
                                         data[Columns.TRUNCATEDS], decisions, gammas, self.lambda_)
        valid = np.ones(len(values), dtype=bool)
        valid[np.cumsum(lens) - 1] = False  # the artificial last step of every episode chunk
        return targets, standardize_decisions(targets - values, decisions, valid)

    def _to_tensors(self, rl_module: Any, episodes: list, batch: dict[str, Any], vf_preds: dict,
                    device: Any) -> dict[str, Any]:
        from ray.rllib.connectors.common.numpy_to_tensor import NumpyToTensor

        if self._numpy_to_tensor_connector is None:
            self._numpy_to_tensor_connector = NumpyToTensor(as_learner_connector=True, device=device)
        keys = (Postprocessing.ADVANTAGES, Postprocessing.VALUE_TARGETS)
        tensors = self._numpy_to_tensor_connector(
            rl_module=rl_module,
            batch={mid: {k: b[k] for k in keys} for mid, b in batch.items() if vf_preds.get(mid) is not None},
            episodes=episodes)
        for mid, module_batch in tensors.items():
            batch[mid].update(module_batch)
        return batch


class DecisionPPOTorchLearner(TradingPPOTorchLearner):
    """PPO (torch) whose learner pipeline uses :class:`DecisionAdvantageEstimation` (on top of
    :class:`~app.training.learner.TradingPPOTorchLearner`'s cheaper gradient step)."""

    def build(self) -> None:
        super().build()
        pipeline = self._learner_connector
        if pipeline is not None and self.config.add_default_connectors_to_learner_pipeline:
            pipeline.remove(GeneralAdvantageEstimation)
            scale = float(self.config.learner_config_dict.get("reward_scale", 1.0))
            pipeline.append(DecisionAdvantageEstimation(gamma=self.config.gamma, lambda_=self.config.lambda_,
                                                        reward_scale=scale))
