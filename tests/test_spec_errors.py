"""Malformed spaces and study files: each is a SpecError whose message starts with the key path."""

import pytest

from momsearch.errors import ConfigError, SpecError
from momsearch.spec import load_space, load_study_file

STUDY_HEAD = "name: s\ntask: seq_digits\nobjectives: {accuracy: maximize}\n"

# (id, space file text, the message starts with, and contains)
SPACE_CASES = [
    ("unknown top key", "block: rnn\ntrian: {}", "space.trian: unknown key", "did you mean 'train'"),
    ("missing block", "train: {lr: 0.1}", "space: missing key 'block'", "rnn, ode, attention"),
    ("unknown kind", "block: rnm", "space.block: unknown block kind 'rnm'", "did you mean 'rnn'"),
    ("unknown kind in list", "block: [rnn, odd]", "space.block: unknown block kind 'odd'", "valid: rnn, ode"),
    ("empty kind list", "block: []", "space.block: empty list", ""),
    ("duplicate kind in list", "block: [rnn, rnn]", "space.block: duplicate block kind", ""),
    ("kind params not a mapping", "block: {rnn: 5}", "space.block.rnn: expected a mapping", ""),
    ("unknown block param", "block: {rnn: {hiden_size: 3}}", "space.block.rnn.hiden_size: unknown key",
     "did you mean 'hidden_size'"),
    ("unknown rule", "block: {rnn: {rule: heavyball}}", "space.block.rnn.rule: unknown rule", "'heavy_ball'"),
    ("ode-only rule under rnn", "block: {rnn: {rule: [plain, generalized_heavy_ball]}}",
     "space.block.rnn.rule: unknown rule", "valid: plain"),
    ("unknown rule param", "block: {rnn: {rule: {heavy_ball: {m: 0.5}}}}", "space.block.rnn.rule.heavy_ball.m: "
     "unknown key", "valid: mu, s"),
    ("rule list with a mapping", "block: {rnn: {rule: [plain, {adam: {}}]}}", "space.block.rnn.rule: expected rule "
     "names", "mapping rule -> parameters"),
    ("unknown range key", "block: {rnn: {hidden_size: {low: 1, hgh: 4}}}", "space.block.rnn.hidden_size.hgh: "
     "unknown key", "did you mean 'high'"),
    ("range without high", "block: {rnn: {hidden_size: {low: 1}}}", "space.block.rnn.hidden_size: a range needs",
     ""),
    ("low >= high", "block: {rnn: {rule: {adam: {beta: {low: 0.9, high: 0.5}}}}}",
     "space.block.rnn.rule.adam.beta: low must be < high", ""),
    ("low == high", "block: {rnn: {hidden_size: {low: 4, high: 4}}}", "space.block.rnn.hidden_size: low must be",
     ""),
    ("log with low <= 0", "block: {rnn: {rule: {heavy_ball: {mu: {low: 0.0, high: 0.9, log: true}}}}}",
     "space.block.rnn.rule.heavy_ball.mu.log: a log range needs low > 0", ""),
    ("log not a bool", "train: {lr: {low: 0.1, high: 1, log: yes please}}\nblock: rnn",
     "space.train.lr.log: expected true or false", ""),
    ("step does not divide", "block: {rnn: {rule: {heavy_ball: {mu: {low: 0.0, high: 0.9, step: 0.4}}}}}",
     "space.block.rnn.rule.heavy_ball.mu.step: step=0.4 does not divide", ""),
    ("int step does not divide", "block: {rnn: {hidden_size: {low: 32, high: 100, step: 32}}}",
     "space.block.rnn.hidden_size.step", "does not divide"),
    ("step with log", "train: {lr: {low: 0.001, high: 0.1, log: true, step: 0.001}}\nblock: rnn",
     "space.train.lr: step and log cannot be combined", ""),
    ("float bounds on an int", "block: {rnn: {hidden_size: {low: 1.5, high: 4}}}",
     "space.block.rnn.hidden_size.low: expected int", ""),
    ("range outside valid range", "block: {rnn: {rule: {heavy_ball: {mu: {low: 0, high: 1}}}}}",
     "space.block.rnn.rule.heavy_ball.mu.high: 1.0 is outside the valid range float in [0, 1)", ""),
    ("fixed value out of range", "block: {rnn: {rule: {heavy_ball: {mu: 1.5}}}}",
     "space.block.rnn.rule.heavy_ball.mu: 1.5 is outside the valid range", ""),
    ("list value out of range", "block: {rnn: {hidden_size: [32, 0]}}", "space.block.rnn.hidden_size[1]: 0 is "
     "outside", ""),
    ("empty choice list", "block: {rnn: {cell: []}}", "space.block.rnn.cell: empty list of choices", ""),
    ("duplicate choices", "block: {rnn: {hidden_size: [32, 32.0]}}", "space.block.rnn.hidden_size: duplicate", ""),
    ("unknown cell", "block: {rnn: {cell: [lstm, lsmt]}}", "space.block.rnn.cell[1]: unknown value 'lsmt'",
     "did you mean 'lstm'"),
    ("unknown cell branch", "block: {rnn: {cell: {lstm: {}, gruu: {}}}}", "space.block.rnn.cell.gruu: unknown "
     "value", "did you mean 'gru'"),
    ("wrong type", "block: {rnn: {hidden_size: many}}", "space.block.rnn.hidden_size: expected int", "'many'"),
    ("bool for a float", "block: {rnn: {dropout: true}}", "space.block.rnn.dropout: expected float", ""),
    ("mapping for a bool", "block: {attention: {causal: {low: 0, high: 1}}}", "space.block.attention.causal: a "
     "bool parameter takes a value", ""),
    ("softmax with heavy_ball", "block: {attention: {kind: softmax, rule: heavy_ball}}",
     "space.block.attention.rule: rule 'heavy_ball' is not allowed with kind='softmax'", "allowed: plain"),
    ("kind list with non-plain rules", "block: {attention: {kind: [softmax, linear], rule: [plain, adam]}}",
     "space.block.attention.rule: rule 'adam' is not allowed with kind='softmax'", "nest the rules under the kind"),
    ("nested rule under softmax", "block: {attention: {kind: {softmax: {rule: adam}, linear: {}}}}",
     "space.block.attention.kind.softmax.rule: rule 'adam' is not allowed", ""),
    ("parameter set twice on one path", "block: {rnn: {hidden_size: 8, cell: {lstm: {hidden_size: 16}}}}",
     "space.block.rnn.cell.lstm.hidden_size: already set by space.block.rnn.hidden_size", ""),
    ("rule set twice on one path", "block: {attention: {rule: plain, kind: {linear: {rule: plain}}}}",
     "space.block.attention.kind.linear.rule: already set by space.block.attention.rule", ""),
    ("unknown train setting", "block: rnn\ntrain: {learning_rate: 0.1}", "space.train.learning_rate: unknown key",
     ""),
    ("train range outside", "block: rnn\ntrain: {lr: {low: 0, high: 0.1}}", "space.train.lr.low: 0.0 is outside",
     ""),
    ("non-string key", "block: {rnn: {1: 2}}", "space.block.rnn: keys must be strings", ""),
    ("nested list of kinds", "block: [[rnn]]", "space.block: expected block kind names", ""),
    ("zero step", "block: {rnn: {dropout: {low: 0, high: 0.5, step: 0}}}", "space.block.rnn.dropout.step: 0.0 is "
     "outside", ""),
]


@pytest.mark.parametrize("text, start, contains", [c[1:] for c in SPACE_CASES], ids=[c[0] for c in SPACE_CASES])
def test_malformed_space(tmp_path, text, start, contains):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(start), message
    assert contains in message, message
    assert "\n" not in message


# (id, file text, the message contains); the YAML layer names the file and the line
YAML_CASES = [
    ("syntax error", "block:\n  rnn: {cell: [lstm, gru}\n", "line 2"),
    ("duplicate key", "block:\n  rnn:\n    cell: lstm\n    cell: gru\n", "line 4, column 5: duplicate key 'cell'"),
    ("duplicate top key", "block: rnn\nblock: ode\n", "line 2, column 1: duplicate key 'block'"),
    ("python tag", "block: !!python/object/apply:os.system [echo hi]\n", "line 1"),
    ("top level list", "- block\n- rnn\n", "the top level must be a mapping, got list"),
    ("empty file", "", "the top level must be a mapping, got an empty document"),
    ("tab indentation", "block:\n\trnn: {}\n", "line 2"),
]


@pytest.mark.parametrize("text, contains", [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_malformed_yaml(tmp_path, text, contains):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_space(path)
    assert str(info.value).startswith(str(path)), info.value
    assert contains in str(info.value)


def test_python_tag_names_the_tag_and_runs_nothing(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text(f"block: !!python/object/apply:os.system ['touch {tmp_path}/pwned']\n")
    with pytest.raises(SpecError, match="python/object/apply:os.system' is not allowed"):
        load_space(path)
    assert not (tmp_path / "pwned").exists()


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="nowhere.yaml: file not found"):
        load_space(tmp_path / "nowhere.yaml")


STUDY_CASES = [
    ("unknown top key", STUDY_HEAD + "space: {block: rnn}\nstudyy: {}", "studyy: unknown key"),
    ("missing name", "task: seq_digits\nobjectives: [accuracy]\nspace: {block: rnn}", "name: missing"),
    ("bad name", STUDY_HEAD.replace("name: s", "name: 'my study'") + "space: {block: rnn}", "name: 'my study'"),
    ("unknown task", "name: s\ntask: seq_digit\nobjectives: [accuracy]\nspace: {block: rnn}",
     "task.name: unknown task 'seq_digit'"),
    ("unknown task param", "name: s\ntask: {name: seq_digits, permute: true}\nobjectives: [accuracy]\n"
     "space: {block: rnn}", "task.permute: unknown key"),
    ("bad task param", "name: s\ntask: {name: copy, delay: 0}\nobjectives: [accuracy]\nspace: {block: rnn}",
     "task.delay: 0 is outside"),
    ("bad module", "name: s\ntask: {module: 'not a module'}\nobjectives: [accuracy]\nspace: {block: rnn}",
     "task.module: expected 'package.module:function'"),
    ("two task kinds", "name: s\ntask: {name: copy, npz: x.npz}\nobjectives: [accuracy]\nspace: {block: rnn}",
     "task: give exactly one of"),
    ("missing npz", "name: s\ntask: {npz: nothing.npz}\nobjectives: [accuracy]\nspace: {block: rnn}",
     "task.npz: "),
    ("unknown metric", STUDY_HEAD.replace("accuracy: maximize", "acuracy: maximize") + "space: {block: rnn}",
     "objectives.acuracy: unknown metric"),
    ("bad direction", STUDY_HEAD.replace("maximize", "maximise") + "space: {block: rnn}",
     "objectives.accuracy: unknown direction 'maximise'"),
    ("accuracy on an mse task", "name: s\ntask: adding\nobjectives: [accuracy]\nspace: {block: rnn}",
     "objectives[0]: task adding reports mse, not accuracy"),
    ("test_accuracy on an mse task", "name: s\ntask: adding\nobjectives: {test_accuracy: maximize}\n"
     "space: {block: rnn}", "objectives.test_accuracy: task adding reports mse"),
    ("empty objectives", "name: s\ntask: seq_digits\nobjectives: {}\nspace: {block: rnn}", "objectives: empty"),
    ("same key fixed and searched", STUDY_HEAD + "space: {block: rnn, train: {lr: [0.1, 0.2]}}\ntrain: {lr: 0.1}",
     "train.lr: also searched under space.train"),
    ("searched setting in fixed train", STUDY_HEAD + "space: {block: rnn}\ntrain: {epochs: [1, 2]}",
     "train.epochs: fixed settings only"),
    ("bad fixed train", STUDY_HEAD + "space: {block: rnn}\ntrain: {epochs: 0}", "train.epochs: 0 is outside"),
    ("n_trials 0", STUDY_HEAD + "space: {block: rnn}\nstudy: {n_trials: 0}", "study.n_trials: 0 is outside"),
    ("negative timeout", STUDY_HEAD + "space: {block: rnn}\nstudy: {timeout: -1}", "study.timeout: -1.0 is outside"),
    ("unknown study key", STUDY_HEAD + "space: {block: rnn}\nstudy: {n_trial: 3}", "study.n_trial: unknown key"),
    ("sampler without name", STUDY_HEAD + "space: {block: rnn}\nstudy: {sampler: {seed: 1}}",
     "study.sampler: expected a class name"),
    ("bad device", STUDY_HEAD + "space: {block: rnn}\nstudy: {device: gpu}", "study.device: 'gpu'"),
    ("max_fail_fraction > 1", STUDY_HEAD + "space: {block: rnn}\nstudy: {max_fail_fraction: 1.5}",
     "study.max_fail_fraction: 1.5 is outside"),
    ("prune_on unknown", STUDY_HEAD + "space: {block: rnn}\nstudy: {prune_on: acc}", "study.prune_on: unknown metric"),
    ("missing space file", STUDY_HEAD + "space: nothing.yaml", "space: "),
    ("self-referencing space", STUDY_HEAD + "space: study.yaml", "space: 'study.yaml' refers to the study file"),
    ("error inside the space", STUDY_HEAD + "space: {block: {rnn: {cell: lstn}}}", "space.block.rnn.cell: unknown"),
]


@pytest.mark.parametrize("text, start", [c[1:] for c in STUDY_CASES], ids=[c[0] for c in STUDY_CASES])
def test_malformed_study(tmp_path, text, start):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_study_file(path)
    assert str(info.value).startswith(start), info.value


def test_space_file_pointing_to_a_study_file(tmp_path):
    (tmp_path / "other.yaml").write_text(STUDY_HEAD + "space: {block: rnn}")
    (tmp_path / "study.yaml").write_text(STUDY_HEAD + "space: other.yaml")
    with pytest.raises(SpecError, match="^space: .*other.yaml is a study file"):
        load_study_file(tmp_path / "study.yaml")


def test_study_file_pickles_for_worker_processes(tmp_path):
    import pickle

    (tmp_path / "s.yaml").write_text(STUDY_HEAD + "space: {block: {rnn: {rule: [plain, adam]}}}")
    study = load_study_file(tmp_path / "s.yaml")
    assert pickle.loads(pickle.dumps(study)) == study


def test_spec_error_is_a_config_error():
    with pytest.raises(ConfigError):
        load_space({"block": "nope"})
    assert issubclass(SpecError, ValueError)


def test_at_least_thirty_malformed_cases():
    assert len(SPACE_CASES) + len(YAML_CASES) + len(STUDY_CASES) >= 30
