"""The rule-centred report: pruned trials keep their metrics and cost, every rule tried is in the per-rule table,
the costs add up, the table's numbers match values computed here, the figures exist and the HTML works offline.

The end-to-end tests run a real tiny study (real training through momsearch's objective) whose pruner prunes by
rule: ``heavy_ball`` is always pruned at epoch 2 (a rule that never completes), ``plain`` with seed 1 at epoch 3.
"""

from __future__ import annotations

import functools
import json
import re
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import browser
import optuna
import pandas as pd
import pytest

from momsearch.cli import main
from momsearch.search.objective import Objective, TrialFailed
from momsearch.search.records import Records, store_for
from momsearch.search.report import importances, rule_table, write_report
from momsearch.search.study import create_or_load
from momsearch.spec import load_study_file
from momsearch.tasks import load as load_task

PRUNED, COMPLETE, FAIL = (optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE,
                          optuna.trial.TrialState.FAIL)
STUDY = """
name: rules
task: seq_digits
objectives: {accuracy: maximize}
space:
  block:
    rnn:
      cell: lstm
      hidden_size: 8
      rule:
        plain: {}
        heavy_ball: {mu: 0.5, s: 0.5}
        adam: {}
  train: {seed: [0, 1]}
train: {epochs: 4, batch_size: 64, max_batches: 4}
study: {n_trials: 6, sampler: {name: BruteForceSampler}, pruner: {name: MedianPruner}}
"""
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']?(https?:)?//", re.IGNORECASE)


class RulePruner(optuna.pruners.BasePruner):
    """Prunes heavy_ball at epoch 2 and plain with seed 1 at epoch 3; never adam."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        rule, step = trial.params["block.rnn.rule"], trial.last_step
        return (rule == "heavy_ball" and step >= 2) or (rule == "plain" and trial.params["train.seed"] == 1
                                                        and step >= 3)


@pytest.fixture(scope="module")
def ruled(tmp_path_factory) -> tuple[optuna.Study, Path, Path]:
    """(the study after its 6 trials, its study file, its output directory)."""
    tmp = tmp_path_factory.mktemp("rules")
    path = tmp / "rules.yaml"
    path.write_text(textwrap.dedent(STUDY))
    study_file = load_study_file(path)
    out = tmp / "out"
    out.mkdir()
    url = f"sqlite:///{out / 'study.db'}"
    create_or_load(study_file, optuna.storages.RDBStorage(url), out / "artifacts")
    study = optuna.load_study(study_name="rules", storage=url, sampler=optuna.samplers.BruteForceSampler(seed=0),
                              pruner=RulePruner())
    (out / "artifacts").mkdir()
    store = optuna.artifacts.FileSystemArtifactStore(str(out / "artifacts"))
    objective = Objective(study_file, functools.partial(load_task, study_file.task), store, device="cpu")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=6, catch=(TrialFailed,))
    return study, path, out


def rule_of(trial) -> str:
    return trial.params["block.rnn.rule"]


@pytest.mark.slow
def test_pruned_trials_record_metrics_cost_and_reason(ruled):
    study, _, out = ruled
    trials = study.get_trials()
    assert sorted((rule_of(t), t.state.name) for t in trials) == [
        ("adam", "COMPLETE"), ("adam", "COMPLETE"), ("heavy_ball", "PRUNED"), ("heavy_ball", "PRUNED"),
        ("plain", "COMPLETE"), ("plain", "PRUNED")]
    records = Records(store_for(study, out))
    for t in trials:
        if t.state != PRUNED:
            continue
        epoch = 2 if rule_of(t) == "heavy_ball" else 3
        attrs = t.user_attrs
        assert attrs["status_reason"] == f"pruned at epoch {epoch} by RulePruner"
        assert attrs["epochs"] == epoch
        for key in ("device_seconds", "wall_seconds", "params", "peak_memory_mb"):
            assert attrs[key] > 0, key
        history = records.history(t)
        assert [e["epoch"] for e in history] == list(range(1, epoch + 1))
        assert attrs["accuracy"] == history[-1]["accuracy"]  # the metrics of its last reported epoch
        assert attrs["accuracy"] == t.intermediate_values[epoch]
        assert "test_accuracy" not in attrs  # the test split is not evaluated for a pruned trial
        assert records.config(t)["block.rnn.rule"] == rule_of(t)
    for t in trials:  # every user attribute fits a table cell
        assert max(len(json.dumps(v)) for v in t.user_attrs.values()) < 200


@pytest.mark.slow
def test_report_counts_every_rule_and_every_trial_cost(ruled, tmp_path):
    study, path, out = ruled
    rep = tmp_path / "rep"
    assert main(["report", str(path), "--out", str(out), "--to", str(rep)]) == 0
    trials = study.get_trials()
    table = rule_table(study, Records(store_for(study, out))).set_index("rule")
    assert list(table.index) == ["plain", "adam", "heavy_ball", "total"]
    assert table.loc["heavy_ball", ["trials", "done", "pruned"]].tolist() == [2, 0, 2]
    assert table.loc["plain", ["trials", "done", "pruned"]].tolist() == [2, 1, 1]
    assert table.loc["adam", ["trials", "done", "pruned"]].tolist() == [2, 2, 0]
    assert pd.isna(table.loc["heavy_ball", "median accuracy"])  # nothing completed: no median
    for rule in ("plain", "adam", "heavy_ball"):
        mine = [t for t in trials if rule_of(t) == rule]
        assert table.loc[rule, "total device_seconds"] == pytest.approx(
            sum(t.user_attrs["device_seconds"] for t in mine))
        assert table.loc[rule, "total epochs"] == sum(t.user_attrs["epochs"] for t in mine)
    assert table.loc["total", "total device_seconds"] == pytest.approx(
        sum(t.user_attrs["device_seconds"] for t in trials))
    assert table.loc["total", "total epochs"] == 4 + 4 + 2 + 2 + 4 + 3
    adam = [t.value for t in trials if rule_of(t) == "adam"]
    assert table.loc["adam", "median accuracy"] == pytest.approx(statistics.median(adam))
    assert table.loc["adam", "best accuracy"] == pytest.approx(max(adam))

    summary = (rep / "summary.md").read_text()
    assert "| heavy_ball | 2 | 0 | 2 | 0 | - | - |" in summary
    assert "Tried but never completed: `heavy_ball`" in summary
    total = sum(t.user_attrs["device_seconds"] for t in trials)
    assert f"Cost: {total:.1f} device seconds over all 6 finished trials" in summary
    for name in ("by_rule.png", "cost_vs_accuracy.png", "curves_by_rule.png", "history.png"):
        assert (rep / name).stat().st_size > 5000, name
        assert f"({name})" in summary, name
    assert "Importances of `accuracy` left out: 3 completed trials" in summary
    assert not (rep / "importances.png").exists()
    html = list(rep.glob("*.html"))
    assert html and (rep / "plotly.min.js").stat().st_size > 1_000_000
    for page in html:
        text = page.read_text()
        assert not EXTERNAL_SCRIPT.search(text), page.name
        assert '<script src="plotly.min.js"' in text or 'src="plotly.min.js"' in text

    frame = pd.read_csv(rep / "trials.csv")
    assert set(frame["rule"]) == {"rnn/plain", "rnn/heavy_ball", "rnn/adam"}
    assert frame["accuracy"].notna().all()  # pruned trials have a value too
    assert frame["params"].dtype.kind == "i" and frame["epochs"].dtype.kind == "i"
    assert json.loads(frame.loc[frame["number"] == 0, "config"].item())["block"] == "rnn"


@pytest.mark.slow
def test_figures_are_drawn_not_blank(ruled, tmp_path):
    import matplotlib.image

    study, _, out = ruled
    write_report(study, tmp_path, Records(store_for(study, out)))
    for name in ("by_rule.png", "cost_vs_accuracy.png", "curves_by_rule.png"):
        pixels = matplotlib.image.imread(tmp_path / name)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500, name
        assert pixels[..., :3].std() > 0.05, name  # more than a blank canvas


def frozen(number: int, rule: str, state, accuracy: float, seconds: float, epochs: int, **params):
    """A finished trial as a momsearch run records it (``rule`` and scalar metrics as user attributes)."""
    attrs = {"rule": f"rnn/{rule}", "accuracy": accuracy, "device_seconds": seconds, "epochs": epochs}
    distributions = {"block.rnn.rule": optuna.distributions.CategoricalDistribution(["plain", "heavy_ball", "adam"]),
                     "train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)}
    trial = optuna.trial.create_trial(
        state=state, value=accuracy if state == COMPLETE else None, user_attrs=attrs,
        params={"block.rnn.rule": rule, **params}, distributions={k: distributions[k] for k in ["block.rnn.rule",
                                                                                                *params]})
    return trial


def test_rule_table_values_match_values_computed_here():
    study = optuna.create_study(direction="maximize")
    study.set_metric_names(["accuracy"])
    rows = [  # rule, state, accuracy, device seconds, epochs
        ("plain", COMPLETE, 0.50, 2.0, 6), ("plain", COMPLETE, 0.60, 2.5, 6), ("plain", COMPLETE, 0.90, 3.0, 6),
        ("plain", PRUNED, 0.20, 0.5, 2),
        ("heavy_ball", COMPLETE, 0.55, 4.0, 6), ("heavy_ball", COMPLETE, 0.95, 4.5, 6),
        ("heavy_ball", FAIL, 0.10, 1.0, 1),
        ("adam", PRUNED, 0.30, 1.5, 3), ("adam", PRUNED, 0.35, 1.25, 3),
    ]
    for i, (rule, state, acc, secs, epochs) in enumerate(rows):
        study.add_trial(frozen(i, rule, state, acc, secs, epochs, **{"train.lr": 0.01 * (i + 1)}))
    table = rule_table(study).set_index("rule")
    for rule in ("plain", "heavy_ball", "adam"):
        mine = [r for r in rows if r[0] == rule]
        done = [r[2] for r in mine if r[1] == COMPLETE]
        assert table.loc[rule, "trials"] == len(mine)
        assert table.loc[rule, "done"] == len(done)
        assert table.loc[rule, "pruned"] == sum(r[1] == PRUNED for r in mine)
        assert table.loc[rule, "failed"] == sum(r[1] == FAIL for r in mine)
        assert table.loc[rule, "total device_seconds"] == pytest.approx(sum(r[3] for r in mine))
        assert table.loc[rule, "total epochs"] == sum(r[4] for r in mine)
        if done:
            assert table.loc[rule, "median accuracy"] == pytest.approx(statistics.median(done))
            assert table.loc[rule, "best accuracy"] == pytest.approx(max(done))
        else:
            assert pd.isna(table.loc[rule, "median accuracy"]) and pd.isna(table.loc[rule, "best accuracy"])
    assert table.loc["plain", "median accuracy"] == pytest.approx(0.60)  # the mean would be 0.6667
    assert table.loc["plain", "best trial"] == 2 and table.loc["plain", "best configuration"] == "lr=0.03"
    assert table.loc["heavy_ball", "best trial"] == 5
    assert table.loc["total", "trials"] == len(rows)
    assert table.loc["total", "total device_seconds"] == pytest.approx(sum(r[3] for r in rows))
    assert list(table.index) == ["plain", "adam", "heavy_ball", "total"]


def test_rule_table_labels_block_and_rule_when_several_blocks():
    study = optuna.create_study(direction="maximize")
    study.set_metric_names(["accuracy"])
    for i, rule in enumerate(["rnn/plain", "attention/plain", "attention/heavy_ball"]):
        study.add_trial(optuna.trial.create_trial(value=0.5 + i / 10, user_attrs={
            "rule": rule, "accuracy": 0.5 + i / 10, "device_seconds": 1.0, "epochs": 2}))
    assert list(rule_table(study)["rule"]) == ["attention/plain", "rnn/plain", "attention/heavy_ball", "total"]


@pytest.mark.slow
def test_importances_use_fanova_and_need_enough_trials():
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    study.set_metric_names(["accuracy"])

    def objective(trial):  # the rule decides almost everything, lr a little
        rule = trial.suggest_categorical("block.rnn.rule", ["plain", "heavy_ball", "adam"])
        lr = trial.suggest_float("train.lr", 1e-3, 1e-1, log=True)
        return {"plain": 0.5, "heavy_ball": 0.6, "adam": 0.9}[rule] + 0.01 * lr

    study.optimize(objective, n_trials=5)
    values, sentence = importances(study)
    assert values is None and "5 completed trials" in sentence
    study.optimize(objective, n_trials=15)
    values, sentence = importances(study)
    assert "fANOVA" in sentence and "20 trials" in sentence
    assert values["block.rnn.rule"] > 0.8 > values["train.lr"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dashboard(ruled):
    """optuna-dashboard on the tiny study (loopback, a free port); yields its base URL."""
    pytest.importorskip("optuna_dashboard")
    command = Path(sys.executable).with_name("optuna-dashboard")
    if browser.chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    _, _, out = ruled
    port = free_port()
    proc = subprocess.Popen([str(command), f"sqlite:///{out / 'study.db'}",
                             "--artifact-dir", str(out / "artifacts"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/meta", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "optuna-dashboard did not start"
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


ROW_HEIGHTS = "JSON.stringify([...document.querySelectorAll('tbody tr')].map(r => r.getBoundingClientRect().height))"


@pytest.mark.slow
def test_dashboard_table_shows_ten_rows_per_screen_and_trial_pages_fit(ruled, dashboard):
    study, _, _ = ruled
    with urllib.request.urlopen(f"{dashboard}/api/studies", timeout=30) as answer:
        [sid] = [s["study_id"] for s in json.load(answer)["study_summaries"] if s["study_name"] == "rules"]
    with browser.Browser(1400, 1000) as page:
        page.open(f"{dashboard}/dashboard/studies/{sid}/smartSelection")  # the trials table
        assert page.wait("document.querySelectorAll('tbody tr').length >= 6"), "no trials table"
        heights = json.loads(page.eval(ROW_HEIGHTS))
        assert len(heights) == 6
        # 10+ rows per screen; no row over three lines of text (a JSON attribute made rows ~1,200 px tall)
        assert page.eval("innerHeight") / statistics.mean(heights) >= 10 and max(heights) <= 100, heights
        for t in study.get_trials():
            page.open(f"{dashboard}/dashboard/studies/{sid}/trials?numbers={t.number}")
            assert page.wait("document.body.innerText.includes('User Attributes')"), t.number
            width = page.eval("document.documentElement.scrollWidth")
            assert width <= page.eval("innerWidth"), (t.number, width)  # no horizontal scrolling


@pytest.mark.slow
def test_multi_objective_report_with_ode_blocks(tmp_path):
    """accuracy vs nfe_total: every rule in by_rule (one panel per objective), cost plots against device seconds
    and function evaluations, a Pareto front table, importances left out with a sentence."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "nfe_total"])
    rows = [("ode/plain", COMPLETE, 0.90, 900), ("ode/plain", COMPLETE, 0.95, 1200), ("ode/heavy_ball", COMPLETE,
            0.93, 700), ("ode/heavy_ball", PRUNED, 0.40, 150), ("ode/adam", PRUNED, 0.30, 400)]
    for rule, state, acc, nfe in rows:
        history = [{"epoch": 1, "accuracy": acc - 0.1, "loss": 1.0}, {"epoch": 2, "accuracy": acc, "loss": 0.5}]
        attrs = {"rule": rule, "accuracy": acc, "nfe_total": nfe, "device_seconds": nfe / 100, "epochs": 2,
                 "history": history, "config": {"block": "ode", "block.ode.rule": rule.split("/")[1]}}
        study.add_trial(optuna.trial.create_trial(state=state, values=[acc, nfe] if state == COMPLETE else None,
                                                  user_attrs=attrs))
    summary = write_report(study, tmp_path).read_text()
    for name in ("by_rule.png", "cost_vs_accuracy.png", "curves_by_rule.png", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 5000, name
    assert not (tmp_path / "cost_vs_nfe_total.png").exists()  # a cost itself
    assert "| adam | 1 | 0 | 1 | 0 | - | - | - | - | 4 | 2 | 400 | - | - |" in summary
    assert "| total | 5 | 3 | 2 | 0 | - | - | - | - | 33.5 | 10 | 3350 | - | - |" in summary
    assert "## Pareto front" in summary and "Importances of `nfe_total` left out" in summary
    assert "(a rule's own" not in summary


@pytest.mark.slow
def test_report_says_when_records_are_not_found(ruled, tmp_path):
    study, _, _ = ruled
    summary = write_report(study, tmp_path, Records(None)).read_text()  # no artifact store given
    assert "6 trials' records (configuration, history) were not found" in summary
    assert "| heavy_ball | 2 | 0 | 2 |" in summary  # the per-rule table needs no record
    assert not (tmp_path / "curves_by_rule.png").exists()
