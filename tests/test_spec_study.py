"""Study files: task normalisation, objectives, fixed training, study defaults, space files by path."""

from pathlib import Path

import numpy as np
import pytest

from momsearch import catalog
from momsearch.spec import StudyFile, load_space, load_study_file
from momsearch.spec.settings import STUDY
from momsearch.spec.tree import walk

ROOT = Path(__file__).resolve().parents[1]


def write(path, text):
    path.write_text(text)
    return path


def test_minimal_study_gets_every_default(tmp_path):
    study = load_study_file(write(tmp_path / "s.yaml", "name: s\ntask: copy\nobjectives: [accuracy, params]\n"
                                                       "space: {block: rnn}\n"))
    assert isinstance(study, StudyFile) and study.path == tmp_path / "s.yaml"
    assert study.task == {"name": "copy", "params": {k: p.default for k, p in catalog.TASKS["copy"]["params"].items()}}
    assert study.objectives == {"accuracy": "maximize", "params": "minimize"}
    assert study.train == {}
    assert {k: study.study[k] for k in STUDY} == {k: p.default for k, p in STUDY.items()}
    assert study.study["sampler"] == {"name": "TPESampler", "multivariate": True, "group": True}
    assert study.study["pruner"] == {"name": "MedianPruner"}
    assert study.study["prune_on"] == "accuracy"


def test_full_study_is_normalised(tmp_path):
    text = """
name: full-1.0
task: {name: seq_digits, permuted: true}
objectives: {accuracy: maximize, device_seconds: minimize}
space: {block: {rnn: {rule: [plain, adam]}}, train: {lr: [1e-3, 1e-2]}}
train: {epochs: 3, batch_size: '32'}
study: {n_trials: 5, timeout: 1e3, storage: 'sqlite:///x.db', sampler: RandomSampler, pruner: none,
        prune_on: loss, device: 'cuda:1', jobs: 2}
"""
    study = load_study_file(write(tmp_path / "s.yaml", text))
    assert study.task == {"name": "seq_digits", "params": {"permuted": True, "seed": 0}}
    assert list(study.objectives) == ["accuracy", "device_seconds"]
    assert study.train == {"epochs": 3, "batch_size": 32}
    s = study.study
    assert (s["n_trials"], s["timeout"], s["storage"], s["device"], s["jobs"]) == (5, 1000.0, "sqlite:///x.db",
                                                                                     "cuda:1", 2)
    assert s["sampler"] == {"name": "RandomSampler"} and s["pruner"] is None and s["prune_on"] == "loss"
    # the fixed training settings are part of the space, so suggest() returns the complete configuration
    names = {node.name: node for node in walk(study.space.nodes)}
    assert names["train.epochs"].values == (3,) and names["train.batch_size"].values == (32,)


def test_user_tasks(tmp_path):
    head = "name: s\nobjectives: {mse: minimize}\nspace: {block: ode}\n"
    module = load_study_file(write(tmp_path / "m.yaml", head + "task: {module: 'my_pkg.tasks:make', n: 3}"))
    assert module.task == {"module": "my_pkg.tasks:make", "params": {"n": 3}}
    np.savez(tmp_path / "data.npz", x_train=np.zeros(1))
    npz = load_study_file(write(tmp_path / "n.yaml", head + "task: {npz: data.npz}"))
    assert npz.task == {"npz": str(tmp_path / "data.npz")}


def test_space_by_path_and_load_space_on_a_study_file(tmp_path):
    (tmp_path / "spaces").mkdir()
    write(tmp_path / "spaces" / "x.yaml", "block: {rnn: {rule: [plain, heavy_ball]}}\n")
    path = write(tmp_path / "s.yaml", "name: s\ntask: seq_digits\nobjectives: accuracy\n"
                                      "space: spaces/x.yaml\ntrain: {epochs: 2}\n")
    study = load_study_file(path)
    assert study.space.source == tmp_path / "spaces" / "x.yaml"
    assert study.space.names(searched=True) == ["block.rnn.rule"]
    space = load_space(path)
    assert space.names() == ["block", "block.rnn.rule", "train.epochs"]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "studies").glob("*.yaml")))
def test_shipped_studies_validate(name):
    study = load_study_file(ROOT / "studies" / name)
    assert study.objectives and study.space.names()
