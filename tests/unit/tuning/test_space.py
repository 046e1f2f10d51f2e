"""The YAML search space -> Ray Tune, in one module: every domain, PBT mutations, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from ray import tune
from ray.tune.search import sample

from app.config.loader import parse_experiment
from app.config.schema import SchedulerConfig, SearchDomain, TuneConfig
from app.errors import ConfigError
from app.tuning import space

BASE = {"name": "b", "env": {"id": "raytrade/SyntheticMeanReversion-v0", "config": {"episode_bars": 64}},
        "model": {"name": "mlp", "config": {"embed_dim": 16}}}


def dom(**kw) -> SearchDomain:
    return SearchDomain(**kw)


def test_choice_and_grid():
    choice = space.to_tune(dom(choice=[0.0, 0.01, [[0, 0.1], [100, 0.0]]]))
    assert isinstance(choice, sample.Categorical) and choice.categories == [0.0, 0.01, [[0, 0.1], [100, 0.0]]]
    assert space.to_tune(dom(grid=[1, 2, 3])) == tune.grid_search([1, 2, 3])


def test_uniform_and_loguniform_keep_their_bounds_and_sampler():
    uni = space.to_tune(dom(uniform=(0.1, 0.3)))
    log = space.to_tune(dom(loguniform=(1e-5, 1e-3)))
    assert (uni.lower, uni.upper) == (0.1, 0.3) and isinstance(uni.get_sampler(), sample.Float._Uniform)
    assert (log.lower, log.upper) == (1e-5, 1e-3) and isinstance(log.get_sampler(), sample.Float._LogUniform)
    draws = np.array(log.sample(size=2000))
    assert draws.min() >= 1e-5 and draws.max() <= 1e-3
    assert np.median(draws) < 2e-4  # log-uniform: the median is the geometric mean (1e-4), not 5e-4


def test_randint_bounds_are_inclusive():
    dim = space.to_tune(dom(randint=(2, 4)))
    assert isinstance(dim, sample.Integer) and (dim.lower, dim.upper) == (2, 5)
    assert set(dim.sample(size=300)) == {2, 3, 4}


def test_param_space_is_flat_and_keyed_by_dotted_keys():
    cfg = TuneConfig(search_space={"algorithm.lr": dom(loguniform=(1e-4, 1e-3)), "seed": dom(grid=[1, 2])})
    out = space.param_space(cfg)
    assert set(out) == {"algorithm.lr", "seed"} and out["seed"] == {"grid_search": [1, 2]}


def test_pbt_mutations_translate_and_grid_is_refused():
    sch = SchedulerConfig(name="pbt", hyperparam_mutations={"algorithm.lr": dom(loguniform=(1e-4, 1e-3)),
                                                            "algorithm.num_epochs": dom(choice=[1, 2, 4])})
    muts = space.pbt_mutations(sch)
    # a list, so PBT moves to a neighbouring value instead of multiplying it by 0.8 / 1.2
    assert isinstance(muts["algorithm.lr"], sample.Float) and muts["algorithm.num_epochs"] == [1, 2, 4]
    with pytest.raises(ConfigError, match="grid cannot be a PBT mutation"):
        space.pbt_mutations(SchedulerConfig(name="pbt", hyperparam_mutations={"seed": dom(grid=[1, 2])}))


def test_pbt_explore_is_clamped_to_the_declared_bounds():
    sch = SchedulerConfig(name="pbt", hyperparam_mutations={
        "algorithm.gamma": dom(uniform=(0.9, 1.0)), "algorithm.num_epochs": dom(randint=(1, 8)),
        "algorithm.lr": dom(loguniform=(1e-4, 1e-3))})
    explore = space.clamp_explore(sch)
    out = explore({"algorithm.gamma": 1.2, "algorithm.num_epochs": 9.6, "algorithm.lr": 5e-5, "other": 7})
    assert out == {"algorithm.gamma": 1.0, "algorithm.num_epochs": 8, "algorithm.lr": 1e-4, "other": 7}


def test_sampled_values_become_lossless_overrides():
    config = {"algorithm.lr": np.float64(1e-05), "algorithm.num_epochs": np.int64(3),
              "algorithm.entropy_coeff": [[0, 0.01], [1000, 0.0]], "env.config.mode": "buy_only"}
    overrides = space.overrides_for(config)
    assert "algorithm.lr=1.0e-05" in overrides  # "1e-05" would read back as a string
    exp = space.trial_experiment(BASE | {"tune": {"num_samples": 3}}, config)
    assert exp.algorithm.lr == 1e-05 and exp.algorithm.num_epochs == 3 and exp.tune is None
    assert exp.algorithm.entropy_coeff == [(0, 0.01), (1000, 0.0)] and exp.env.config["mode"] == "buy_only"


@pytest.mark.parametrize(("key", "domain", "message"), [
    ("algorithm.lrr", dom(choice=[0.1]), "algorithm.lrr"),                   # not a field
    ("algorithm.gamma", dom(uniform=(0.9, 1.5)), "algorithm.gamma"),        # 1.5 fails validation
    ("data.store", dom(choice=["a", "b"]), "cannot be searched"),            # the data defines the splits
    ("evaluation.episodes", dom(choice=[4, 8]), "cannot be searched"),       # the objective
    ("tracking.experiment", dom(choice=["x"]), "cannot be searched"),
    ("model.config.embed_dimm", dom(choice=[8]), "embed_dimm"),              # the model's parser names it
    ("env.config.episode_barz", dom(choice=[8]), "episode_barz"),  # the env's config names it
])
def test_bad_keys_and_values_are_refused_before_any_trial(key, domain, message):
    cfg = TuneConfig(search_space={key: domain})
    with pytest.raises(ConfigError, match=message):
        space.check_space(BASE, cfg)


def test_scheduler_and_mutations_must_agree():
    muts = {"algorithm.lr": dom(loguniform=(1e-4, 1e-3))}
    with pytest.raises(ConfigError, match="only apply to the pbt scheduler"):
        space.check_space(BASE, TuneConfig(scheduler=SchedulerConfig(name="asha", hyperparam_mutations=muts)))
    with pytest.raises(ConfigError, match="needs tune.scheduler.hyperparam_mutations"):
        space.check_space(BASE, TuneConfig(scheduler=SchedulerConfig(name="pbt")))
    with pytest.raises(ConfigError, match="architecture"):
        space.check_space(BASE, TuneConfig(scheduler=SchedulerConfig(
            name="pbt", hyperparam_mutations={"model.config.embed_dim": dom(choice=[8, 16])})))
    space.check_space(BASE, TuneConfig(scheduler=SchedulerConfig(name="pbt", hyperparam_mutations=muts)))


def test_a_test_metric_cannot_be_the_objective():
    with pytest.raises(ConfigError, match="validation metric"):
        parse_experiment(BASE | {"tune": {"metric": "test_greedy/sharpe"}})


def test_the_objective_must_come_from_the_validation_evaluation():
    from app.tuning.runner import check_objective

    for metric in ("env_runners/episode_return_mean", "val_greedy/sharpe_typo", "trading/sharpe"):
        exp = parse_experiment(BASE | {"tune": {"metric": metric}})
        with pytest.raises(ConfigError, match="not a validation metric"):
            check_objective(exp, exp.tune, "x.yaml")
    exp = parse_experiment(BASE | {"tune": {"metric": "val_stochastic/sharpe"}, "evaluation": {"stochastic_too": False}})
    with pytest.raises(ConfigError, match="stochastic_too"):
        check_objective(exp, exp.tune, "x.yaml")
    ok = parse_experiment(BASE | {"tune": {"metric": "val_greedy/max_drawdown", "mode": "min"}})
    check_objective(ok, ok.tune, "x.yaml")
