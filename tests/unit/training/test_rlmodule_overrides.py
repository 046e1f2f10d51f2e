"""Every method of our RLModules that overrides one of RLlib's carries ``@override(...)``
(RLlib then checks at import that the overridden method still exists)."""

from __future__ import annotations

import ast
import inspect

import pytest
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from app.models import MODEL_CLASSES
from app.models.common import TradingRLModule

RLLIB_BASES = (TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI)


def _decorated_methods(cls: type) -> dict[str, list[str]]:
    tree = ast.parse(inspect.getsource(cls))
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    return {f.name: [ast.unparse(d) for d in f.decorator_list] for f in node.body if isinstance(f, ast.FunctionDef)}


@pytest.mark.parametrize("cls", [TradingRLModule, *MODEL_CLASSES.values()], ids=lambda c: c.__name__)
def test_rllib_overrides_are_annotated(cls):
    rllib_names = {name for base in RLLIB_BASES for name in dir(base)}
    missing = [name for name, decorators in _decorated_methods(cls).items()
               if name in rllib_names and not any(d.startswith("override(") for d in decorators)]
    assert missing == [], f"{cls.__name__}: add @override to {missing}"
