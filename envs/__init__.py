"""raytrade trading envs: pure numpy + gymnasium, no files, no app imports.

Importing this package only registers the env ids (entry points are strings, nothing heavy is
imported). ``gym.make(id)`` works with no arguments (on a synthetic market);
``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")`` gives the native
vector face. For RLlib, :func:`make_creator` returns the ``env_config -> env`` callable it expects
(a VectorEnv when ``env_config`` has ``num_envs``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gymnasium.envs.registration import load_env_creator, register, registry
from gymnasium.envs.registration import spec as env_spec

STOCK_SWING = "raytrade/StockSwing-v0"
CRYPTO_FUTURES = "raytrade/CryptoFutures-v0"
PORTFOLIO = "raytrade/Portfolio-v0"
SYNTHETIC_IDS = {
    "raytrade/SyntheticGBM-v0": "gbm",
    "raytrade/SyntheticMeanReversion-v0": "mean_reversion",
    "raytrade/SyntheticTrend-v0": "trend",
}
ENV_IDS = (STOCK_SWING, *SYNTHETIC_IDS, PORTFOLIO, CRYPTO_FUTURES)


def _register() -> None:
    single, vector = "envs.stock_swing:StockSwingEnv", "envs.stock_swing:StockSwingVectorEnv"
    if STOCK_SWING not in registry:
        register(id=STOCK_SWING, entry_point=single, vector_entry_point=vector)
    for env_id, kind in SYNTHETIC_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=single, vector_entry_point=vector,
                     kwargs={"synthetic": kind, "mode": "swing", "reward": "log_return"})
    if CRYPTO_FUTURES not in registry:
        register(id=CRYPTO_FUTURES, entry_point="envs.crypto_futures:CryptoFuturesEnv",
                 vector_entry_point="envs.crypto_futures:CryptoFuturesVectorEnv")
    if PORTFOLIO not in registry:
        register(id=PORTFOLIO, entry_point="envs.portfolio:PortfolioEnv",
                 vector_entry_point="envs.portfolio:PortfolioVectorEnv")


def make_creator(env_id: str) -> Callable[[Mapping[str, Any]], Any]:
    """``env_config -> env`` for RLlib's ``gym_env_vectorize_mode="vector_entry_point"``.

    RLlib calls the creator with ``env_config | {"num_envs": N}`` and expects a
    ``gymnasium.vector.VectorEnv``; without ``num_envs`` the single-env face is returned.
    ``env_config`` holds config fields plus optional ``market``/``index`` arrays.
    """
    spec = env_spec(env_id)

    def create(env_config: Mapping[str, Any] | None = None):
        kwargs = {**spec.kwargs, **dict(env_config or {})}
        num_envs = kwargs.pop("num_envs", None)
        if num_envs is None:
            return load_env_creator(spec.entry_point)(**kwargs)
        return load_env_creator(spec.vector_entry_point)(num_envs=int(num_envs), **kwargs)

    return create


_register()
