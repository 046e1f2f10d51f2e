"""What a game is played on: bars from the store (``raytrade play``) or a trained run's unseen
split with its policy (``raytrade play --run RUN``).

With a run, the game trades the run's test split by default (symbols and years it never saw),
through the run's env config (its costs, sizing and windows), and the agent is the run's policy
(:func:`app.evaluation.pipeline.load_policy`, :class:`app.policy.BatchedPolicy`, greedy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.runs.env_factory import DataSpec, load_env_data
from envs.core.market import MarketArrays

#: the embedded sample's datasets (``make demo`` imports them into ``./store``)
MARKETS: dict[str, DataSpec] = {
    "stocks": DataSpec("", "stooq", "stock", "1d", (), "stooq", "index", "^GSPC"),
    "crypto": DataSpec("", "binanceusdm", "swap", "1h", (), "binanceusdm", "swap", "BTC/USDT:USDT"),
}
ENV_IDS = {"stocks": "raytrade/StockSwing-v0", "crypto": "raytrade/CryptoFutures-v0"}
#: the game's own settings where no run gives them (crypto: no leverage, a person's first game)
DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {"stocks": {}, "crypto": {"leverage": 1.0}}


@dataclass
class GameInputs:
    env_id: str
    env_config: dict[str, Any]
    market: MarketArrays
    index: MarketArrays | None
    policy_factory: Any = None
    run_name: str | None = None


def from_store(store: Path | str, market: str = "stocks") -> GameInputs:
    """Every symbol of the sample's ``market`` dataset in ``store``, with its index."""
    from app.config.loader import require_store
    from app.data.schema import DatasetKey, MarketType
    from app.data.store import ParquetStore

    if market not in MARKETS:
        raise ConfigError(f"--market: one of {sorted(MARKETS)}, got {market!r}")
    root = require_store(Path(store), what="--store")
    base = MARKETS[market]
    key = DatasetKey(base.source, MarketType(base.market_type), base.timeframe)
    symbols = ParquetStore(root).symbols(key)
    if not symbols:
        raise ConfigError(f"{root}: no {base.source}/{base.market_type}/{base.timeframe} bars "
                          "(run `raytrade data import data/sample` or `make demo` first)")
    spec = DataSpec(str(root), base.source, base.market_type, base.timeframe, tuple(symbols),
                    base.index_source, base.index_market_type, base.index_symbol)
    bars, index = load_env_data(spec)
    return GameInputs(ENV_IDS[market], dict(DEFAULT_CONFIGS[market]), bars, index)


def from_run(ref: str, *, part: str = "test", which: str = "final", store: Path | str | None = None,
             runs_dir: Path | str | None = None) -> GameInputs:
    """A run's ``part`` split (its env config and bars) and a factory of its greedy policy."""
    from app.config.schema import DataSelection
    from app.evaluation.pipeline import load_policy, load_splits
    from app.policy.batched import BatchedPolicy
    from app.runs import RunDir, resume_experiment
    from app.runs.data import selected_env_config

    run = RunDir.find(ref, runs_dir)
    exp = resume_experiment(run)
    if exp.data is None:
        raise ConfigError(f"{run.name}: trained on a synthetic market; the game plays stored bars")
    selection = DataSelection(store=Path(store)) if store is not None else None
    exp, env_config, _ = selected_env_config(exp, load_splits(run), part, selection)
    if env_config is None:
        raise ConfigError(f"{run.name}: its {part!r} split has no symbols")
    bars, index = load_env_data(DataSpec.from_dict(env_config["data"]))
    module = load_policy(run, which)

    def factory(action_space: Any) -> BatchedPolicy:
        return BatchedPolicy(module, action_space, 1, greedy=True, with_values=True)

    return GameInputs(exp.env.id, env_config, bars, index, factory, run.name)
