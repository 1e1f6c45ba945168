"""Scale-out and fault tolerance: PostgreSQL workers, a killed worker, SIGTERM, runtime failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import torch

from momsearch.cli import main
from momsearch.search.records import Records

State = optuna.trial.TrialState

POINTS_TASK = '''
import os
import numpy as np

def make(n=64, seed=0, poison=False):
    """Sign of a sum; MOMSEARCH_TEST_N makes the training split (and so a trial) as long as a test needs."""
    n = int(os.environ.get("MOMSEARCH_TEST_N", n))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 64, 12, 2)).astype("float32")
    if poison:
        x[:] = np.nan
    y = (x[:, :, 0].sum(1) > 0).astype("int64")
    return {"x_train": x[:n], "y_train": y[:n], "x_val": x[n:n + 32], "y_val": y[n:n + 32],
            "x_test": x[n + 32:], "y_test": y[n + 32:]}
'''

SPACE = """
space:
  block:
    rnn:
      cell: gru
      hidden_size: 8
      rule:
        plain: {}
        heavy_ball: {mu: {low: 0.0, high: 0.9}, s: {low: 0.2, high: 1.0}}
"""


def write_study(tmp_path: Path, name: str, study: str, task: str = "{module: 'points_task:make'}",
                train: str = "{epochs: 1, batch_size: 32}") -> Path:
    (tmp_path / "points_task.py").write_text(POINTS_TASK)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\ntask: {task}\nobjectives: {{accuracy: maximize}}\n"
                    f"{textwrap.dedent(SPACE)}train: {train}\nstudy: {study}\n")
    return path


def spawn_run(path: Path, tmp_path: Path, *extra: str, n: int) -> subprocess.Popen:
    env = {**os.environ, "MOMSEARCH_TEST_N": str(n),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "momsearch", "run", str(path), "--out", str(tmp_path / "out"),
                             "--no-progress", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_running(storage, name: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
            time.sleep(0.3)
            continue
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            if study.get_trials(states=(State.RUNNING,)):
                return
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):
            pass  # no study yet, or the worker is still creating the tables
        time.sleep(0.3)
    raise AssertionError("no trial started")


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_on_postgres_finish_exactly_thirty(tmp_path, postgres_url):
    path = write_study(tmp_path, "pg30", "{n_trials: 30, pruner: none}", task="seq_digits",
                       train="{epochs: 1, batch_size: 64, max_batches: 2}")
    assert main(["run", str(path), "--storage", postgres_url, "--out", str(tmp_path / "out"),
                 "--jobs", "3", "--no-progress"]) == 0
    study = optuna.load_study(study_name="pg30", storage=postgres_url)
    trials = study.get_trials()
    assert len(trials) == 30
    assert sorted(t.number for t in trials) == list(range(30))
    assert all(t.state == State.COMPLETE for t in trials)
    records = Records(optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "out" / "artifacts")))
    for t in trials:
        assert {"accuracy", "device_seconds", "seed", "rule", "record_artifact"} <= set(t.user_attrs)
        assert (tmp_path / "out" / "artifacts" / records.weights(t)).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_killed_worker_trial_fails_and_is_retried_once(tmp_path, monkeypatch, request, backend):
    """Heartbeats are an RDB feature: SQLite has them too, so this runs where PostgreSQL is absent."""
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        (tmp_path / "db").mkdir()
        url = f"sqlite:///{tmp_path / 'db' / 'study.db'}"
    study_section = "{n_trials: 3, pruner: none, heartbeat_interval: 1, grace_period: 2}"
    path = write_study(tmp_path, "kill", study_section)
    proc = spawn_run(path, tmp_path, "--storage", url, n=400_000)
    wait_for_running(url, "kill", proc)
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(3)  # past the grace period: the next worker fails the stale trial and queues its re-run

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MOMSEARCH_TEST_N", "64")
    assert main(["run", str(path), "--storage", url, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    trials = optuna.load_study(study_name="kill", storage=url).get_trials()
    killed = trials[0]
    assert killed.state == State.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1
    assert retries[0].state == State.COMPLETE and retries[0].params == killed.params
    assert retries[0].user_attrs["seed"] == killed.user_attrs["seed"]
    fresh = [t for t in trials if "failed_trial" not in t.system_attrs]
    assert len(fresh) == 3 and not [t for t in trials if t.state in (State.RUNNING, State.WAITING)]


@pytest.mark.slow
def test_sigterm_marks_the_running_trial_and_resume_finishes(tmp_path, monkeypatch):
    path = write_study(tmp_path, "term", "{n_trials: 2, pruner: none}")
    proc = spawn_run(path, tmp_path, n=400_000)
    storage = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    wait_for_running(storage, "term", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    # 130 from the CLI; on a loaded machine the interpreter occasionally reports the interrupt as SIGINT
    assert proc.returncode in (130, -signal.SIGINT), err
    assert b"interrupted" in err
    trials = optuna.load_study(study_name="term", storage=storage).get_trials()
    assert [t.state for t in trials] == [State.FAIL]
    assert "interrupted" in trials[0].user_attrs["status_reason"]

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MOMSEARCH_TEST_N", "64")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    states = [t.state for t in optuna.load_study(study_name="term", storage=storage).get_trials()]
    assert states.count(State.COMPLETE) == 2 and State.RUNNING not in states  # the FAIL one is replaced


def test_non_finite_loss_fails_the_trial_with_a_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "nan", "{n_trials: 1, max_fail_fraction: 1.0}",
                       task="{module: 'points_task:make', poison: true}")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2  # nothing completed
    err = capsys.readouterr().err
    assert "no trial completed" in err and "non-finite" in err and err.count("\n") == 1
    trial = optuna.load_study(study_name="nan", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}").trials[0]
    assert trial.state == State.FAIL
    assert "non-finite" in trial.user_attrs["status_reason"]


def test_out_of_memory_fails_the_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    from momsearch.model import Model

    monkeypatch.syspath_prepend(str(tmp_path))
    calls = {"n": 0}
    real_forward = Model.forward

    def forward(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(Model, "forward", forward)
    path = write_study(tmp_path, "oom", "{n_trials: 3, pruner: none, max_fail_fraction: 0.5}")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    trials = optuna.load_study(study_name="oom", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}").trials
    assert [t.state for t in trials] == [State.FAIL, State.COMPLETE, State.COMPLETE, State.COMPLETE]
    assert "out of memory" in trials[0].user_attrs["status_reason"]


def test_nfe_budget_overflow_fails_the_trial_with_a_reason(tmp_path):
    path = tmp_path / "nfe.yaml"
    path.write_text(textwrap.dedent("""
        name: nfe
        task: {name: circles, n_train: 64}
        objectives: {accuracy: maximize}
        space: {block: {ode: {hidden_size: 8, max_nfe: 5}}}
        train: {epochs: 1, batch_size: 32}
        study: {n_trials: 1, max_fail_fraction: 1.0}
        """))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2  # nothing completed
    trial = optuna.load_study(study_name="nfe", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}").trials[0]
    assert trial.state == State.FAIL
    assert "NFE" in trial.user_attrs["status_reason"] or "nfe" in trial.user_attrs["status_reason"]
