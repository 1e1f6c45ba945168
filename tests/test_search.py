"""End-to-end studies through the CLI: run, resume, multi-objective, pruning, failures, report."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from tiny_study import TINY_SPACE

from momsearch.cli import main
from momsearch.search.records import Records
from momsearch.search.samplers import make_sampler
from momsearch.search.storage import default_url


def study_file(tmp_path: Path, body: str, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\ntask: seq_digits\n" + textwrap.dedent(body))
    return path


def load(tmp_path: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=default_url(tmp_path / "out"))


def run(path: Path, tmp_path: Path, *extra: str) -> int:
    return main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress", *extra])


def test_run_records_metrics_and_weights_then_resumes(tmp_path, capsys):
    path = study_file(tmp_path, "objectives: {accuracy: maximize}\n" + TINY_SPACE + "study: {n_trials: 3}\n")
    assert run(path, tmp_path) == 0
    study = load(tmp_path)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    records = Records(optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "out" / "artifacts")))
    for t in trials:
        for key in ("accuracy", "loss", "test_accuracy", "device_seconds", "wall_seconds", "params",
                    "peak_memory_mb", "seed", "rule", "record_artifact"):
            assert key in t.user_attrs, key
        assert t.user_attrs["device_seconds"] > 0
        assert records.config(t)["block"] == "rnn" and t.user_attrs["rule"] == f"rnn/{t.params['block.rnn.rule']}"
        assert [e["epoch"] for e in records.history(t)] == [1]
        assert max(len(json.dumps(v)) for v in t.user_attrs.values()) < 200  # short enough for a table cell
        metas = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert [m.filename for m in metas] == ["weights.pt"]
        assert [m.artifact_id for m in metas] == [records.weights(t)]
    seeds = {t.user_attrs["seed"] for t in trials}
    assert len(seeds) == 3
    assert "best trial" in capsys.readouterr().out

    assert run(path, tmp_path, "--n-trials", "5") == 0  # resume: adds two, keeps the first three
    again = load(tmp_path).get_trials()
    assert len(again) == 5
    assert [t.params for t in again[:3]] == [t.params for t in trials]
    assert load(tmp_path).user_attrs["io"] == {"input_size": 1, "output_size": 10, "input": "sequence",
                                               "target": "last", "times": False}

    capsys.readouterr()
    path.write_text(path.read_text().replace("task: seq_digits", "task: {name: seq_digits, permuted: true}"))
    assert run(path, tmp_path, "--n-trials", "6") == 2  # another task under the same name: refused
    err = capsys.readouterr().err
    assert "task.permuted: false in the study, true in this file" in err and len(err.strip().splitlines()) == 1
    assert len(load(tmp_path).get_trials()) == 5


def test_multi_objective_has_pareto_front(tmp_path, capsys):
    path = study_file(tmp_path, "objectives: {accuracy: maximize, device_seconds: minimize}\n" + TINY_SPACE
                      + "study: {n_trials: 3, pruner: none}\n")
    assert run(path, tmp_path) == 0
    study = load(tmp_path)
    assert study.metric_names == ["accuracy", "device_seconds"]
    front, trials = study.best_trials, study.get_trials()
    assert front and len(trials) == 3

    def dominates(a, b):  # a is at least as accurate and as fast as b, and better in one
        (acc_a, sec_a), (acc_b, sec_b) = a.values, b.values
        return acc_a >= acc_b and sec_a <= sec_b and (acc_a > acc_b or sec_a < sec_b)

    assert not any(dominates(other, t) for t in front for other in trials)
    assert all(t in front or any(dominates(f, t) for f in front) for t in trials)
    assert "Pareto front" in capsys.readouterr().out


def test_threshold_pruner_prunes_deterministically(tmp_path):
    body = ("objectives: {accuracy: maximize}\n" + TINY_SPACE.replace("epochs: 1", "epochs: 3")
            + "study: {n_trials: 2, pruner: {name: ThresholdPruner, lower: 0.999}}\n")
    assert run(study_file(tmp_path, body), tmp_path) == 0
    states = {t.state for t in load(tmp_path).get_trials()}
    assert states == {optuna.trial.TrialState.PRUNED}


def test_multi_objective_median_rule_prunes(tmp_path):
    from momsearch.search.pruning import MedianRule

    class FakeStudy:
        def get_trials(self, deepcopy, states):
            history = [{"epoch": 1, "accuracy": 0.8}]
            return [optuna.trial.create_trial(values=[0.8, 1.0], user_attrs={"history": history})] * 3

    class FakeTrial:
        study = FakeStudy()

    rule = MedianRule(FakeTrial(), "accuracy", "maximize", warmup=1, startup=3)
    rule(0, {"accuracy": 0.1})  # warm-up epoch: never pruned
    rule(1, {"accuracy": 0.9})
    with pytest.raises(optuna.TrialPruned):
        rule(1, {"accuracy": 0.5})


def test_failing_user_task_stops_with_the_reason(tmp_path, capsys, monkeypatch):
    (tmp_path / "badtask.py").write_text("def make(**kw):\n    raise RuntimeError('sensor offline')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    body = ("task: {module: 'badtask:make'}\nobjectives: {accuracy: maximize}\n" + TINY_SPACE
            + "study: {n_trials: 3}\n")
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\n" + body)
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "sensor offline" in err and err.count("\n") == 1


def test_report_and_optuna_cli_read_the_study(tmp_path):
    path = study_file(tmp_path, "objectives: {accuracy: maximize}\n" + TINY_SPACE + "study: {n_trials: 3}\n")
    assert run(path, tmp_path) == 0
    assert main(["report", str(path), "--out", str(tmp_path / "out"), "--to", str(tmp_path / "rep")]) == 0
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "Per update rule" in summary and "rnn/" in summary
    assert (tmp_path / "rep" / "trials.csv").read_text().count("\n") == 4
    assert (tmp_path / "rep" / "history.png").stat().st_size > 0
    optuna_cli = Path(sys.executable).with_name("optuna")
    out = subprocess.run([str(optuna_cli), "trials", "--storage", default_url(tmp_path / "out"),
                          "--study-name", "tiny", "-f", "json"], capture_output=True, text=True, check=True)
    assert out.stdout.count('"number"') == 3


def test_unknown_study_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "momsearch", "report", "nosuch", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_two_jobs_on_sqlite_finish_the_target(tmp_path):
    path = study_file(tmp_path, "objectives: {accuracy: maximize}\n" + TINY_SPACE + "study: {n_trials: 6}\n")
    assert run(path, tmp_path, "--jobs", "2") == 0
    trials = load(tmp_path).get_trials()
    assert len(trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.number for t in trials}) == 6


@pytest.mark.slow
def test_grid_with_two_jobs_runs_every_point(tmp_path):
    body = """
objectives: {accuracy: maximize}
space:
  block:
    rnn:
      cell: gru
      hidden_size: 8
      rule:
        plain: {}
        heavy_ball: {mu: [0.0, 0.5], s: 0.5}
  train: {seed: [0, 1]}
train: {epochs: 1, batch_size: 64, max_batches: 2}
study: {n_trials: 6, pruner: none, sampler: {name: BruteForceSampler}}
"""
    assert run(study_file(tmp_path, body), tmp_path, "--jobs", "2") == 0
    trials = load(tmp_path).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    points = {tuple(sorted(t.params.items())) for t in trials}
    assert len(points) == 6  # a point drawn twice by the two workers does not crowd out another


def test_tpe_constant_liar_only_when_workers_share_the_study():
    default = {"name": "TPESampler", "multivariate": True, "group": True}
    assert make_sampler(default, 0, shared=True)._constant_liar
    assert not make_sampler(default, 0, shared=False)._constant_liar
    assert make_sampler({**default, "constant_liar": True}, 0, shared=False)._constant_liar  # the user's choice


def test_sole_worker_samples_the_same_without_constant_liar():
    def params(liar: bool) -> list[dict]:
        sampler = optuna.samplers.TPESampler(multivariate=True, group=True, n_startup_trials=3, seed=4,
                                             constant_liar=liar)
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + (t.suggest_float("y", 0, 1) if
                       t.suggest_categorical("c", ["a", "b"]) == "b" else 0.5), n_trials=12)
        return [t.params for t in study.trials]

    assert params(True) == params(False)


@pytest.mark.parametrize("shared", [False, True])
def test_run_uses_constant_liar_when_the_storage_is_given(tmp_path, shared):
    sampler = "{name: TPESampler, multivariate: true, group: true, n_startup_trials: 1}"
    path = study_file(tmp_path, "objectives: {accuracy: maximize}\n" + TINY_SPACE
                      + f"study: {{n_trials: 3, pruner: none, sampler: {sampler}}}\n")
    url = default_url(tmp_path / "shared") if shared else default_url(tmp_path / "out")
    (tmp_path / "shared").mkdir()
    assert run(path, tmp_path, *(("--storage", url) if shared else ())) == 0
    study = optuna.load_study(study_name="tiny", storage=url)
    lies = [k for t in study.trials for k in t.system_attrs if k.startswith("tpe:relative_params")]
    assert bool(lies) == shared
