"""Serve knows envs through their published spec only (envs.env_spec): no serve module names an
env id, an env's config class or module, or compares an env kind (the trader and UI follow)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVE = Path(__file__).resolve().parents[3] / "serve"
ENV_MODULES = {"envs.stock_swing", "envs.crypto_futures", "envs.portfolio"}
ENV_NAMES = {"STOCK_SWING", "CRYPTO_FUTURES", "PORTFOLIO", "SYNTHETIC_IDS", "ENV_IDS", "StockSwingConfig",
             "CryptoFuturesConfig", "PortfolioConfig"}
KINDS = {"stock", "futures", "portfolio"}


@pytest.mark.parametrize("path", sorted(SERVE.glob("*.py")), ids=lambda p: p.name)
def test_serve_does_not_switch_on_envs(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom):
            assert node.module not in ENV_MODULES, f"{where} imports {node.module}"
            assert not ENV_NAMES & {a.name for a in node.names}, f"{where} imports an env name"
        elif isinstance(node, (ast.Name, ast.Attribute)):
            name = node.id if isinstance(node, ast.Name) else node.attr
            assert name not in ENV_NAMES, f"{where} uses {name}"
        elif isinstance(node, ast.Compare):
            consts = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
            assert not KINDS & consts, f"{where} compares with an env kind"
