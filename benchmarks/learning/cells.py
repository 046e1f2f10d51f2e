"""The suite's cells (class x form x algorithm preset x seed) and the experiment of each.

A cell's experiment is its class template (``tune_configs/learning/<class>.yaml``) with the
preset's ``model``/``algorithm`` (``algos.yaml``), the form's env (``forms.yaml``), the seed,
the env-step budget and the suite's output locations put in, validated like any experiment
(:func:`app.config.loader.parse_experiment`). Markets, never written by hand:

* training trades ``market_seed = MARKET_SEED_STRIDE * seed`` (validation ``+1``, test
  ``+2``: :data:`app.runs.data.SYNTHETIC_SEED_OFFSET`);
* the held-out evaluation trades :func:`heldout_market_seeds`, a range no cell trains or
  validates on (new symbols' paths, new seeds).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.config.loader import parse_experiment, resolve_paths
from app.config.schema import Experiment
from app.errors import ConfigError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPLATES = ROOT / "tune_configs" / "learning"
ALGOS_FILE = HERE / "algos.yaml"
FORMS_FILE = HERE / "forms.yaml"
#: training/validation/test market seeds of seed ``s`` are ``stride * s + {0, 1, 2}``
MARKET_SEED_STRIDE = 100
#: held-out market seeds start here (far above any training seed)
HELDOUT_SEED_BASE = 1_000_000
#: env.config keys that describe the market (kept when a form replaces the env)
MARKET_KEYS = ("synthetic", "market_seed", "synthetic_params")
TEMPLATE_FORM = "template"


@dataclass(frozen=True)
class Cell:
    klass: str     # a template name: rare_event, mean_reversion, ...
    algo: str      # a preset of algos.yaml
    seed: int
    form: str = TEMPLATE_FORM

    @property
    def name(self) -> str:
        form = "" if self.form == TEMPLATE_FORM else f"_{self.form}"
        return f"{self.klass}{form}_{self.algo}_s{self.seed}"


@dataclass(frozen=True)
class Budget:
    env_steps: int
    #: evaluate on validation every this many iterations (the 50 % / 70 % clock's resolution)
    eval_interval_iterations: int | None = None
    train_batch_size: int | None = None
    episodes: int | None = None


def classes() -> list[str]:
    return sorted(p.stem for p in TEMPLATES.glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping")
    return raw


def presets(path: Path = ALGOS_FILE) -> dict[str, dict[str, Any]]:
    return read_yaml(path)


def forms(path: Path = FORMS_FILE) -> dict[str, dict[str, Any]]:
    return read_yaml(path)


def heldout_market_seeds(count: int) -> list[int]:
    return [HELDOUT_SEED_BASE + k for k in range(count)]


def cell_raw(cell: Cell, budget: Budget, *, out_dir: Path, mlflow_uri: str,
             template: dict[str, Any] | None = None, preset: dict[str, Any] | None = None,
             form: dict[str, Any] | None = None) -> dict[str, Any]:
    """The raw experiment mapping of ``cell`` (before validation; see the module docstring)."""
    path = TEMPLATES / f"{cell.klass}.yaml"
    if template is None:
        if not path.is_file():
            raise ConfigError(f"class {cell.klass!r}: no template {path} (have {classes()})")
        template = resolve_paths(read_yaml(path), path.parent)
    if preset is None:
        known = presets()
        if cell.algo not in known:
            raise ConfigError(f"algorithm preset {cell.algo!r}: not in {ALGOS_FILE} (have {sorted(known)})")
        preset = known[cell.algo]
    raw = copy.deepcopy(template)
    for section in ("model", "algorithm", "resources", "exploration"):
        if section in preset:
            raw[section] = copy.deepcopy(preset[section])
    env = raw["env"]
    if cell.form != TEMPLATE_FORM:
        if form is None:
            known_forms = forms()
            if cell.form not in known_forms:
                raise ConfigError(f"form {cell.form!r}: not in {FORMS_FILE} (have {sorted(known_forms)})")
            form = known_forms[cell.form]
        market = {k: v for k, v in env.get("config", {}).items() if k in MARKET_KEYS}
        env = raw["env"] = {"id": form["id"], "config": dict(form.get("config", {})) | market}
    env.setdefault("config", {}).update(copy.deepcopy(preset.get("env_config", {})))  # e.g. buy_penalty
    # a training method, like the model and algorithm: the preset's (default off), not the template's
    env["skip_forced_steps"] = bool(preset.get("skip_forced_steps", False))
    env["config"]["market_seed"] = MARKET_SEED_STRIDE * cell.seed
    raw["name"] = f"learn_{cell.name}"
    raw["seed"] = cell.seed
    raw["stopping"] = {"env_steps": budget.env_steps, "iterations": None}
    _apply_budget(raw, budget)
    raw["resources"] = {**raw.get("resources", {}), "num_env_runners": 0}
    raw["tracking"] = {**raw.get("tracking", {}), "runs_dir": str(out_dir / "runs"),
                       "mlflow_uri": mlflow_uri, "experiment": "learning_suite_train",
                       "registered_model": "learning_suite", "bounds_file": None}
    return raw


def _apply_budget(raw: dict[str, Any], budget: Budget) -> None:
    evaluation = raw.setdefault("evaluation", {})
    if budget.eval_interval_iterations is not None:
        evaluation["interval_iterations"] = budget.eval_interval_iterations
    if budget.episodes is not None:
        evaluation["episodes"] = budget.episodes
    if budget.train_batch_size is not None:
        algo = raw.setdefault("algorithm", {})
        algo["train_batch_size"] = budget.train_batch_size
        algo["minibatch_size"] = min(int(algo.get("minibatch_size", 256)), budget.train_batch_size)
    raw.setdefault("checkpoint", {})["every_iterations"] = 10**6  # best + final are enough


def build_experiment(cell: Cell, budget: Budget, *, out_dir: Path, mlflow_uri: str,
                     **parts: Any) -> Experiment:
    """``cell``'s validated experiment (a ConfigError names the cell and the bad key)."""
    return parse_experiment(cell_raw(cell, budget, out_dir=out_dir, mlflow_uri=mlflow_uri, **parts),
                            where=f"learning suite cell {cell.name}")


def heldout_env_config(exp: Experiment, market_seed: int) -> dict[str, Any]:
    """The cell's env on a held-out market: same env, costs and episode length."""
    return dict(exp.env.config) | {"market_seed": market_seed}
