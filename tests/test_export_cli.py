"""End to end: a tiny study through ``momsearch run``, then ``momsearch export``: files, spec, isolated load,
the trial choices, ``--format pt2`` and every bad input (exit 2, one line, destination untouched)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import optuna
import pytest
import torch
import yaml
from tiny_study import TINY_SPACE

from momsearch.cli import main
from momsearch.search.exporting import MARKER
from momsearch.search.records import Records
from momsearch.search.storage import default_url

pytestmark = pytest.mark.slow

STUDY = "name: tiny\ntask: seq_digits\nobjectives: {accuracy: maximize}\n" + TINY_SPACE + "study: {n_trials: 3}\n"


ISOLATED_LOAD = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "momsearch":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Refuse())
try:
    import momsearch
    sys.exit("momsearch importable")
except ImportError:
    pass
import torch
sys.path.insert(0, sys.argv[1])
from cell import Model
model = Model()
model.load_state_dict(torch.load(sys.argv[1] + "/weights.pt", weights_only=True), strict=True)
print(tuple(model.eval()(torch.randn(2, 5, 1)).shape))
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished 3-trial study; returns (study file, runs directory, storage URL)."""
    root = tmp_path_factory.mktemp("study")
    path = root / "tiny.yaml"
    path.write_text(textwrap.dedent(STUDY))
    runs = root / "runs"
    assert main(["run", str(path), "--out", str(runs), "--no-progress"]) == 0
    return path, runs, default_url(runs)


def export(study, *args):
    path, runs, _ = study
    return main(["export", str(path), "--runs", str(runs), *args])


def test_export_best_writes_verified_files(study, tmp_path, capsys):
    out = tmp_path / "best"
    assert export(study, "--out", str(out)) == 0
    assert "verified without momsearch" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "cell.py", "spec.yaml", "weights.pt"]
    best = optuna.load_study(study_name="tiny", storage=study[2]).best_trial
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    assert spec["study"] == "tiny" and spec["trial"] == best.number
    store = optuna.artifacts.FileSystemArtifactStore(str(study[1] / "artifacts"))
    assert spec["config"] == Records(store).config(best)  # the configuration in the trial's record
    assert spec["resolved"]["block"]["kind"] == "rnn"
    assert spec["metrics"]["accuracy"] == best.user_attrs["accuracy"]
    assert set(spec["versions"]) == {"torch", "momsearch"}
    weights = torch.load(out / "weights.pt", weights_only=True)
    assert all(k.split(".")[0] in ("input_head", "block", "output_head") for k in weights)
    done = subprocess.run([sys.executable, "-I", "-c", ISOLATED_LOAD, str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(2, 10)"


def test_export_trial_pareto_force_and_pt2(study, tmp_path):
    out = tmp_path / "t0"
    assert export(study, "--trial", "0", "--out", str(out), "--format", "pt2") == 0
    assert yaml.safe_load((out / "spec.yaml").read_text())["trial"] == 0
    program = torch.export.load(out / "cell.pt2").module()
    assert program(torch.randn(3, 9, 1)).shape == (3, 10)
    assert export(study, "--pareto", "2", "--out", str(out), "--force") == 0
    names = sorted(p.name for p in out.iterdir() if p.name != MARKER)
    assert names[0].startswith("trial_") and len(names) == 2 and (out / MARKER).is_file()


def _fails(capsys, code, match):
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err


def test_bad_inputs_fail_in_one_line_and_touch_nothing(study, tmp_path, capsys):
    path, runs, url = study
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    _fails(capsys, export(study, "--out", str(taken)), "not empty")
    _fails(capsys, export(study, "--out", str(taken), "--force"), "no .momsearch-export marker")
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    fresh = tmp_path / "fresh"
    _fails(capsys, export(study, "--trial", "99", "--out", str(fresh)), "no such trial")
    failed = optuna.load_study(study_name="tiny", storage=url)
    failed.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    number = failed.get_trials()[-1].number
    _fails(capsys, export(study, "--trial", str(number), "--out", str(fresh)), "no stored weights")

    empty = optuna.create_study(study_name="empty", storage=url)
    empty.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    _fails(capsys, main(["export", "empty", "--runs", str(runs), "--out", str(fresh)]), "no completed trial")
    _fails(capsys, main(["export", "nope", "--runs", str(runs), "--out", str(fresh)]), "unknown study 'nope'")
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers


# --- destinations that --force must never replace, weights that are corrupt or replaced, copied studies ---


def _snapshot(root):
    """Every file under ``root`` with its bytes' hash: what must still be there, unchanged (SQLite files only
    by name: opening the study checkpoints its write-ahead log)."""
    import hashlib

    return {str(p.relative_to(root)): "db" if ".db" in p.name else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


@pytest.fixture
def workdir(study, tmp_path, monkeypatch):
    """A user's working directory: the study file, the study copied to runs/tiny/ (the default layout), an
    unrelated notes.txt; the current directory. Returns its path."""
    import shutil

    path, runs, _ = study
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(path, work / "tiny.yaml")
    shutil.copytree(runs, work / "runs" / "tiny")
    (work / "notes.txt").write_text("mine, not momsearch's")
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("out", ["$PWD", ".", "..", "runs/tiny", "runs", "runs/tiny/artifacts", "/"])
def test_force_never_replaces_the_working_directory_or_the_study(workdir, out, capsys):
    before = _snapshot(workdir.parent)
    target = str(workdir) if out == "$PWD" else out
    _fails(capsys, main(["export", "tiny.yaml", "--out", target, "--force"]), "out=")
    assert _snapshot(workdir.parent) == before
    assert [p.name for p in workdir.parent.iterdir() if p.name.startswith(".")] == []


def test_force_replaces_only_a_previous_export(workdir, capsys):
    assert main(["export", "tiny.yaml", "--out", "best"]) == 0  # the copied runs/tiny/ is self-contained
    assert (workdir / "best" / MARKER).is_file()
    assert main(["export", "tiny.yaml", "--trial", "0", "--out", "best", "--force"]) == 0
    assert yaml.safe_load((workdir / "best" / "spec.yaml").read_text())["trial"] == 0  # replaced
    (workdir / "best" / "keep.txt").write_text("added by the user")
    before = _snapshot(workdir)
    _fails(capsys, main(["export", "tiny.yaml", "--out", "best", "--force"]), "'keep.txt'")
    assert _snapshot(workdir) == before
    other = workdir / "other"
    other.mkdir()
    (other / "cell.py").write_text("# someone's own file, no marker")
    _fails(capsys, main(["export", "tiny.yaml", "--out", "other", "--force"]), "marker")
    assert (other / "cell.py").read_text() == "# someone's own file, no marker"
    capsys.readouterr()
    assert main(["export", "tiny.yaml", "--pareto", "2", "--out", "best2"]) == 0
    assert main(["export", "tiny.yaml", "--pareto", "2", "--out", "best2", "--force"]) == 0  # trial_<N>/ inside


def _best_artifact(workdir):
    """The best trial, its weights file and its record file (configuration, weights id and checksum)."""
    study = optuna.load_study(study_name="tiny", storage=default_url(workdir / "runs" / "tiny"))
    best, store = study.best_trial, workdir / "runs" / "tiny" / "artifacts"
    weights = Records(optuna.artifacts.FileSystemArtifactStore(str(store))).weights(best)
    return best, store / weights, store / best.user_attrs["record_artifact"]


class _Payload:
    """Unpickling this creates the file ``path``: a pickle payload that must never run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _payload_bytes(marker):
    import pickle

    return pickle.dumps({"output_head.weight": _Payload(marker)})


@pytest.mark.parametrize("damage", ["truncated", "empty", "random", "pickle", "pickle_in_zip", "pickle_rehashed"])
def test_corrupt_or_replaced_weights_are_one_line_and_never_unpickled(workdir, damage, capsys, tmp_path):
    import hashlib
    import os

    best, artifact, record_file = _best_artifact(workdir)
    marker = tmp_path / "payload_ran"
    good = artifact.read_bytes()
    if damage == "truncated":
        artifact.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        artifact.write_bytes(b"")
    elif damage == "random":
        artifact.write_bytes(os.urandom(len(good)))
    elif damage == "pickle":
        artifact.write_bytes(_payload_bytes(marker))
    else:  # a torch zip file whose pickle calls open(): torch.save of an object with __reduce__
        torch.save({"output_head.weight": _Payload(marker)}, artifact)
        assert not marker.exists()
        if damage == "pickle_rehashed":  # the attacker also rewrote the recorded checksum
            import json

            record = json.loads(record_file.read_text())
            assert record["weights_sha256"] == hashlib.sha256(good).hexdigest()
            record["weights_sha256"] = hashlib.sha256(artifact.read_bytes()).hexdigest()
            record_file.write_text(json.dumps(record))
    code = main(["export", "tiny.yaml", "--out", "best"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"trial {best.number}" in err and artifact.name in err
    assert "the file is corrupt or was replaced" in err
    assert "weights_only" not in err and "Traceback" not in err
    assert not marker.exists(), "the pickle payload ran"
    assert not (workdir / "best").exists()


def test_copied_study_is_self_contained_and_export_takes_artifacts(workdir, capsys, tmp_path):
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.move(workdir / "runs" / "tiny" / "artifacts", moved)
    _fails(capsys, main(["export", "tiny.yaml", "--out", "best"]), "--artifacts")
    assert main(["export", "tiny.yaml", "--out", "best", "--artifacts", str(moved)]) == 0
    copy = tmp_path / "copy"  # a copy of runs/tiny/ reads its own weights, not the original's
    shutil.move(moved, workdir / "runs" / "tiny" / "artifacts")
    shutil.copytree(workdir / "runs" / "tiny", copy)
    shutil.rmtree(workdir / "runs" / "tiny" / "artifacts")
    assert main(["export", "tiny", "--runs", str(copy), "--out", str(tmp_path / "from_copy")]) == 0


def test_resume_with_another_artifact_store_is_refused(workdir, capsys, tmp_path):
    storage = default_url(workdir / "runs" / "tiny")
    before = len(optuna.load_study(study_name="tiny", storage=storage).trials)
    code = main(["run", "tiny.yaml", "--n-trials", "4", "--artifacts", str(tmp_path / "other"), "--no-progress"])
    _fails(capsys, code, "keeps its weights in")
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == before
