"""Backtests trade every symbol with bars after its observation window, however short compared
with the training episodes; the others are reported as skipped, with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.evaluation.backtest import backtest, eligible_symbols
from app.models import module_spec
from app.runs.env_factory import create_env
from envs import synthetic
from envs.core.market import MarketArrays
from tests.unit.models import small_config

ENV_ID = "raytrade/SyntheticMeanReversion-v0"
WINDOW, EPISODE = 10, 64


def _ragged(lengths: dict[str, int]) -> MarketArrays:
    """Symbols cut from one synthetic series to the given numbers of bars (ending together)."""
    base = synthetic.generate("mean_reversion", seed=0, n_symbols=1, n_bars=200).market
    parts = [slice(200 - n, 200) for n in lengths.values()]
    return MarketArrays(tuple(lengths), np.r_[0, np.cumsum(list(lengths.values()))].astype(np.int64),
                        np.concatenate([base.ts_ns[p] for p in parts]),
                        np.concatenate([base.ohlcv[p] for p in parts]))


@pytest.fixture(scope="module")
def config() -> dict:
    market = _ragged({"LONG": 200, "SHORT": 40, "TINY": 8})
    return {"market": market, "index": None, "window_bars": WINDOW, "episode_bars": EPISODE}


def test_symbols_shorter_than_the_training_episode_are_kept_and_tiny_ones_skipped(config):
    kept, skipped = eligible_symbols(ENV_ID, config)
    assert kept == ["LONG", "SHORT"]  # SHORT (40 bars < 64) used to vanish without a word
    assert list(skipped) == ["TINY"] and "observation window" in skipped["TINY"]


def test_a_short_symbol_is_backtested_over_its_full_range(config):
    env = create_env(ENV_ID, config | {"num_envs": 1, "episode_bars": None})
    torch.manual_seed(0)
    module = module_spec("mlp", small_config("mlp"), observation_space=env.single_observation_space,
                         action_space=env.single_action_space).build()
    env.close()
    module.eval()
    result = backtest(module, ENV_ID, config, with_values=False)
    table = result.to_table().to_pandas()
    assert result.symbols == ["LONG", "SHORT"] and result.skipped.keys() == {"TINY"}
    bars = table.groupby("symbol").size()
    assert bars["SHORT"] == 40 - WINDOW and bars["LONG"] == 200 - WINDOW
