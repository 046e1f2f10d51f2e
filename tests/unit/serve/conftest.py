"""Fixtures of the Serve unit tests: a small synthetic market and random-weight MLP and GRU
policies built for it (helpers in :mod:`tests.unit.serve.helpers`)."""

from __future__ import annotations

from typing import Any

import pytest

from envs import synthetic
from tests.unit.serve.helpers import WINDOW, build_module


@pytest.fixture(scope="session")
def synth() -> synthetic.SyntheticMarket:
    return synthetic.generate("mean_reversion", seed=0, n_symbols=2, n_bars=320)


@pytest.fixture(scope="session")
def env_config(synth) -> dict[str, Any]:
    """The env config a policy was 'trained' with; ``market``/``index`` are the arrays."""
    return {"market": synth.market, "index": synth.index, "window_bars": WINDOW, "episode_bars": 32}


@pytest.fixture(scope="session")
def mlp(env_config):
    return build_module(env_config, "mlp")


@pytest.fixture(scope="session")
def gru(env_config):
    return build_module(env_config, "gru", seed=1)
