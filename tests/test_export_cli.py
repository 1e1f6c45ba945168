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
    assert sorted(p.name for p in out.iterdir()) == ["cell.py", "spec.yaml", "weights.pt"]
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
    assert sorted(p.name for p in out.iterdir())[0].startswith("trial_") and len(list(out.iterdir())) == 2


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
