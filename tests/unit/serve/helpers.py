"""Helpers of the Serve tests (unit and integration): random-weight policies for a synthetic
market (no training, no Ray cluster), run directories as training writes them, request bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from app.models import module_spec
from app.policy.loader import POLICY_SUBDIR, PolicySource
from app.runs.env_factory import create_env
from envs.core.market import MarketArrays
from serve.policy_service import PolicyService
from tests.unit.models import small_config

torch.set_num_threads(1)

ENV_ID = "raytrade/SyntheticMeanReversion-v0"
WINDOW = 10
API_KEY = "test-key-0123456789abcdef"


def build_module(config: dict[str, Any], name: str, env_id: str = ENV_ID, seed: int = 0) -> Any:
    env = create_env(env_id, config | {"num_envs": 1})
    torch.manual_seed(seed)
    module = module_spec(name, small_config(name), observation_space=env.single_observation_space,
                         action_space=env.single_action_space).build()
    module.eval()
    decisive(module, env_id, config)
    return module


def decisive(module: Any, env_id: str, config: dict[str, Any], seed: int = 0) -> None:
    """Re-draw the last policy layer so that the random policy's choices vary with the state
    (a freshly initialized policy is near-uniform and takes the same action everywhere)."""
    env = create_env(env_id, config | {"num_envs": 16})
    env.single_action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    batches = []
    for _ in range(24):
        batches.append(obs)
        obs, *_ = env.step(np.stack([env.single_action_space.sample() for _ in range(16)]))
    inputs: list[torch.Tensor] = []
    hook = module.pi_head.out.register_forward_hook(lambda _m, args, _o: inputs.append(args[0]))
    with torch.no_grad():
        for b in batches:
            module.forward_train({"obs": {k: torch.as_tensor(np.asarray(v)) for k, v in b.items()}})
        hook.remove()
        x = torch.cat(inputs).reshape(-1, inputs[0].shape[-1])
        out = module.pi_head.out
        weight = torch.randn(out.weight.shape, generator=torch.Generator().manual_seed(seed))
        logits = x @ weight.T
        weight /= logits.std(0).clamp_min(1e-6)[:, None] / 3.0
        out.weight.copy_(weight)
        out.bias.copy_(-(x @ weight.T).mean(0))


def serializable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("market", "index")}


def make_service(module: Any, config: dict[str, Any], env_id: str = ENV_ID, index_required: bool | None = True,
                 **settings: Any) -> PolicyService:
    source = PolicySource("test", Path("."), env_id, serializable(config), "test@0", {"name": "test"},
                          index_required, "INDEX")
    from serve.policy_service import ServiceSettings

    return PolicyService(source, module, ServiceSettings(**settings) if settings else None)


def save_run(module: Any, root: Path, config: dict[str, Any], env_id: str = ENV_ID, name: str = "unit") -> Path:
    """A run directory as training writes it: experiment.yaml, state.json, checkpoints/final."""
    run = root / f"{name}-20260101-000000"
    module.save_to_path(str(run / "checkpoints" / "final" / POLICY_SUBDIR))
    experiment = {"name": name, "seed": 0, "data": None, "env": {"id": env_id, "config": serializable(config)},
                  "model": {"name": type(module).__name__}, "tracking": {"registered_model": None}}
    (run / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    (run / "state.json").write_text('{"iteration": 3, "env_steps": 96, "mlflow_run_id": "abc"}')
    return run


def bars_json(ts: np.ndarray, ohlcv: np.ndarray, funding: np.ndarray | None = None) -> dict[str, Any]:
    out = {"ts_ns": [int(t) for t in ts], "open": ohlcv[:, 0].tolist(), "high": ohlcv[:, 1].tolist(),
           "low": ohlcv[:, 2].tolist(), "close": ohlcv[:, 3].tolist(), "volume": ohlcv[:, 4].tolist()}
    if funding is not None:
        out["funding_rate"] = funding.tolist()
    return out


def series_upto(market: MarketArrays, symbol: str, row: int, first: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(ts, ohlcv)`` of ``symbol`` from its start (or local row ``first``) to global ``row``."""
    rows = market.rows(market.index_of(symbol))
    lo = rows.start if first is None else rows.start + first
    return market.ts_ns[lo:row + 1], market.ohlcv[lo:row + 1]


def act_body(synth, symbol: str, row: int, owned: bool = False, bars_held: int = 0, **extra: Any) -> dict:
    ts, ohlcv = series_upto(synth.market, symbol, row)
    known = synth.index.ts_ns <= ts[-1]  # a client knows the index up to the last bar only
    return {"symbols": [{"symbol": symbol, "bars": bars_json(ts, ohlcv),
                         "position": {"owned": owned, "bars_held": bars_held}}],
            "index": bars_json(synth.index.ts_ns[known], synth.index.ohlcv[known])} | extra
