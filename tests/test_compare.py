"""``momsearch compare`` end to end on a tiny task: equal budgets, confirmation seeds, controls, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy

from momsearch.cli import main

State = optuna.trial.TrialState

POINTS_TASK = '''
import os
import numpy as np

def make(n=64, seed=0):
    """Sign of a sum; MOMSEARCH_TEST_N makes the training split (and so a run) as long as a test needs."""
    n = int(os.environ.get("MOMSEARCH_TEST_N", n))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 64, 12, 2)).astype("float32")
    y = (x[:, :, 0].sum(1) > 0).astype("int64")
    return {"x_train": x[:n], "y_train": y[:n], "x_val": x[n:n + 32], "y_val": y[n:n + 32],
            "x_test": x[n + 32:], "y_test": y[n + 32:]}
'''

STUDY = """
name: {name}
task: {{module: 'compare_points_task:make'}}
objectives: {{accuracy: maximize}}
space:
  block:
    rnn:
      cell: gru
      hidden_size: 8
      rule:
        plain: {{}}
        heavy_ball: {{mu: {{low: 0.1, high: 0.9}}, s: {{low: 0.2, high: 1.0}}}}
        adam: {{mu: {{low: 0.1, high: 0.9}}, s: 0.5, beta: [0.9, 0.99]}}
        nesterov_restart: {{s: 0.5}}
  train:
    lr: {{low: 0.001, high: 0.03, log: true}}
train: {{epochs: 2, batch_size: 32}}
study: {{seed: 3, sampler: {{name: TPESampler, n_startup_trials: 2}}}}
compare: {{trials_per_arm: {trials}, seeds: {seeds}}}
"""
ARMS = ["plain", "heavy_ball", "adam", "nesterov_restart"]


def write(tmp_path: Path, name: str, trials: int = 3, seeds: int = 3) -> Path:
    (tmp_path / "compare_points_task.py").write_text(POINTS_TASK)
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, trials=trials, seeds=seeds))
    return path


def load(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def fresh(trials) -> list:
    return [t for t in trials if "failed_trial" not in t.system_attrs]


@pytest.mark.slow
def test_compare_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, "cmp")
    out = tmp_path / "out"
    assert main(["compare", str(path), "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    console = capsys.readouterr().out.strip().splitlines()
    assert console[-1].startswith("| ") and console[-8].startswith("| arm | kind")  # ends with the table
    storage = f"sqlite:///{out / 'study.db'}"
    from optuna.artifacts import FileSystemArtifactStore

    from momsearch.search.records import Records

    records = Records(FileSystemArtifactStore(str(out / "artifacts")))

    def config_of(trial) -> dict:
        return records.config(trial)

    tuning_seeds, best = set(), {}
    for arm in ARMS:  # equal budgets, each over its own sub-space
        trials = load(storage, f"cmp.{arm}").get_trials()
        assert len(fresh(trials)) == 3 and all(t.state != State.RUNNING for t in trials)
        assert {config_of(t)["block.rnn.rule"] for t in trials} == {arm}
        tuning_seeds |= {t.user_attrs["seed"] for t in trials}
        done = [t for t in trials if t.state == State.COMPLETE]
        best[arm] = max(done, key=lambda t: (t.value, -t.number))

    confirm_seeds = None
    for arm in ARMS:  # K runs of the best configuration, distinct fresh seeds, the same for every arm
        study = load(storage, f"cmp.{arm}.confirm")
        trials = study.get_trials()
        seeds = sorted(t.user_attrs["seed"] for t in trials)
        assert len(trials) == 3 and all(t.state == State.COMPLETE for t in trials)
        assert len(set(seeds)) == 3 and not set(seeds) & tuning_seeds
        confirm_seeds = confirm_seeds or seeds
        assert seeds == confirm_seeds
        for t in trials:
            config = dict(config_of(t))
            assert config.pop("train.seed") == t.user_attrs["seed"]
            expected = {k: v for k, v in config_of(best[arm]).items() if k != "train.seed"}
            assert config == expected

    hb = config_of(best["heavy_ball"])
    mu, s = hb["block.rnn.rule.heavy_ball.mu"], hb["block.rnn.rule.heavy_ball.s"]
    for t in load(storage, "cmp.heavy_ball.control").get_trials():
        assert config_of(t)["block.rnn.rule.heavy_ball.mu"] == 0.0
        assert config_of(t)["block.rnn.rule.heavy_ball.s"] == s / (1 - mu)
    adam = config_of(best["adam"])
    control_trials = load(storage, "cmp.adam.control").get_trials()
    assert sorted(t.user_attrs["seed"] for t in control_trials) == confirm_seeds
    for t in control_trials:
        config = config_of(t)
        assert config["block.rnn.rule"] == "rmsprop"
        mu, s = adam["block.rnn.rule.adam.mu"], adam["block.rnn.rule.adam.s"]
        assert config["block.rnn.rule.rmsprop.s"] == s / (1 - mu)
        assert config["block.rnn.rule.rmsprop.beta"] == adam["block.rnn.rule.adam.beta"]
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert "cmp.nesterov_restart.control" not in names and "cmp.plain.control" not in names

    verdict = pd.read_csv(out / "compare" / "verdict.csv")
    assert list(verdict["arm"]) == ["plain", "heavy_ball", "heavy_ball:control", "adam", "adam:control",
                                    "nesterov_restart"]
    assert list(verdict["kind"]) == ["baseline", "arm", "control", "arm", "control", "arm"]
    for column in ["n_seeds", "test_accuracy_mean", "test_accuracy_ci_low", "test_accuracy_ci_high",
                   "delta_vs_baseline", "delta_ci_low", "delta_ci_high", "device_seconds_mean",
                   "delta_vs_arm", "p_holm_vs_baseline"]:
        assert column in verdict.columns
    assert (verdict["n_seeds"] == 3).all()
    row = verdict.set_index("arm").loc["heavy_ball"]
    confirm = {t.user_attrs["seed"]: t.user_attrs["test_accuracy"]
               for t in load(storage, "cmp.heavy_ball.confirm").get_trials()}
    base = {t.user_attrs["seed"]: t.user_attrs["test_accuracy"]
            for t in load(storage, "cmp.plain.confirm").get_trials()}
    assert row["delta_vs_baseline"] == pytest.approx(sum(confirm[k] - base[k] for k in base) / 3, abs=1e-12)
    assert row["delta_ci_low"] <= row["delta_vs_baseline"] <= row["delta_ci_high"]
    md = (out / "compare" / "verdict.md").read_text()
    assert "nesterov_restart: " in md and "no control: nesterov_restart has no mu = 0 control" in md
    assert "against its control" in md and "Holm" in md
    for figure in ("forest.png", "curves.png", "cost.png"):
        assert (out / "compare" / figure).stat().st_size > 1000

    # a second run finds everything done: no new trial anywhere, the same verdict
    counts = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert main(["compare", str(path), "--out", str(out), "--no-progress"]) == 0
    assert {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)} == counts
    assert pd.read_csv(out / "compare" / "verdict.csv").equals(verdict)


@pytest.mark.slow
def test_an_interrupted_confirmation_phase_continues_where_it_stopped(tmp_path, monkeypatch):
    """Simulated Ctrl-C inside the second confirmation run; the re-run continues phase 2, not phase 1."""
    import momsearch.search.objective as objective
    from momsearch.search.compare import run_compare
    from momsearch.search.study import RunOptions
    from momsearch.spec import load_study_file

    monkeypatch.syspath_prepend(str(tmp_path))
    study_file = load_study_file(write(tmp_path, "int", trials=2, seeds=2))
    options = RunOptions(out=tmp_path / "out", progress=False)
    real_fit, calls = objective.fit, []

    def fit(model, task, settings, **kw):
        calls.append(settings["seed"])
        if len(calls) == 2 * 4 + 2:  # 8 tuning runs, then the 2nd confirmation run
            raise KeyboardInterrupt
        return real_fit(model, task, settings, **kw)

    monkeypatch.setattr(objective, "fit", fit)
    with pytest.raises(KeyboardInterrupt):
        run_compare(study_file, options, log=lambda line: None)
    storage = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    before = {arm: [t.number for t in load(storage, f"int.{arm}").get_trials()] for arm in ARMS}
    trials = load(storage, "int.plain.confirm").get_trials()
    assert [t.state for t in trials] == [State.COMPLETE, State.FAIL]
    assert trials[1].user_attrs["status_reason"].startswith("interrupted")

    lines = []
    results, seeds = run_compare(study_file, options, log=lines.append)
    assert "  int.plain.confirm: 1 of 2 runs finished, 1 re-queued (interrupted or failed)" in lines
    assert len(calls) == 10 + 1 + 3 * 2 + 2 * 2  # the interrupted run, the 3 other arms, 2 controls
    assert {arm: [t.number for t in load(storage, f"int.{arm}").get_trials()] for arm in ARMS} == before
    confirm = load(storage, "int.plain.confirm").get_trials()
    assert [t.state for t in confirm] == [State.COMPLETE, State.FAIL, State.COMPLETE]
    assert confirm[2].system_attrs["failed_trial"] == 1 and confirm[2].params == confirm[1].params
    assert sorted(t.user_attrs["seed"] for t in confirm if t.state == State.COMPLETE) == seeds
    assert all(r.confirm is not None for r in results)


@pytest.mark.slow
def test_sigterm_during_tuning_then_the_rerun_finishes_the_same_budget(tmp_path, monkeypatch):
    path = write(tmp_path, "term", trials=2, seeds=2)
    env = {**os.environ, "MOMSEARCH_TEST_N": "300000",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "momsearch", "compare", str(path), "--out",
                             str(tmp_path / "out"), "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    storage = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial started"
        try:
            if load(storage, "term.plain").get_trials(states=(State.RUNNING,)):
                break
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):
            pass
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGINT), err
    trials = load(storage, "term.plain").get_trials()
    assert [t.state for t in trials] == [State.FAIL]

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MOMSEARCH_TEST_N", "64")
    assert main(["compare", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    for arm in ARMS:
        trials = load(storage, f"term.{arm}").get_trials()
        assert len(fresh(trials)) == 2 and sum(t.state == State.COMPLETE for t in trials) == 2
    plain = load(storage, "term.plain").get_trials()
    assert plain[1].system_attrs["failed_trial"] == 0 and plain[1].user_attrs["seed"] == plain[0].user_attrs["seed"]
    verdict = pd.read_csv(tmp_path / "out" / "compare" / "verdict.csv")
    assert (verdict["n_seeds"] == 2).all()
    assert json.loads(json.dumps(list(verdict["arm"])))[0] == "plain"


STUDIES = Path(__file__).resolve().parent.parent / "studies"
COMPARE_FILES = sorted(STUDIES.glob("compare_*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", COMPARE_FILES, ids=lambda p: p.name)
def test_compare_study_files_run_at_tiny_scale(path, tmp_path):
    """Every compare file of studies/ runs its three phases at a tiny scale, so the files never rot."""
    import yaml

    data = yaml.safe_load(path.read_text())
    if "n_train" in data["task"]:
        data["task"]["n_train"] = 64
    data["train"].update(epochs=1, max_batches=2)
    data["study"].update(jobs=1)
    data["compare"].update(trials_per_arm=1, seeds=2)
    tiny = tmp_path / path.name
    tiny.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["compare", str(tiny), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    verdict = pd.read_csv(tmp_path / "out" / "compare" / "verdict.csv")
    assert (verdict["n_seeds"] == 2).all() and verdict["kind"].iloc[0] == "baseline"
    assert ("nfe_total_mean" in verdict.columns) == ("ode" in data["space"]["block"])


def test_requeue_retries_interrupted_trials_and_other_failures_once():
    from momsearch.search.compare import requeue_interrupted

    study = optuna.create_study()
    dist = {"train.seed": optuna.distributions.CategoricalDistribution([1, 2])}
    for seed, reason in ((1, "interrupted (SIGINT/SIGTERM)"), (2, "RuntimeError: boom")):
        study.add_trial(optuna.trial.create_trial(state=State.FAIL, params={"train.seed": seed}, distributions=dist,
                                                  user_attrs={"seed": seed, "status_reason": reason}))
    assert requeue_interrupted(study) == 1  # tuning: only the interrupted one
    assert requeue_interrupted(study) == 0  # already queued
    assert requeue_interrupted(study, any_failure=True) == 1  # confirmation: the other failure, once
    waiting = study.get_trials(states=(State.WAITING,))
    assert [(t.params, t.user_attrs["seed"], t.system_attrs["failed_trial"]) for t in waiting] == [
        ({"train.seed": 1}, 1, 0), ({"train.seed": 2}, 2, 1)]
    retry = waiting[1]  # its re-run fails again with an ordinary error: no third attempt
    study.add_trial(optuna.trial.create_trial(state=State.FAIL, params=retry.params, distributions=dist,
                                              user_attrs={"seed": 2, "status_reason": "RuntimeError: boom"},
                                              system_attrs={"failed_trial": 1, "retry_history": [1]}))
    assert requeue_interrupted(study, any_failure=True) == 0
