"""SearchSpace.suggest with real Optuna studies: brute force on finite spaces, TPE on conditional ones."""

import warnings
from pathlib import Path

import optuna
import pytest

from momsearch.spec import complete, load_space, resolve

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))

FINITE = {
    "block": {
        "rnn": {"cell": {"lstm": {"hidden_size": [8, 16]}, "gru": None},
                "rule": {"plain": {}, "heavy_ball": {"mu": {"low": 0.0, "high": 0.5, "step": 0.25}}}},
        "attention": {"kind": {"softmax": {}, "linear": {"rule": ["plain", "adam"]}}},
    },
    "train": {"epochs": {"low": 1, "high": 2}},
}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def run(space, sampler, n_trials=None):
    configs = []

    def objective(trial):
        config = space.suggest(trial)
        assert set(trial.params) <= set(config)
        assert all(config[name] == value for name, value in trial.params.items())
        configs.append(config)
        return float(len(configs) % 3)

    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return study, configs


def test_brute_force_enumerates_the_conditional_tree():
    space = load_space(FINITE)
    study, configs = run(space, optuna.samplers.BruteForceSampler(seed=0))
    assert space.size() == ((2 + 1) * (1 + 3) + (1 + 2)) * 2
    distinct = {tuple(sorted(config.items())) for config in configs}
    assert len(configs) == len(distinct) == space.size()
    for config in configs:
        assert complete(config) == config  # every active default is already there
        resolve(config)
    assert {name for t in study.trials for name in t.params} == set(space.names(searched=True))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_with_tpe_group_multivariate(name):
    space = load_space(ROOT / "search_spaces" / name)
    sampler = optuna.samplers.TPESampler(multivariate=True, group=True, seed=0, n_startup_trials=3)
    study, configs = run(space, sampler, n_trials=8)
    assert len(study.trials) == 8
    for config in configs:
        resolved = resolve(config)
        assert resolved["block"]["kind"] == config["block"]
        assert complete(config) == config
        for value in config.values():
            assert isinstance(value, (str, int, float, bool, type(None)))


def test_fixed_trial_replays_a_configuration():
    space = load_space(FINITE)
    _, configs = run(space, optuna.samplers.RandomSampler(seed=1), n_trials=5)
    searched = set(space.names(searched=True))
    for config in configs:
        replay = space.suggest(optuna.trial.FixedTrial({k: v for k, v in config.items() if k in searched}))
        assert replay == config
