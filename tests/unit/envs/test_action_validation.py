"""Actions outside the action space are a ValueError in every env's single and vector faces
(they used to be taken silently: CryptoFutures' -1 opened a full long, StockSwing's 5 held, and
wrong shapes broadcast); actions inside it, in every accepted form, still step."""

from __future__ import annotations

import numpy as np
import pytest

from envs.crypto_futures import CryptoFuturesEnv, CryptoFuturesVectorEnv
from envs.portfolio import PortfolioEnv, PortfolioVectorEnv
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv

SINGLE = {
    "stock buy_only": (lambda: StockSwingEnv(), [0, 1, np.int64(1), np.array(1), True],
                       [2, -1, 5, 1.0, 0.5, np.array([1]), np.array([[0]]), "1", None]),
    "stock swing": (lambda: StockSwingEnv(mode="swing"), [0, 2, np.uint8(2)], [3, -1, np.array([0, 1]), 2.0]),
    "futures discrete": (lambda: CryptoFuturesEnv(), [0, 4, np.int32(2)],
                         [-1, 5, 2.0, np.array([2]), np.array([1, 2])]),
    "futures continuous": (lambda: CryptoFuturesEnv(action_mode="continuous"),
                           [np.array([0.5], np.float32), [1.0], np.array([3.0])],  # beyond +-1: clipped
                           [0.5, np.array([0.1, 0.2]), np.array([[0.5]]), np.array([np.nan])]),
    "portfolio discrete": (lambda: PortfolioEnv(), [np.zeros(4, np.int64), np.full(4, 2)],
                           [np.full(4, 3), np.full(4, -1), np.zeros(3, np.int64), np.zeros(4) + 0.5, 1]),
    "portfolio continuous": (lambda: PortfolioEnv(action_mode="continuous"), [np.zeros(4, np.float32)],
                             [np.zeros(5), np.full(4, np.nan), 0.5]),
}


@pytest.mark.parametrize("name", SINGLE)
def test_single_face_refuses_actions_outside_the_space(name):
    make, good, bad = SINGLE[name]
    env = make()
    env.reset(seed=0)
    for action in good:
        env.step(action)
    for action in bad:
        qty = np.copy(env.engine.qty)
        with pytest.raises(ValueError, match="action"):
            env.step(action)
        np.testing.assert_array_equal(env.engine.qty, qty)  # nothing happened
    env.step(good[0])  # and the env still works


B = 4
VECTOR = {
    "stock": (lambda: StockSwingVectorEnv(B), [np.zeros(B, np.int64), np.ones(B, np.int32)],
              [np.array([0, 1, 2, 0]), np.array([0, -1, 0, 0]), np.zeros(B + 1, np.int64),
               np.zeros((B, 1), np.int64), np.zeros(B) + 0.5, 1]),
    "futures discrete": (lambda: CryptoFuturesVectorEnv(B), [np.full(B, 4)],
                         [np.array([0, 1, -1, 2]), np.full(B, 5), np.zeros((1, B), np.int64), np.zeros(B)]),
    "futures continuous": (lambda: CryptoFuturesVectorEnv(B, action_mode="continuous"),
                           [np.zeros((B, 1), np.float32), np.full((B, 1), 2.0)],
                           [np.zeros(B), np.zeros((1, B)), np.zeros((B, 2)), np.full((B, 1), np.nan)]),
    "portfolio": (lambda: PortfolioVectorEnv(B), [np.ones((B, 4), np.int64)],
                  [np.ones((B, 3), np.int64), np.full((B, 4), 3), np.ones(4, np.int64)]),
}


@pytest.mark.parametrize("name", VECTOR)
def test_vector_face_refuses_actions_outside_the_space(name):
    make, good, bad = VECTOR[name]
    venv = make()
    venv.reset(seed=0)
    for action in good:
        venv.step(action)
    for action in bad:
        with pytest.raises(ValueError, match="action"):
            venv.step(action)
