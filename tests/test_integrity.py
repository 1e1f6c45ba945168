"""Results you can trust: distinct samples across workers, runs and hosts; honest counts; resume as a contract;
signals and dead workers; the objective is the validation metric; multi-objective pruning really prunes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from momsearch.cli import main
from momsearch.search import runs
from momsearch.search.records import Records
from momsearch.search.samplers import worker_seed
from momsearch.search.storage import default_url

State = optuna.trial.TrialState

POINTS_TASK = '''
import os
import numpy as np

def make(n=64, seed=0, flip_test=False):
    """Sign of a sum. MOMSEARCH_TEST_N sets the training split's size (and so a trial's length). flip_test: the
    test split is the validation split with every label flipped, so test accuracy = 1 - validation accuracy."""
    n = int(os.environ.get("MOMSEARCH_TEST_N", n))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 66, 6, 2)).astype("float32")
    y = (x[:, :, 0].sum(1) > 0).astype("int64")
    x_val, y_val = x[n:n + 33], y[n:n + 33]
    x_test, y_test = (x_val, 1 - y_val) if flip_test else (x[n + 33:], y[n + 33:])
    return {"x_train": x[:n], "y_train": y[:n], "x_val": x_val, "y_val": y_val, "x_test": x_test, "y_test": y_test}
'''

# every configuration has a continuous parameter (train.lr), so two equal configurations can only come from
# two samplers drawing the same stream
SPACE = """
space:
  block:
    rnn:
      cell: [lstm, gru]
      hidden_size: 4
      rule:
        plain: {}
        heavy_ball: {mu: {low: 0.0, high: 0.9}, s: {low: 0.2, high: 1.0}}
  train: {lr: {low: 0.0001, high: 0.1, log: true}}
"""
SEEDED = "{name: RandomSampler, seed: 1}"


def write_study(tmp_path: Path, name: str, study: str = "{n_trials: 3, pruner: none}",
                objectives: str = "{accuracy: maximize}", train: str = "{epochs: 1, batch_size: 32}",
                space: str = SPACE, task: str = "{module: 'integrity_task:make'}") -> Path:
    (tmp_path / "integrity_task.py").write_text(POINTS_TASK)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\ntask: {task}\nobjectives: {objectives}\n{textwrap.dedent(space)}"
                    f"train: {train}\nstudy: {study}\n")
    return path


def env(tmp_path: Path, n: int = 64) -> dict:
    return {**os.environ, "MOMSEARCH_TEST_N": str(n),
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def spawn(path: Path, tmp_path: Path, *extra: str, n: int = 64, out: str = "out") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "momsearch", "run", str(path), "--out", str(tmp_path / out),
                             "--no-progress", *extra], env=env(tmp_path, n), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_here(path: Path, tmp_path: Path, *extra: str, out: str = "out") -> int:
    return main(["run", str(path), "--out", str(tmp_path / out), "--no-progress", *extra])


def trials_of(name: str, storage: str) -> list:
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def configurations(trials) -> list[str]:
    return [json.dumps(t.params, sort_keys=True) for t in trials]


def wait_until(predicate, proc: subprocess.Popen, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if predicate():
                return
        except (KeyError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
            pass  # no study yet, or its tables are being created
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def running(name: str, storage: str) -> int:
    return len(optuna.load_study(study_name=name, storage=storage).get_trials(states=(State.RUNNING,)))


def children(pid: int) -> list[int]:
    """The worker processes of run ``pid``: its children (from /proc), other than a multiprocessing helper."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"multiprocessing" not in cmdline:
                found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------- distinct samples


def test_worker_seeds_differ_per_run_and_worker_and_the_first_is_the_users():
    assert worker_seed(7, 0, 0) == 7  # a sole worker on a fresh study samples what Sampler(seed=7) samples
    seeds = {worker_seed(7, run, index) for run in range(4) for index in range(8)}
    assert len(seeds) == 32
    assert worker_seed(7, 1, 0) != worker_seed(8, 1, 0)  # the user's seed still matters


def test_claimed_run_numbers_are_distinct_and_start_at_zero(tmp_path):
    storage = optuna.storages.RDBStorage(default_url(tmp_path))
    study = optuna.create_study(study_name="claims", storage=storage)
    assert [runs.claim_run(storage, study._study_id) for _ in range(3)] == [0, 1, 2]
    other = optuna.create_study(study_name="other", storage=storage)
    assert runs.claim_run(storage, other._study_id) == 0  # numbered per study
    assert runs.claim_run(optuna.storages.InMemoryStorage(), 0) >= 2**64  # no unique key: a random id


def test_seeded_resume_continues_instead_of_replaying_and_a_fresh_run_reproduces(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "resume", f"{{n_trials: 3, pruner: none, sampler: {SEEDED}}}")
    assert run_here(path, tmp_path) == 0
    assert run_here(path, tmp_path, "--n-trials", "6") == 0
    trials = trials_of("resume", default_url(tmp_path / "out"))
    assert len(trials) == 6 and len(set(configurations(trials))) == 6
    assert run_here(path, tmp_path, out="again") == 0  # a sole worker on a fresh study: the same samples
    assert configurations(trials_of("resume", default_url(tmp_path / "again"))) == configurations(trials[:3])


@pytest.mark.slow
def test_seeded_two_jobs_draw_distinct_configurations(tmp_path):
    path = write_study(tmp_path, "jobs", f"{{n_trials: 8, pruner: none, sampler: {SEEDED}}}")
    proc = spawn(path, tmp_path, "--jobs", "2")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = trials_of("jobs", default_url(tmp_path / "out"))
    assert len(trials) == 8 and all(t.state == State.COMPLETE for t in trials)  # one run: exactly the target
    assert len(set(configurations(trials))) == 8


def two_runs_at_once(tmp_path: Path, path: Path, name: str, storage: str, target: int) -> list:
    # two hosts sharing one study share its artifact store too (the README's scale-out recipe)
    procs = [spawn(path, tmp_path, "--storage", storage, "--artifacts", str(tmp_path / "artifacts"), out=f"out{i}")
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    trials = trials_of(name, storage)
    assert target <= len(trials) <= target + 1  # two racing runs overshoot by at most one
    assert all(t.state == State.COMPLETE for t in trials)
    assert len(set(configurations(trials))) == len(trials)
    return trials


@pytest.mark.slow
def test_two_runs_at_once_on_sqlite_draw_distinct_configurations(tmp_path):
    path = write_study(tmp_path, "twice", f"{{n_trials: 8, pruner: none, sampler: {SEEDED}}}")
    (tmp_path / "shared").mkdir()
    two_runs_at_once(tmp_path, path, "twice", default_url(tmp_path / "shared"), 8)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_runs_at_once_on_postgres_draw_distinct_configurations(tmp_path, postgres_url):
    path = write_study(tmp_path, "twice_pg", f"{{n_trials: 8, pruner: none, sampler: {SEEDED}}}")
    two_runs_at_once(tmp_path, path, "twice_pg", postgres_url, 8)


@pytest.mark.slow
@pytest.mark.postgres
def test_seeded_two_jobs_on_postgres_draw_distinct_configurations(tmp_path, postgres_url):
    path = write_study(tmp_path, "jobs_pg", f"{{n_trials: 6, pruner: none, sampler: {SEEDED}}}")
    proc = spawn(path, tmp_path, "--jobs", "2", "--storage", postgres_url)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = trials_of("jobs_pg", postgres_url)
    assert len(trials) == 6 and len(set(configurations(trials))) == 6


# ---------------------------------------------------------------- honest counting


def test_counted_is_finished_with_a_result_plus_alive():
    def trial(state, **params):
        frozen = optuna.trial.create_trial(state=State.COMPLETE, value=1.0, params=params,
                                           distributions={k: optuna.distributions.FloatDistribution(0, 1)
                                                          for k in params})
        frozen.state = state
        return frozen

    trials = [trial(State.COMPLETE, x=0.1), trial(State.PRUNED, x=0.2), trial(State.FAIL, x=0.3),
              trial(State.RUNNING), trial(State.WAITING), trial(State.COMPLETE, x=0.1)]
    assert runs.counted(trials) == 5  # the FAIL one does not use up the budget
    assert runs.counted(trials, grid=True) == 4  # a repeated grid point counts once


def test_the_storage_count_agrees_with_the_trial_list(tmp_path):
    storage = optuna.storages.RDBStorage(default_url(tmp_path))
    study = optuna.create_study(study_name="count", storage=storage)
    points = [{"c": "a", "x": 1}, {"c": "b", "x": 1}, {"c": "a", "x": 1}, {"c": "a", "x": 2}]
    for state, point in zip([State.COMPLETE, State.PRUNED, State.COMPLETE, State.FAIL], points, strict=True):
        study.enqueue_trial(point)
        trial = study.ask()
        trial.suggest_categorical("c", ["a", "b"]), trial.suggest_int("x", 0, 3)
        study.tell(trial, 1.0 if state == State.COMPLETE else None, state=state)
    study.ask()  # running, no parameters yet
    study.enqueue_trial({"c": "b", "x": 3})  # waiting
    for grid, expected in ((False, 5), (True, 4)):
        assert runs.tally(storage, study._study_id, grid) == (expected, 1)
        assert runs.counted(study.get_trials(), grid) == expected


def test_failed_trials_do_not_use_up_the_budget(tmp_path, monkeypatch):
    from momsearch.model import Model

    monkeypatch.syspath_prepend(str(tmp_path))
    calls = {"n": 0}
    real_forward = Model.forward

    def forward(self, *args, **kwargs):  # the first two trials fail at their first batch
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("flaky device")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(Model, "forward", forward)
    path = write_study(tmp_path, "budget", "{n_trials: 3, pruner: none, max_fail_fraction: 0.5}")
    assert run_here(path, tmp_path) == 0
    states = [t.state for t in trials_of("budget", default_url(tmp_path / "out"))]
    assert states == [State.FAIL, State.FAIL, State.COMPLETE, State.COMPLETE, State.COMPLETE]


def test_a_run_that_completes_nothing_exits_non_zero(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken.py").write_text(textwrap.dedent("""
        from pathlib import Path
        import integrity_task

        def make(**kw):
            if Path(__file__).with_name("offline").exists():
                raise RuntimeError("no data today")
            return integrity_task.make(**kw)
        """))
    (tmp_path / "offline").touch()
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "broken", "{n_trials: 2, pruner: none, max_fail_fraction: 1.0}",
                       task="{module: 'broken:make'}")
    assert run_here(path, tmp_path) == 2
    err = capsys.readouterr().err
    assert "no trial completed" in err and "(2x): RuntimeError: no data today" in err and err.count("\n") == 1
    states = [t.state for t in trials_of("broken", default_url(tmp_path / "out"))]
    assert states == [State.FAIL, State.FAIL]  # failures are bounded even with max_fail_fraction: 1

    (tmp_path / "offline").unlink()  # the task is fixed
    assert run_here(path, tmp_path) == 0  # a re-run fills the budget the failures left
    states = [t.state for t in trials_of("broken", default_url(tmp_path / "out"))]
    assert states.count(State.COMPLETE) == 2


def test_a_queued_rerun_is_run_even_when_the_target_is_reached(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "queued", "{n_trials: 2, pruner: none}")
    assert run_here(path, tmp_path, "--n-trials", "1") == 0
    study = optuna.load_study(study_name="queued", storage=default_url(tmp_path / "out"))
    study.enqueue_trial(study.trials[0].params)  # what Optuna's retry of a killed worker's trial queues
    assert run_here(path, tmp_path) == 0
    assert [t.state for t in study.get_trials()] == [State.COMPLETE, State.COMPLETE]
    assert study.trials[1].params == study.trials[0].params


def test_final_line_names_a_trial_left_running_by_others(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "others", "{n_trials: 2, pruner: none}")
    assert run_here(path, tmp_path, "--n-trials", "1") == 0
    study = optuna.load_study(study_name="others", storage=default_url(tmp_path / "out"))
    study.ask()  # another worker's trial, alive now
    capsys.readouterr()
    assert run_here(path, tmp_path) == 0  # 1 complete + 1 alive: the target of 2 is reached
    lines = capsys.readouterr().out.strip().splitlines()
    assert "still RUNNING" in lines[-1] and "trial 1" in lines[-1]
    assert len(study.get_trials()) == 2


# ---------------------------------------------------------------- resume is a contract

EDITS = {
    "objective": ("objectives: {accuracy: maximize}", "objectives: {test_accuracy: maximize}",
                  "objectives: {accuracy: maximize} in the study, {test_accuracy: maximize} in this file"),
    "epochs": ("train: {epochs: 1,", "train: {epochs: 2,", "train.epochs: 1 in the study, 2 in this file"),
    "choice": ("cell: [lstm, gru]", "cell: [lstm, tanh]",
               "block.rnn.cell: one of lstm, gru in the study, one of lstm, tanh in this file"),
    "narrowed": ("mu: {low: 0.0, high: 0.9}", "mu: {low: 0.0, high: 0.5}",
                 "block.rnn.rule.heavy_ball.mu: float in [0.0, 0.9] in the study, float in [0.0, 0.5] in this"),
    "added": ("hidden_size: 4", "hidden_size: 4\n      dropout: {low: 0.0, high: 0.5}",
              "block.rnn.dropout: 0.0 in the study, float in [0.0, 0.5] in this file"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_resume_with_an_edited_file_is_refused_and_the_study_unchanged(tmp_path, monkeypatch, capsys, edit):
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "edited", "{n_trials: 1, pruner: none}")
    assert run_here(path, tmp_path) == 0
    storage = default_url(tmp_path / "out")
    before = optuna.load_study(study_name="edited", storage=storage)
    attrs, system = before.user_attrs, before._storage.get_study_system_attrs(before._study_id)
    old, new, message = EDITS[edit]
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    capsys.readouterr()
    assert run_here(path, tmp_path, "--n-trials", "3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert "new `name`" in err and "--out/--storage" in err
    after = optuna.load_study(study_name="edited", storage=storage)
    assert len(after.get_trials()) == 1
    assert after.user_attrs == attrs and after._storage.get_study_system_attrs(after._study_id) == system


def test_a_widened_range_resumes_and_then_the_narrow_file_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "wide", "{n_trials: 1, pruner: none}")
    narrow = path.read_text()
    assert run_here(path, tmp_path) == 0
    path.write_text(narrow.replace("lr: {low: 0.0001, high: 0.1", "lr: {low: 0.00001, high: 0.2"))
    assert run_here(path, tmp_path, "--n-trials", "2") == 0
    study = optuna.load_study(study_name="wide", storage=default_url(tmp_path / "out"))
    assert len(study.get_trials()) == 2
    assert dict(study.user_attrs["momsearch"]["space"])["train.lr"]["range"] == [0.00001, 0.2]
    path.write_text(narrow)  # the study now holds trials the old range does not cover
    capsys.readouterr()
    assert run_here(path, tmp_path, "--n-trials", "3") == 2
    assert "train.lr: float in [1e-05, 0.2] (log) in the study" in capsys.readouterr().err


# ---------------------------------------------------------------- signals and dead workers


@pytest.mark.slow
def test_sigterm_to_the_parent_stops_every_worker_and_fails_their_trials(tmp_path):
    path = write_study(tmp_path, "term", "{n_trials: 4, pruner: none}")
    storage = default_url(tmp_path / "out")
    proc = spawn(path, tmp_path, "--jobs", "2", n=400_000)
    wait_until(lambda: running("term", storage) == 2, proc, what="two running trials")
    workers = children(proc.pid)
    assert len(workers) >= 2, workers
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)
    trials = trials_of("term", storage)
    assert [t.state for t in trials] == [State.FAIL, State.FAIL]
    assert all("interrupted" in t.user_attrs["status_reason"] for t in trials)


@pytest.mark.slow
def test_a_killed_worker_has_its_trial_failed_with_the_reason_and_the_others_finish(tmp_path):
    path = write_study(tmp_path, "killed", "{n_trials: 2, pruner: none}")
    storage = default_url(tmp_path / "out")
    proc = spawn(path, tmp_path, "--jobs", "2", n=20_000)  # trials of seconds: the victim dies inside one
    wait_until(lambda: running("killed", storage) == 2, proc, what="two running trials")
    time.sleep(0.2)
    victim = children(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert re.search(r"worker \d died: killed by signal 9 \(SIGKILL\); its trial \d+ is marked FAIL", err), err
    trials = trials_of("killed", storage)
    failed = [t for t in trials if t.state == State.FAIL]
    assert len(failed) == 1
    assert re.fullmatch(r"worker \d died: killed by signal 9 \(SIGKILL\)", failed[0].user_attrs["status_reason"])
    assert sum(t.state == State.COMPLETE for t in trials) == 2  # the other worker finished the budget
    assert not [t for t in trials if t.state == State.RUNNING]


@pytest.mark.slow
def test_when_every_worker_dies_the_run_exits_non_zero_saying_so(tmp_path):
    (tmp_path / "exits.py").write_text("import os\n\ndef make(**kw):\n    os._exit(3)\n")
    path = write_study(tmp_path, "exits", "{n_trials: 4, pruner: none}", task="{module: 'exits:make'}")
    proc = spawn(path, tmp_path, "--jobs", "2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert "no trial completed" in last and "died: exited with code 3" in last, err
    trials = trials_of("exits", default_url(tmp_path / "out"))
    assert len(trials) == 2 and all(t.state == State.FAIL for t in trials)
    assert sorted(t.user_attrs["status_reason"] for t in trials) == [
        "worker 0 died: exited with code 3", "worker 1 died: exited with code 3"]


# ---------------------------------------------------------------- what a trial's value is


def test_each_trials_objective_value_is_the_validation_metric(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "val", "{n_trials: 3, pruner: none}", train="{epochs: 2, batch_size: 32}",
                       task="{module: 'integrity_task:make', flip_test: true}")
    assert run_here(path, tmp_path) == 0
    records = Records(optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "out" / "artifacts")))
    for t in trials_of("val", default_url(tmp_path / "out")):
        best_val = max(epoch["accuracy"] for epoch in records.history(t))  # per-epoch validation values
        assert t.value == best_val == t.user_attrs["accuracy"]
        # the test split holds the validation inputs with flipped labels: its accuracy is 1 - validation's
        assert t.user_attrs["test_accuracy"] == pytest.approx(1 - t.value)
        assert t.value != pytest.approx(t.user_attrs["test_accuracy"])  # 33 points: never 0.5


def test_multi_objective_study_prunes_with_the_median_rule(tmp_path, monkeypatch):
    """End to end: a trial whose learning rate is too small to learn in 3 epochs falls below the completed
    trials' median at epoch 1 and is pruned (the sampler's seed makes the order of trials fixed)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    space = SPACE.replace("train: {lr: {low: 0.0001, high: 0.1, log: true}}", "train: {lr: [0.05, 0.000001]}")
    study_section = ("{n_trials: 6, sampler: {name: RandomSampler, seed: 3}, "
                     "pruner: {name: MedianPruner, n_startup_trials: 1, n_warmup_steps: 1}}")
    path = write_study(tmp_path, "mo", study_section, objectives="{accuracy: maximize, params: minimize}",
                       train="{epochs: 3, batch_size: 16}", space=space)
    assert run_here(path, tmp_path) == 0
    study = optuna.load_study(study_name="mo", storage=default_url(tmp_path / "out"))
    assert len(study.directions) == 2
    trials = study.get_trials()
    pruned = [t for t in trials if t.state == State.PRUNED]
    assert pruned, [(t.state, t.params) for t in trials]
    assert sum(t.state == State.COMPLETE for t in trials) >= 1
