"""The search-space language: values, ranges, conditional choices, names, size, defaults and resolve."""

import pytest

from momsearch import catalog
from momsearch.errors import SpecError
from momsearch.spec import complete, load_space, resolve
from momsearch.spec.tree import Choice, Range, walk

KIND_RULES = [(kind, rule) for kind, entry in catalog.BLOCKS.items() for rule in entry["rules"]]
RULE_PARAMS = [(kind, rule, name, param) for kind, rule in KIND_RULES
               for name, param in catalog.rule_params(kind, rule).items()]
BLOCK_PARAMS = [(kind, name, param) for kind, entry in catalog.BLOCKS.items()
                for name, param in entry["params"].items()]


class FirstTrial:
    """A stand-in for ``optuna.Trial`` that takes the first choice and the low end of every range."""

    def __init__(self):
        self.params = {}

    def suggest_categorical(self, name, choices):
        self.params[name] = choices[0]
        return choices[0]

    def suggest_int(self, name, low, high, step=1, log=False):
        self.params[name] = low
        return low

    def suggest_float(self, name, low, high, step=None, log=False):
        self.params[name] = low
        return low


def nodes(space):
    return {node.name: node for node in walk(space.nodes)}


def outside(param):
    """A value just outside the parameter's valid range (None if it has no bound)."""
    if param.high is not None:
        return param.high if param.high_open else param.high + 1
    if param.low is not None:
        return param.low if param.low_open else param.low - 1
    return None


@pytest.mark.parametrize("kind, rule", KIND_RULES)
def test_every_rule_in_every_form_resolves_to_catalog_defaults(kind, rule):
    forms = [rule, [rule], {rule: {}}, {rule: None}]
    expected = {
        "block": {"kind": kind, "params": {k: p.default for k, p in catalog.block(kind)["params"].items()},
                  "rule": {"name": rule, "params": {k: p.default for k, p in catalog.rule_params(kind, rule).items()}}},
        "train": {k: p.default for k, p in catalog.TRAIN.items()},
    }
    for form in forms:
        space = load_space({"block": {kind: {"rule": form}}})
        assert space.size() == 1
        config = space.suggest(FirstTrial())
        assert config["block"] == kind and config[f"block.{kind}.rule"] == rule
        assert resolve(config) == expected
    assert resolve({"block": kind, f"block.{kind}.rule": rule}) == expected


@pytest.mark.parametrize("kind, rule, name, param", RULE_PARAMS, ids=[f"{k}-{r}-{n}" for k, r, n, _ in RULE_PARAMS])
def test_rule_parameter_values_are_checked_against_the_catalog(kind, rule, name, param):
    path = f"block.{kind}.rule.{rule}.{name}"
    space = load_space({"block": {kind: {"rule": {rule: {name: param.default}}}}})
    assert resolve(space.suggest(FirstTrial()))["block"]["rule"]["params"][name] == param.default
    bad = outside(param)
    if bad is None:
        return
    with pytest.raises(SpecError, match=rf"^space\.{path}: .* is outside the valid range"):
        load_space({"block": {kind: {"rule": {rule: {name: bad}}}}})
    with pytest.raises(SpecError, match=rf"^{path}: .* is outside the valid range"):
        resolve({"block": kind, f"block.{kind}.rule": rule, path: bad})


@pytest.mark.parametrize("kind, name, param", BLOCK_PARAMS, ids=[f"{k}-{n}" for k, n, _ in BLOCK_PARAMS])
def test_block_parameter_values_are_checked_against_the_catalog(kind, name, param):
    space = load_space({"block": {kind: {name: param.default}}})
    assert resolve(space.suggest(FirstTrial()))["block"]["params"][name] == param.default
    bad = outside(param) if not param.is_choice else "no-such-choice"
    if bad is None:
        return
    with pytest.raises(SpecError, match=rf"^space\.block\.{kind}\.{name}: "):
        load_space({"block": {kind: {name: bad}}})


def test_values_lists_and_ranges():
    space = load_space({
        "block": {"rnn": {"cell": ["lstm", "gru"], "hidden_size": {"low": 32, "high": 128, "step": 32},
                          "num_layers": 2,
                          "rule": {"heavy_ball": {"mu": {"low": 0, "high": 0.9}, "s": {"low": 0.1, "high": 2,
                                                                                      "log": True}}}}},
        "train": {"lr": {"low": "1e-4", "high": "1e-2", "log": True}, "epochs": 3}})
    found = nodes(space)
    assert found["block"] == Choice("block", ("rnn",), found["block"].branches)
    assert found["block.rnn.cell"].values == ("lstm", "gru")
    assert found["block.rnn.hidden_size"] == Range("block.rnn.hidden_size", 32, 128, integer=True, step=32)
    assert found["block.rnn.num_layers"].fixed and found["block.rnn.num_layers"].values == (2,)
    mu = found["block.rnn.rule.heavy_ball.mu"]
    assert (mu.low, mu.high, mu.integer, type(mu.low)) == (0.0, 0.9, False, float)  # int bounds, float param
    assert found["block.rnn.rule.heavy_ball.s"].log
    lr = found["train.lr"]
    assert (lr.low, lr.high, lr.log) == (1e-4, 1e-2, True)  # numeric strings coerced
    assert space.names(searched=True) == ["block.rnn.cell", "block.rnn.hidden_size", "block.rnn.rule.heavy_ball.mu",
                                          "block.rnn.rule.heavy_ball.s", "train.lr"]
    assert space.size() is None


def test_yaml_1_1_numeric_strings_are_coerced(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("block: {rnn: {rule: {adam: {eps: 1e-8, s: [5e-1, 1]}}}}\ntrain: {lr: 1e-3}\n")
    config = load_space(path).suggest(FirstTrial())
    assert config["block.rnn.rule.adam.eps"] == 1e-8 and isinstance(config["block.rnn.rule.adam.eps"], float)
    assert config["block.rnn.rule.adam.s"] == 0.5
    assert config["train.lr"] == 1e-3


def test_choice_parameter_branches_carry_their_own_subspaces():
    space = load_space({"block": {"rnn": {
        "cell": {"lstm": {"hidden_size": [16, 32], "rule": {"heavy_ball": {"mu": [0.1, 0.5]}, "plain": {}}},
                 "gru": None},
    }}})
    assert set(nodes(space)) == {"block", "block.rnn.cell", "block.rnn.cell.lstm.hidden_size",
                                 "block.rnn.cell.lstm.rule", "block.rnn.cell.lstm.rule.heavy_ball.mu"}
    assert space.size() == 2 * (2 + 1) + 1
    lstm = space.suggest(FirstTrial())
    assert resolve(lstm)["block"] == {
        "kind": "rnn", "params": {"cell": "lstm", "hidden_size": 16, "num_layers": 1, "dropout": 0.0},
        "rule": {"name": "heavy_ball", "params": {"mu": 0.1, "s": 0.6}}}
    assert lstm["block.rnn.cell.lstm.rule.heavy_ball.s"] == 0.6  # the default under the name that chose the rule
    gru = complete({"block": "rnn", "block.rnn.cell": "gru"})
    assert gru["block.rnn.hidden_size"] == 64 and gru["block.rnn.rule"] == "plain"


def test_attention_rules_nested_under_kind():
    space = load_space({"block": {"attention": {"kind": {"softmax": {}, "linear": {"rule": ["plain", "heavy_ball"]}}}}})
    assert space.size() == 3
    config = complete({"block": "attention", "block.attention.kind": "linear",
                       "block.attention.kind.linear.rule": "heavy_ball"})
    assert resolve(config)["block"]["rule"] == {"name": "heavy_ball", "params": {"mu": 0.6, "s": 0.6}}
    softmax = space.suggest(FirstTrial())
    assert resolve(softmax)["block"]["rule"]["name"] == "plain"
    # a fixed linear kind may carry any rule at the block level
    load_space({"block": {"attention": {"kind": "linear", "rule": ["plain", "adam"]}}})


def test_block_kind_as_a_choice_and_size():
    space = load_space({"block": {"rnn": {"cell": ["lstm", "gru"], "rule": {"plain": {}, "adam": {"mu": [0.0, 0.5]}}},
                                  "ode": {"rule": ["plain", "heavy_ball"]}, "attention": None},
                        "train": {"lr": [0.01, 0.1], "epochs": {"low": 1, "high": 3}}})
    assert space.size() == (2 * (1 + 2) + 2 + 1) * 2 * 3
    assert nodes(space)["block"].values == ("rnn", "ode", "attention")
    stepped = load_space({"block": {"rnn": {"dropout": {"low": 0.0, "high": 0.5, "step": 0.1}}}})
    assert stepped.size() == 6


def test_describe_shows_tree_and_defaults():
    text = load_space({"block": {"rnn": {"cell": ["lstm", "gru"], "rule": {"heavy_ball": {"mu": {"low": 0.1,
                                                                                          "high": 0.9}}}}}}).describe()
    lines = text.splitlines()
    assert lines[0] == "block = rnn"
    assert "  block.rnn.cell: one of lstm, gru" in lines
    assert "    block.rnn.rule.heavy_ball.mu: float in [0.1, 0.9]" in lines
    assert "  block.rnn.rule.heavy_ball: s=0.6" in lines
    assert any(line.startswith("  block.rnn: hidden_size=64, num_layers=1") for line in lines)


def test_resolve_partial_and_complete_agree():
    assert resolve({"block": "rnn"}) == resolve(complete({"block": "rnn"}))
    config = {"block": "ode", "block.ode.rule": "adam", "block.ode.rule.adam.eps": "1e-5", "train.lr": "3e-3"}
    resolved = resolve(config)
    assert resolved["block"]["rule"]["params"]["eps"] == 1e-5 and resolved["train"]["lr"] == 3e-3
    assert resolve(complete(config)) == resolved


RESOLVE_ERRORS = [
    ({}, "config: missing 'block'"),
    ({"block": "rnm"}, "block: unknown block kind 'rnm' (did you mean 'rnn'?)"),
    ({"block": ["rnn"]}, "block: unknown block kind ['rnn']"),
    ({"block": "rnn", "blocks.rnn.cell": "gru"}, "blocks.rnn.cell: unknown name"),
    ({"block": "rnn", "block.rnn.cel": "gru"}, "block.rnn.cel: unknown parameter 'cel' (did you mean 'cell'?)"),
    ({"block": "rnn", "block.ode.hidden_size": 3}, "block.ode.hidden_size: inactive, block is 'rnn'"),
    ({"block": "rnn", "block.rnn.rule.adam.mu": 0.1}, "block.rnn.rule.adam.mu: needs block.rnn.rule"),
    ({"block": "rnn", "block.rnn.rule": "plain", "block.rnn.rule.adam.mu": 0.1},
     "block.rnn.rule.adam.mu: inactive, block.rnn.rule is 'plain'"),
    ({"block": "rnn", "block.rnn.rule": "adam", "block.rnn.rule.adam.m": 0.1}, "block.rnn.rule.adam.m: unknown"),
    ({"block": "rnn", "block.rnn.rule": "nope"}, "block.rnn.rule: unknown rule"),
    ({"block": "rnn", "block.rnn.hidden_size": 8, "block.rnn.cell": "lstm", "block.rnn.cell.lstm.hidden_size": 9},
     "block.rnn.cell.lstm.hidden_size: hidden_size is already set by block.rnn.hidden_size"),
    ({"block": "rnn", "block.rnn.hidden_size.x": 8}, "block.rnn.hidden_size.x: hidden_size is not a choice"),
    ({"block": "attention", "block.attention.kind": "softmax", "block.attention.rule": "heavy_ball"},
     "block.attention.rule: rule 'heavy_ball' is not allowed with kind='softmax'"),
    ({"block": "rnn", "block.rnn.rule": "heavy_ball", "block.rnn.rule.heavy_ball.mu": 1.5},
     "block.rnn.rule.heavy_ball.mu: 1.5 is outside the valid range"),
    ({"block": "rnn", "train.lrate": 0.1}, "train.lrate: unknown parameter 'lrate'"),
]


@pytest.mark.parametrize("config, start", RESOLVE_ERRORS)
def test_resolve_errors(config, start):
    with pytest.raises(SpecError) as info:
        resolve(config)
    assert str(info.value).startswith(start), info.value
