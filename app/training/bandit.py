"""Agent57's meta-controller: a sliding-window UCB bandit with epsilon-greedy on top.

Badia et al. (2020), "Agent57: Outperforming the Atari Human Benchmark", section 4 and
appendix: each actor runs its own non-stationary multi-armed bandit over a family of
exploration settings; an arm is pulled at the start of an episode and rewarded with that
episode's undiscounted extrinsic return. The bandit is the sliding-window UCB of Garivier &
Moulines (2008, "On Upper-Confidence Bound Policies for Non-Stationary Bandit Problems") with
epsilon-greedy exploration added:

* arms never pulled yet are pulled first (in index order);
* otherwise, with probability ``epsilon`` an arm uniformly at random;
* otherwise ``argmax_a  mean_a + c * sqrt(log(min(t, window)) / n_a)``, where ``mean_a`` and
  ``n_a`` are arm ``a``'s mean reward and count over the last ``window`` outcomes (of all
  arms), ``t`` the number of outcomes so far; an arm absent from the window has an infinite
  bonus (it is pulled again), and ties are broken at random.

Agent57's settings are ``window`` (tau) = 160, ``c`` (beta) = 1 and ``epsilon`` = 0.5 (the
paper's hyperparameter table; also the defaults of public re-implementations such as Deep RL
Zoo's). With raw Atari scores a bonus of 1 is small; trading returns are ~0.01-0.3, where the
same bonus would swamp every difference. ``normalize=True`` therefore divides the rewards by
the standard deviation of all rewards in the window (a shift changes no argmax), so ``c`` is in
units of the return's spread whatever its scale; ``normalize=False`` is the paper's formula.

Pure python/numpy: no Ray, no torch (the RLlib glue is :mod:`app.training.exploration`).
Randomness comes from the seed only, so the same seed and outcomes give the same choices.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

#: Agent57's bandit settings (window tau, UCB beta, epsilon_UCB)
AGENT57_WINDOW = 160
AGENT57_C = 1.0
AGENT57_EPSILON = 0.5


class SlidingWindowUCB:
    """Sliding-window UCB over ``n_arms`` arms, epsilon-greedy on top (see the module docstring).

    ``select()`` and ``update()`` need not alternate: in a vectorized env runner several
    episodes (one per sub-env) are in flight at once, so several arms are selected before their
    rewards arrive. The window holds the last ``window`` *outcomes* (updates).
    """

    def __init__(self, n_arms: int, window: int = AGENT57_WINDOW, c: float = AGENT57_C,
                 seed: int | np.random.SeedSequence | None = 0, *, epsilon: float = AGENT57_EPSILON,
                 normalize: bool = True) -> None:
        if n_arms < 1:
            raise ValueError(f"n_arms must be >= 1, got {n_arms}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not (c >= 0 and math.isfinite(c)):
            raise ValueError(f"c must be a finite number >= 0, got {c}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.n_arms = int(n_arms)
        self.window = int(window)
        self.c = float(c)
        self.epsilon = float(epsilon)
        self.normalize = bool(normalize)
        self._rng = np.random.default_rng(seed)
        self._outcomes: deque[tuple[int, float]] = deque(maxlen=self.window)
        self._pulled = np.zeros(self.n_arms, dtype=bool)
        #: outcomes so far (all time)
        self.t = 0

    # -- the two operations ----------------------------------------------------------------

    def select(self) -> int:
        """The arm to pull next."""
        never = np.flatnonzero(~self._pulled)
        if never.size:
            arm = int(never[0])
        elif self._rng.random() < self.epsilon:
            arm = int(self._rng.integers(self.n_arms))
        else:
            scores = self.scores()
            best = np.flatnonzero(scores == scores.max())
            arm = int(best[0] if best.size == 1 else self._rng.choice(best))
        self._pulled[arm] = True
        return arm

    def update(self, arm: int, reward: float) -> None:
        """Record the outcome ``reward`` of pulling ``arm`` (a non-finite reward is refused)."""
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"arm {arm} out of range [0, {self.n_arms})")
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        self._pulled[arm] = True
        self._outcomes.append((int(arm), reward))
        self.t += 1

    # -- what it believes ------------------------------------------------------------------

    def counts(self) -> np.ndarray:
        """Outcomes of each arm in the window (int ``[n_arms]``)."""
        counts = np.zeros(self.n_arms, dtype=np.int64)
        for arm, _ in self._outcomes:
            counts[arm] += 1
        return counts

    def values(self) -> np.ndarray:
        """Mean reward of each arm over the window, in the rewards' own units (NaN: no outcome
        in the window)."""
        sums = np.zeros(self.n_arms)
        for arm, reward in self._outcomes:
            sums[arm] += reward
        counts = self.counts()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def scores(self) -> np.ndarray:
        """The UCB index of each arm (``+inf`` for an arm absent from the window)."""
        counts = self.counts()
        values = self.values()
        if self.normalize and len(self._outcomes) > 1:
            spread = float(np.std([r for _, r in self._outcomes]))
            if spread > 0:
                values = values / spread
        log_t = math.log(max(min(self.t, self.window), 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            bonus = self.c * np.sqrt(log_t / counts)
        return np.where(counts > 0, values + bonus, np.inf)

    def greedy_arm(self) -> int | None:
        """The arm with the best windowed mean (None before any outcome)."""
        values = self.values()
        return None if np.isnan(values).all() else int(np.nanargmax(values))
