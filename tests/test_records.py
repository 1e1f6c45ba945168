"""Trial records sized for clients: scalar metrics as user attributes, configuration and history in one JSON file
per trial in the artifact store; the median rule and export read them there; ``momsearch.export(study)`` finds
the artifact store of a copied study like export by name does."""

from __future__ import annotations

import io
import json
import shutil
import textwrap
import uuid

import optuna
import pytest
from tiny_study import TINY_SPACE

import momsearch
from momsearch.cli import main
from momsearch.search.pruning import MedianRule
from momsearch.search.records import Records
from momsearch.search.storage import default_url


def stored(store, config: dict, history: list[dict]) -> str:
    artifact_id = f"record_{uuid.uuid4().hex}.json"
    store.write(artifact_id, io.BytesIO(json.dumps({"config": config, "history": history}).encode()))
    return artifact_id


def test_records_read_the_artifact_then_fall_back_to_user_attributes(tmp_path):
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path))
    history = [{"epoch": 1, "accuracy": 0.5, "loss": 1.0, "train_loss": 1.2}]
    new = optuna.trial.create_trial(value=0.5, user_attrs={"record_artifact": stored(store, {"block": "rnn"}, history)})
    old = optuna.trial.create_trial(value=0.5, user_attrs={"config": {"block": "ode"}, "history": history[:0]})
    lost = optuna.trial.create_trial(value=0.5, user_attrs={"record_artifact": "record_missing.json"})
    records = Records(store)
    assert records.config(new) == {"block": "rnn"} and records.history(new) == history
    assert records.config(old) == {"block": "ode"} and records.history(old) == []
    assert records.config(lost) is None and records.history(lost) == []
    (tmp_path / new.user_attrs["record_artifact"]).unlink()
    assert records.history(new) == history  # read once, then cached


def test_multi_objective_median_rule_reads_histories_from_records(tmp_path):
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path))
    completed = [optuna.trial.create_trial(values=[acc, 1.0], user_attrs={
        "record_artifact": stored(store, {}, [{"epoch": 1, "accuracy": acc}, {"epoch": 2, "accuracy": acc + 0.1}])})
        for acc in (0.4, 0.6, 0.8)]

    class Study:
        def get_trials(self, deepcopy, states):
            return completed

    class Trial:
        study = Study()

    rule = MedianRule(Trial(), "accuracy", "maximize", warmup=0, startup=3, history=Records(store).history)
    rule(1, {"accuracy": 0.6})  # the median at epoch 1 is 0.6: not worse
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 2 by the median rule on accuracy"):
        rule(2, {"accuracy": 0.65})  # the median at epoch 2 is 0.7


@pytest.mark.slow
def test_export_of_a_copied_study_object_finds_its_artifacts(tmp_path, monkeypatch):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\ntask: seq_digits\nobjectives: {accuracy: maximize}\n" + textwrap.dedent(TINY_SPACE)
                    + "study: {n_trials: 1}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "first"), "--no-progress"]) == 0
    # the user copies the study elsewhere and moves the run directory: the recorded artifact_dir is gone
    copy_url = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(from_study_name="tiny", from_storage=default_url(tmp_path / "first"), to_storage=copy_url)
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    shutil.move(tmp_path / "first", work / "runs" / "tiny")
    copied = optuna.load_study(study_name="tiny", storage=copy_url)
    monkeypatch.chdir(work)
    [out] = momsearch.export(copied, out=tmp_path / "best")  # runs/<name>/artifacts, as export by name
    spec = (out / "spec.yaml").read_text()
    assert "block.rnn.cell" in spec and (out / "weights.pt").stat().st_size > 0
    monkeypatch.chdir(tmp_path)
    [again] = momsearch.export(copied, out=tmp_path / "again", runs=work / "runs" / "tiny")
    assert (again / "weights.pt").read_bytes() == (out / "weights.pt").read_bytes()
