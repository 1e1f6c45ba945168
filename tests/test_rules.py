"""Discrete update rules: construction, validation against the catalog, the Nesterov counter, ``make``."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

import momsearch.blocks
from momsearch import catalog
from momsearch.catalog import attention as attention_catalog
from momsearch.catalog import rnn as rnn_catalog
from momsearch.errors import ConfigError
from momsearch.rules import RULES, Adam, Filter, HeavyBall, NesterovRestart, Normaliser, Plain, RMSProp, make


def test_registry_matches_the_catalog():
    assert set(RULES) == set(rnn_catalog.RULES) | set(attention_catalog.RULES)
    assert {Plain, HeavyBall, NesterovRestart, Adam, RMSProp} <= set(RULES.values())
    for name, cls in RULES.items():
        for block in cls.blocks:
            assert catalog.rule_params(block, name) is cls.PARAMS  # declared once, read by the catalog


def test_no_block_module_chooses_by_rule_name_or_class():
    """Blocks read what a rule does (filter, normaliser, pre-activation cells), never which rule it is."""
    blocks = Path(momsearch.blocks.__file__).parent
    for path in sorted(blocks.glob("*.py")):
        text = path.read_text()
        assert not re.search(r"rule\.name\s*(==|!=|in\b|not\s+in\b)", text), path.name
        assert not re.search(r"\b(isinstance|issubclass)\([^)]*\b(" + "|".join(
            cls.__name__ for cls in RULES.values()) + r")\b", text), path.name


@pytest.mark.parametrize("name", list(RULES))
def test_every_rule_says_what_it_does_in_every_block_it_is_offered_in(name):
    rule = RULES[name]()
    assert rule.blocks and set(rule.blocks) <= {"rnn", "attention"}
    for block in rule.blocks:
        assert isinstance(rule.filter(block), Filter)
    assert rule.normaliser() is None or isinstance(rule.normaliser(), Normaliser)


def test_the_catalog_and_the_declarations_import_no_torch():
    code = "import sys, momsearch.catalog, momsearch.rules; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", list(RULES))
def test_defaults_are_the_catalog_defaults(name):
    rule = RULES[name]()
    assert rule.name == name
    assert rule.params() == {key: p.default for key, p in RULES[name].PARAMS.items()}


@pytest.mark.parametrize("name", list(RULES))
def test_rules_are_frozen_and_rebuild_from_params(name):
    rule = RULES[name]()
    assert RULES[name](**rule.params()) == rule
    assert make(name, **rule.params()) == rule
    for key in rule.params():
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(rule, key, 0.5)


@pytest.mark.parametrize("cls, kwargs, named", [
    (HeavyBall, {"mu": 1.0}, "mu"),
    (HeavyBall, {"mu": -0.1}, "mu"),
    (HeavyBall, {"s": 0.0}, "s"),
    (HeavyBall, {"s": -1.0}, "s"),
    (Adam, {"beta": 1.0}, "beta"),
    (Adam, {"beta": -0.5}, "beta"),
    (Adam, {"eps": 0.0}, "eps"),
    (Adam, {"mu": 1.5}, "mu"),
    (RMSProp, {"beta": 1.0}, "beta"),
    (RMSProp, {"s": 0.0}, "s"),
    (NesterovRestart, {"restart_every": -1}, "restart_every"),
    (NesterovRestart, {"restart_every": 2.5}, "restart_every"),
    (NesterovRestart, {"s": 0.0}, "s"),
])
def test_bad_hyperparameters_name_the_argument_and_range(cls, kwargs, named):
    with pytest.raises(ConfigError, match=rf"{named}=.*must be|{named}=.*expected"):
        cls(**kwargs)


def test_bad_hyperparameter_message_gives_the_range():
    with pytest.raises(ConfigError, match=r"rule heavy_ball: mu=1\.0: must be float in \[0, 1\)"):
        HeavyBall(mu=1.0)
    with pytest.raises(ValueError):  # ConfigError is a ValueError too
        HeavyBall(s=0)


def test_numeric_strings_are_coerced():
    assert HeavyBall(mu="0.5", s="1e-1") == HeavyBall(mu=0.5, s=0.1)
    assert NesterovRestart(restart_every=4.0).restart_every == 4


def test_unknown_rule_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown rule for block rnn 'heavyball' \(did you mean 'heavy_ball'\?\)"):
        make("heavyball")
    with pytest.raises(ConfigError, match="valid: plain, heavy_ball, nesterov_restart, adam, rmsprop"):
        make("sgd")


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(ConfigError, match=r"unknown parameter 'momentum'.*valid: mu, s"):
        make("heavy_ball", momentum=0.9)


def test_rmsprop_is_adam_without_momentum():
    assert RMSProp().mu == 0.0


@pytest.mark.parametrize("R, expected", [
    (3, [1, 2, 3, 1, 2, 3, 1]),
    (1, [1, 1, 1, 1, 1, 1, 1]),
    (0, [1, 2, 3, 4, 5, 6, 7]),
])
def test_nesterov_counter_restarts(R, expected):
    rule = NesterovRestart(restart_every=R)
    assert [rule.counter(t) for t in range(7)] == expected
    assert [rule.coefficient(t) for t in range(7)] == [(k - 1) / (k + 2) for k in expected]
