"""The compare: section and the studies it derives: arms, bad input (one line, exit 2), controls, seeds."""

from __future__ import annotations

import pytest
import yaml

from momsearch.cli import main
from momsearch.errors import SpecError
from momsearch.search.compare_plan import arm_study_file, confirm_seeds, control_config, restrict, seeded_study_file
from momsearch.spec.study_file import parse_study_file
from momsearch.spec.tree import Choice, walk

BASE = {
    "name": "cmp",
    "task": "seq_digits",
    "objectives": {"accuracy": "maximize"},
    "space": {"block": {"rnn": {"cell": ["lstm", "gru"], "hidden_size": 8,
                                "rule": {"plain": {}, "heavy_ball": {"mu": {"low": 0.1, "high": 0.9}, "s": 0.5},
                                         "adam": {"mu": 0.6, "s": 0.6}, "nesterov_restart": {}}}},
              "train": {"lr": [0.001, 0.01]}},
    "train": {"epochs": 1},
}


def study(compare=None, **changes):
    data = {**BASE, **changes, "compare": compare if compare is not None else {}}
    return parse_study_file(yaml.safe_load(yaml.safe_dump(data, sort_keys=False)))


def test_defaults_and_rule_arms():
    s = study()
    c = s.compare
    assert [a.name for a in c.arms] == ["plain", "heavy_ball", "adam", "nesterov_restart"]
    assert (c.baseline, c.seeds, c.trials_per_arm, c.controls, c.test_metric) == ("plain", 5, 8, True,
                                                                                   "test_accuracy")
    assert c.arms[1].fixed == (("block", "rnn"), ("block.rnn.rule", "heavy_ball"))


def test_by_another_categorical_and_block_rule_pairs():
    c = study({"by": "block.rnn.cell", "baseline": "lstm"}).compare
    assert [a.name for a in c.arms] == ["lstm", "gru"]
    space = {"block": {"rnn": {"rule": {"plain": {}, "heavy_ball": {}}},
                       "attention": {"d_model": 8, "kind": {"softmax": {},
                                                            "linear": {"rule": {"plain": {}, "heavy_ball": {}}}}}}}
    c = study(space=space).compare
    assert [a.name for a in c.arms] == ["rnn/plain", "rnn/heavy_ball", "attention/plain", "attention/heavy_ball"]
    assert c.baseline == "rnn/plain"
    assert c.arms[3].fixed == (("block", "attention"), ("block.attention.kind", "linear"),
                               ("block.attention.kind.linear.rule", "heavy_ball"))


@pytest.mark.parametrize("compare, message", [
    ({"by": "block.rnn.hidden_size"}, "compare.by: 'block.rnn.hidden_size' names no categorical"),
    ({"by": "nonsense"}, "compare.by: 'nonsense' names no categorical"),
    ({"baseline": "lstm"}, "compare.baseline: 'lstm' is not an arm"),
    ({"seeds": 1}, "compare.seeds: 1 is too few"),
    ({"seeds": 0}, "compare.seeds: 0 is too few"),
    ({"trials_per_arm": 0}, "compare.trials_per_arm"),
    ({"seed": 3}, "compare.seed: unknown key"),
])
def test_bad_compare_sections(compare, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(".", r"\.")):
        study(compare)


def test_first_objective_needs_a_test_value():
    with pytest.raises(SpecError, match="has no test value"):
        study(objectives={"device_seconds": "minimize"})


@pytest.mark.parametrize("compare", [{"by": "block.rnn.hidden_size"}, {"baseline": "lstm"}, {"seeds": 1}])
@pytest.mark.parametrize("command", ["validate", "compare"])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, compare, command):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "compare": compare}))
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "compare." in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_arm_study_fixes_the_arm_and_keeps_the_shared_parameters():
    s = study({"trials_per_arm": 3})
    arm = s.compare.arms[1]
    sub = arm_study_file(s, arm)
    assert sub.name == "cmp.heavy_ball" and sub.study["n_trials"] == 3 and sub.compare is None
    rule = next(n for n in walk(sub.space.nodes) if n.name == "block.rnn.rule")
    assert rule.values == ("heavy_ball",)
    names = sub.space.names(searched=True)
    assert {"block.rnn.cell", "train.lr", "block.rnn.rule.heavy_ball.mu"} <= set(names)
    assert "block.rnn.rule.adam.mu" not in sub.space.names()
    assert arm_study_file(s, arm) == sub  # derived the same way on every run (resume finds the same study)
    assert sub.study["sampler"] == s.study["sampler"] and sub.study["pruner"] == s.study["pruner"]


def test_restrict_leaves_other_choices_alone():
    tree = (Choice("a", ("x", "y"), ((Choice("b", (1, 2), ((), ())),), ())),)
    out = restrict(tree, {"b": 2})
    assert out[0].values == ("x", "y") and out[0].branches[0][0].values == (2,)


def test_heavy_ball_control_is_mu_0_at_s_over_1_minus_mu():
    config = {"block": "rnn", "block.rnn.rule": "heavy_ball", "block.rnn.rule.heavy_ball.mu": 0.7,
              "block.rnn.rule.heavy_ball.s": 0.45, "train.lr": 0.01}
    control, text = control_config(config)
    assert control == {**config, "block.rnn.rule.heavy_ball.mu": 0.0, "block.rnn.rule.heavy_ball.s": 0.45 / (1 - 0.7)}
    assert text == "heavy_ball mu=0 s=1.5"


def test_adam_control_is_rmsprop_at_s_over_1_minus_mu_and_attention_adam_with_mu_0():
    config = {"block": "rnn", "block.rnn.rule": "adam", "block.rnn.rule.adam.mu": 0.6, "block.rnn.rule.adam.s": 0.6,
              "block.rnn.rule.adam.beta": 0.99, "block.rnn.rule.adam.eps": 1e-8, "train.lr": 0.01}
    control, _ = control_config(config)
    assert control == {"block": "rnn", "block.rnn.rule": "rmsprop", "block.rnn.rule.rmsprop.s": 0.6 / (1 - 0.6),
                       "block.rnn.rule.rmsprop.beta": 0.99, "block.rnn.rule.rmsprop.eps": 1e-8, "train.lr": 0.01}
    key = "block.attention.kind.linear.rule"
    config = {"block": "attention", "block.attention.kind": "linear", key: "adam", f"{key}.adam.mu": 0.5,
              f"{key}.adam.s": 0.3, f"{key}.adam.beta": 0.999, f"{key}.adam.eps": 1e-16}
    control, _ = control_config(config)  # attention has no rmsprop rule: adam with mu = 0 is the same update
    assert control == {**config, f"{key}.adam.mu": 0.0, f"{key}.adam.s": 0.3 / (1 - 0.5)}
    key = "block.attention.kind.linear.rule"
    hb = {"block": "attention", key: "heavy_ball", f"{key}.heavy_ball.mu": 0.6, f"{key}.heavy_ball.s": 0.6}
    assert control_config(hb)[0] == {**hb, f"{key}.heavy_ball.mu": 0.0, f"{key}.heavy_ball.s": 0.6 / (1 - 0.6)}


def test_nesterov_momentum_control_keeps_its_steady_state_gain():
    key = "block.rnn.rule"
    config = {"block": "rnn", key: "nesterov_momentum", f"{key}.nesterov_momentum.mu": 0.9,
              f"{key}.nesterov_momentum.s": 0.2}
    control, _ = control_config(config)
    assert control == {**config, f"{key}.nesterov_momentum.mu": 0.0, f"{key}.nesterov_momentum.s": 0.2 / (1 - 0.9)}


@pytest.mark.parametrize("config, reason", [
    ({"block": "rnn", "block.rnn.rule": "plain"}, "plain has no momentum"),
    ({"block": "rnn", "block.rnn.rule": "nesterov_restart", "block.rnn.rule.nesterov_restart.s": 0.6},
     "nesterov_restart has no mu = 0 control"),
    ({"block": "ode", "block.ode.rule": "heavy_ball", "block.ode.rule.heavy_ball.gamma_init": 0.05},
     "no mu = 0 control"),
    ({"block": "rnn", "block.rnn.rule": "heavy_ball", "block.rnn.rule.heavy_ball.mu": 0.0,
      "block.rnn.rule.heavy_ball.s": 0.6}, "mu = 0 already"),
])
def test_rules_without_a_control_say_why(config, reason):
    control, text = control_config(config)
    assert control is None and reason in text


def test_confirm_seeds_avoid_the_tuning_seeds_and_are_the_same_for_every_arm():
    first = confirm_seeds(set(), 3, 0)
    used = {first[0], first[2]}
    seeds = confirm_seeds(used, 3, 0)
    assert len(set(seeds)) == 3 and not used & set(seeds)
    assert confirm_seeds(used, 3, 0) == seeds


def test_seeded_study_trains_one_config_per_seed():
    s = study()
    config = {"block": "rnn", "block.rnn.cell": "lstm", "block.rnn.rule": "plain", "train.lr": 0.01,
              "train.seed": None}
    seeded = seeded_study_file(s, "cmp.plain.confirm", config, [5, 6])
    assert seeded.space.names(searched=True) == ["train.seed"]
    assert seeded.study["n_trials"] == 2 and seeded.study["pruner"] is None
