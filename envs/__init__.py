"""raytrade trading envs: pure numpy + gymnasium, no files, no app imports.

Importing this package only registers the env ids (entry points are strings, nothing heavy is
imported). ``gym.make(id)`` works with no arguments (on a synthetic market);
``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")`` gives the native
vector face. For RLlib, :func:`make_creator` returns the ``env_config -> env`` callable it expects
(a VectorEnv when ``env_config`` has ``num_envs``). :func:`env_spec` gives each env's ONE spec
(:class:`envs.core.spec.EnvSpec`): what Serve, backtests and the trader know about an env.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gymnasium.envs.registration import load_env_creator, register, registry
from gymnasium.envs.registration import spec as registered_spec

STOCK_SWING = "raytrade/StockSwing-v0"
CRYPTO_FUTURES = "raytrade/CryptoFutures-v0"
PORTFOLIO = "raytrade/Portfolio-v0"
SYNTHETIC_IDS = {
    "raytrade/SyntheticGBM-v0": "gbm",
    "raytrade/SyntheticMeanReversion-v0": "mean_reversion",
    "raytrade/SyntheticTrend-v0": "trend",
}
#: StockSwing on the learning benchmark's markets (:mod:`envs.synthetic_edges`), in StockSwing's
#: default mode (``buy_only``, ``excess_horizon``); ``mode``/``reward``/``synthetic_params`` override
SYNTHETIC_EDGE_IDS = {
    "raytrade/SyntheticRareEvent-v0": "rare_event",
    "raytrade/SyntheticRegime-v0": "regime",
    "raytrade/SyntheticNoise-v0": "noise",
    "raytrade/SyntheticRelativeMomentum-v0": "relative_momentum",
}
#: CryptoFutures on hourly perpetuals with planted edges of both signs (:mod:`envs.synthetic_perps`)
SYNTHETIC_PERP_IDS = {
    "raytrade/SyntheticPerpRareEvent-v0": "rare_event",
    "raytrade/SyntheticPerpRegime-v0": "regime",
    "raytrade/SyntheticPerpNoise-v0": "noise",
}
ENV_IDS = (STOCK_SWING, *SYNTHETIC_IDS, *SYNTHETIC_EDGE_IDS, PORTFOLIO, CRYPTO_FUTURES, *SYNTHETIC_PERP_IDS)


def _register() -> None:
    single, vector = "envs.stock_swing:StockSwingEnv", "envs.stock_swing:StockSwingVectorEnv"
    if STOCK_SWING not in registry:
        register(id=STOCK_SWING, entry_point=single, vector_entry_point=vector)
    for env_id, kind in SYNTHETIC_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=single, vector_entry_point=vector,
                     kwargs={"synthetic": kind, "mode": "swing", "reward": "log_return"})
    for env_id, kind in SYNTHETIC_EDGE_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=single, vector_entry_point=vector, kwargs={"synthetic": kind})
    futures = "envs.crypto_futures:CryptoFuturesEnv", "envs.crypto_futures:CryptoFuturesVectorEnv"
    if CRYPTO_FUTURES not in registry:
        register(id=CRYPTO_FUTURES, entry_point=futures[0], vector_entry_point=futures[1])
    for env_id, kind in SYNTHETIC_PERP_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=futures[0], vector_entry_point=futures[1],
                     kwargs={"synthetic": kind})
    if PORTFOLIO not in registry:
        register(id=PORTFOLIO, entry_point="envs.portfolio:PortfolioEnv",
                 vector_entry_point="envs.portfolio:PortfolioVectorEnv")


def make_creator(env_id: str) -> Callable[[Mapping[str, Any]], Any]:
    """``env_config -> env`` for RLlib's ``gym_env_vectorize_mode="vector_entry_point"``.

    RLlib calls the creator with ``env_config | {"num_envs": N}`` and expects a
    ``gymnasium.vector.VectorEnv``; without ``num_envs`` the single-env face is returned.
    ``env_config`` holds config fields plus optional ``market``/``index`` arrays.
    """
    spec = registered_spec(env_id)

    def create(env_config: Mapping[str, Any] | None = None):
        kwargs = {**spec.kwargs, **dict(env_config or {})}
        num_envs = kwargs.pop("num_envs", None)
        if num_envs is None:
            return _entry(env_id, spec.entry_point)(**kwargs)
        return _entry(env_id, spec.vector_entry_point)(num_envs=int(num_envs), **kwargs)

    return create


def _entry(env_id: str, entry: Callable[..., Any] | str | None) -> Callable[..., Any]:
    """A registered entry point as a callable (raytrade registers ``module:Class`` strings)."""
    if entry is None:
        raise ValueError(f"env {env_id!r}: registered without this entry point")
    return load_env_creator(entry) if isinstance(entry, str) else entry


def env_spec(env_id: str, config: Any = None, observation_space: Any = None):
    """The :class:`~envs.core.spec.EnvSpec` of ``env_id`` with ``config`` (a config object, or an
    ``env_config`` mapping applied over the id's registered kwargs; constructor arguments such
    as ``market`` are ignored), reconciled with and checked against ``observation_space`` (a
    trained module's) when given. Raises ``ValueError`` for unknown ids and mismatches."""
    if env_id not in registry:
        raise ValueError(f"env {env_id!r}: not registered; raytrade envs are {list(ENV_IDS)}")
    spec = registered_spec(env_id)
    entry = spec.entry_point
    make_spec = getattr(load_env_creator(entry) if isinstance(entry, str) else entry, "env_spec", None)
    if make_spec is None:
        raise ValueError(f"env {env_id!r}: its entry point {entry!r} publishes no env_spec")
    if config is None or isinstance(config, Mapping):
        config = {**spec.kwargs, **dict(config or {})}
    return make_spec(config, observation_space, env_id)


_register()
