"""How much is the best trial's score worth? PBO and the deflated Sharpe ratio of a sweep.

Choice of data (documented because the alternatives are tempting): every trial's *selected*
policy (its best checkpoint by the objective) is rolled out once more, greedily, on the
validation split with the evaluation's seed, and its **per-bar simple returns** are kept, per
episode. That gives, for N trials, N return series over the same validation bars, which is
exactly the ``T x N`` matrix CSCV was designed for (Bailey, Borwein, López de Prado & Zhu),
and the per-bar Sharpe ratios the deflated Sharpe ratio needs (Bailey & López de Prado 2014).
The trials' per-iteration metric histories were the other candidate; they were rejected because
a learning curve is not a return series (it trends with training, its points are not bars of
the same market), and the DSR would still need returns.

The rollout is greedy, or seeded sampling when the objective is a ``val_stochastic/*`` metric,
so the returns are those of the evaluation that scored the trial.

* **PBO** (:func:`app.evaluation.stats.pbo_cscv`, per-bar Sharpe, ``S`` blocks): the
  probability that the configuration that is best on a random half of the validation bars is
  below the median on the other half (a median rank counts one half, so skill-less trials
  give 0.5 for any number of trials). Needs >= 2 trials with a checkpoint, the same
  validation episodes for all (so ``env.*`` must not change which bars are traded; checked by
  comparing the validation env configs), and enough bars (``S >= 4`` blocks of >= 4 bars).
  Episodes that end early (liquidation) are padded with zero returns (flat) up to the longest
  trial's length for that episode, so the rows stay aligned.
* **DSR** (:func:`app.evaluation.stats.deflated_sharpe_ratio`): the probability that the best
  trial's true per-bar Sharpe exceeds what the best of ``N`` skill-less trials would show, with
  ``N`` = every trial the sweep ran (stopped ones included: they were tried) and the variance
  of the per-bar Sharpes of the trials that have a policy. Needs >= 2 such trials and a best
  policy whose validation returns vary.

Both are computed on the validation split the selection used; they measure selection bias, not
generalization to the test split (that is the backtest's job).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.evaluation.stats import deflated_sharpe_ratio, pbo_cscv

MAX_BLOCKS = 16
MIN_BLOCKS = 4
MIN_ROWS_PER_BLOCK = 4


@dataclass(frozen=True)
class TrialReturns:
    """One trial's selected policy on the validation split: returns per episode."""

    trial_id: str
    episodes: list[np.ndarray]
    env_config_key: str

    @property
    def flat(self) -> np.ndarray:
        return np.concatenate(self.episodes) if self.episodes else np.zeros(0)

    @property
    def sharpe_per_bar(self) -> float:
        r = self.flat
        sd = float(np.std(r, ddof=1)) if len(r) > 1 else 0.0
        return float(np.mean(r) / sd) if sd > 0 else math.nan


@dataclass(frozen=True)
class Statistic:
    """A value, or ``None`` with the reason it could not be computed."""

    value: float | None
    reason: str = ""
    details: dict[str, float] | None = None

    def text(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f}" if self.value is not None else f"n/a ({self.reason})"


def validation_returns(trial_id: str, exp_raw: dict[str, Any], checkpoint: Any, greedy: bool = True) -> TrialReturns:
    """Roll a trial's checkpointed policy over its validation episodes exactly as the
    evaluation during training did (one episode per env, the evaluation's seed; greedy, or
    seeded sampling for a ``val_stochastic/*`` objective). Runs as a Ray task."""
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    from app.config.loader import parse_experiment
    from app.evaluation.metrics import simple_returns
    from app.evaluation.rollout import rollout
    from app.policy.batched import BatchedPolicy
    from app.runs.data import resolve_run_data
    from app.runs.env_factory import create_env
    from app.tuning.trainable import policy_dir

    torch.set_num_threads(1)
    exp = parse_experiment(exp_raw, where=f"trial {trial_id}")
    env_config = resolve_run_data(exp).validation_env_config
    n = exp.evaluation.episodes
    with checkpoint.as_directory() as ckpt:
        module = RLModule.from_checkpoint(str(policy_dir(Path(ckpt))))
    env = create_env(exp.env.id, env_config | {"num_envs": n, "vector_info": True})
    try:
        seed = exp.seed + 10_000  # as app.training.session.TrainingSession.evaluate
        traces = rollout(env, BatchedPolicy(module, env.single_action_space, n, greedy=greedy, seed=seed), seed=seed)
    finally:
        env.close()
    episodes = [simple_returns(np.asarray(t.equity_usd)) for t in traces]
    return TrialReturns(trial_id, episodes, json.dumps(env_config, sort_keys=True, default=str))


def aligned_matrix(trials: Sequence[TrialReturns]) -> np.ndarray:
    """``T x N``: episode by episode, each padded with zeros to the longest trial's length."""
    n_episodes = len(trials[0].episodes)
    lengths = [max(len(t.episodes[e]) for t in trials) for e in range(n_episodes)]
    columns = []
    for t in trials:
        columns.append(np.concatenate([np.pad(t.episodes[e], (0, lengths[e] - len(t.episodes[e])))
                                       for e in range(n_episodes)]))
    return np.stack(columns, axis=1)


def n_blocks_for(rows: int) -> int:
    """The most even blocks up to 16 with at least 4 bars each (0 if fewer than 4 fit)."""
    s = min(MAX_BLOCKS, rows // MIN_ROWS_PER_BLOCK)
    s -= s % 2
    return s if s >= MIN_BLOCKS else 0


def pbo(trials: Sequence[TrialReturns]) -> Statistic:
    if len(trials) < 2:
        return Statistic(None, f"needs >= 2 trials with a checkpoint, got {len(trials)}")
    if len({t.env_config_key for t in trials}) > 1:
        return Statistic(None, "trials validate on different env configs (the search space changes env.*), "
                               "so their returns are not over the same bars")
    if len({len(t.episodes) for t in trials}) > 1:
        return Statistic(None, "trials have different numbers of validation episodes")
    perf = aligned_matrix(trials)
    if np.allclose(perf, perf[:, :1]):
        return Statistic(None, "all trials' validation returns are identical (nothing to select between)")
    s = n_blocks_for(perf.shape[0])
    if not s:
        return Statistic(None, f"{perf.shape[0]} validation bars are too few for {MIN_BLOCKS} blocks "
                               f"of {MIN_ROWS_PER_BLOCK} bars")
    result = pbo_cscv(perf, n_blocks=s, metric="sharpe")
    return Statistic(result.pbo, details={"n_splits": result.n_splits, "n_blocks": s, "bars": perf.shape[0],
                                          "trials": perf.shape[1], "prob_oos_loss": result.prob_oos_loss})


def dsr(best: TrialReturns | None, trials: Sequence[TrialReturns], n_trials: int) -> Statistic:
    if best is None:
        return Statistic(None, "no best policy to evaluate")
    sharpes = np.array([t.sharpe_per_bar for t in trials])
    sharpes = sharpes[np.isfinite(sharpes)]
    if trials and not len(sharpes):
        return Statistic(None, "no trial's validation returns vary (the policies never trade)")
    if len(sharpes) < 2:
        return Statistic(None, f"needs the Sharpe of >= 2 trials to estimate their variance, got {len(sharpes)}")
    if not math.isfinite(best.sharpe_per_bar):
        return Statistic(None, "the best policy's validation returns do not vary (it never trades)")
    result = deflated_sharpe_ratio(best.flat, trial_sharpes=sharpes, n_trials=max(n_trials, len(sharpes)))
    if not math.isfinite(result.dsr):
        return Statistic(None, "the returns' moments give no finite PSR (too few bars or extreme kurtosis)")
    return Statistic(result.dsr, details={"sharpe_per_bar": result.sharpe_per_bar, "sr0": result.sr0,
                                          "n_trials": result.n_trials, "sr_variance": result.sr_variance,
                                          "bars": result.n_obs})


def sweep_statistics(returns: Mapping[str, TrialReturns], best_id: str | None, n_trials: int
                     ) -> dict[str, Statistic]:
    trials = list(returns.values())
    return {"pbo": pbo(trials), "dsr": dsr(returns.get(best_id) if best_id else None, trials, n_trials)}


def collect_returns(jobs: Sequence[tuple[str, dict[str, Any], Any]], greedy: bool = True) -> dict[str, TrialReturns]:
    """:func:`validation_returns` for every ``(trial_id, experiment, checkpoint)``, as parallel
    Ray tasks of one CPU each (hundreds of trials on a cluster, two here)."""
    import ray

    task = ray.remote(num_cpus=1)(validation_returns)
    refs = [task.remote(trial_id, exp_raw, ckpt, greedy) for trial_id, exp_raw, ckpt in jobs]
    return {r.trial_id: r for r in ray.get(refs)}
