"""Case studies (studies/*.yaml, studies/paper/*.yaml) and the report's "variants over seeds" table.

The table test builds a study in memory from hand-written trials and checks every number against a value
computed here step by step. The smoke tests run each study file at a tiny scale through the CLI so the
files never rot; paper-size files are only validated (they need a GPU and, some, user-supplied data).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
import yaml

from momsearch.cli import main
from momsearch.search.report import variant_label, variant_table, write_report

STUDIES = Path(__file__).resolve().parent.parent / "studies"
STUDY_FILES = sorted(p for p in STUDIES.glob("*.yaml") if p.name != "quickstart.yaml")
PAPER_FILES = sorted((STUDIES / "paper").glob("*.yaml"))
DIST = optuna.distributions.CategoricalDistribution


def rnn_config(rule: str, seed: int, **params) -> dict:
    config = {"block": "rnn", "block.rnn.cell": "lstm", "block.rnn.rule": rule}
    config.update({f"block.rnn.rule.{rule}.{k}": v for k, v in params.items()})
    config.update({"train.seed": seed, "train.epochs": 3, f"block.rnn.rule.{rule}.eps": 1e-16})
    return config


def add_trial(study: optuna.Study, config: dict, curve: list[float], test: float, **attrs) -> None:
    history = [{"epoch": e + 1, "accuracy": a, "loss": 1.0 - a, "train_loss": 1.0} for e, a in enumerate(curve)]
    user_attrs = {"config": config, "seed": config["train.seed"], "history": history, "accuracy": max(curve),
                  "test_accuracy": test, "device_seconds": 1.0}
    user_attrs.update(attrs)
    study.add_trial(optuna.trial.create_trial(
        params={"block.rnn.rule": config["block.rnn.rule"], "train.seed": config["train.seed"]},
        distributions={"block.rnn.rule": DIST(["plain", "heavy_ball", "adam"]), "train.seed": DIST([0, 1, 2, None])},
        value=max(curve), user_attrs=user_attrs))


CURVES = {  # rule -> one validation curve per seed
    ("plain", ()): [[0.2, 0.5, 0.7], [0.3, 0.6, 0.8], [0.1, 0.4, 0.6]],
    ("heavy_ball", (("mu", 0.6), ("s", 0.6))): [[0.5, 0.75, 0.8], [0.7, 0.72, 0.9], [0.2, 0.3, 0.65]],
    ("heavy_ball", (("mu", 0.0), ("s", 0.6))): [[0.1, 0.2, 0.3], [0.1, 0.2, 0.25]],
}


@pytest.fixture()
def seeded_study() -> optuna.Study:
    study = optuna.create_study(study_name="seeds", direction="maximize")
    study.set_metric_names(["accuracy"])
    for (rule, params), curves in CURVES.items():
        for seed, curve in enumerate(curves):
            add_trial(study, rnn_config(rule, seed, **dict(params)), curve, test=curve[-1] - 0.05)
    add_trial(study, rnn_config("plain", 0), [0.9, 0.9, 0.9], test=0.9)  # a repeated seed: ignored
    return study


def test_variant_table_matches_hand_computed_values(seeded_study):
    table = variant_table(seeded_study).set_index("variant")
    assert list(table.index) == ["rnn/plain", "rnn/heavy_ball mu=0 s=0.6", "rnn/heavy_ball mu=0.6 s=0.6"]
    assert list(table["seeds"]) == [3, 2, 3]
    # the plain variant's mean curve is (0.2, 0.5, 0.7): best mean 0.7 at epoch 3
    target = max(statistics.mean(c[e] for c in CURVES[("plain", ())]) for e in range(3))
    column = f"epochs to accuracy {target:.4g} (rnn/plain)"
    momentum = CURVES[("heavy_ball", (("mu", 0.6), ("s", 0.6)))]
    best = [max(c) for c in momentum]
    assert table.loc["rnn/heavy_ball mu=0.6 s=0.6", "accuracy"] == (
        f"{statistics.mean(best):.4g} ± {statistics.stdev(best):.2g}")
    tests = [c[-1] - 0.05 for c in momentum]
    assert table.loc["rnn/heavy_ball mu=0.6 s=0.6", "test_accuracy"] == (
        f"{statistics.mean(tests):.4g} ± {statistics.stdev(tests):.2g}")
    # first epochs reaching 0.7: seeds 0 and 1 at epochs 2 and 1, seed 2 never (0.65 < 0.7)
    assert table.loc["rnn/heavy_ball mu=0.6 s=0.6", column] == f"{statistics.mean([2, 1]):.3g} (2/3)"
    assert table.loc["rnn/plain", column] == "3 (2/3)"  # seeds 0 and 1 at epoch 3; seed 2 peaks at 0.6
    assert table.loc["rnn/heavy_ball mu=0 s=0.6", column] == "not reached"
    assert "mean nfe_total" not in table.columns  # no ODE block: no NFE columns


def test_variant_table_reports_nfe_of_ode_blocks():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "nfe_total"])
    for rule, nfe in (("plain", (20.0, 26.0)), ("heavy_ball", (14.0, 14.0))):
        for seed in (0, 1):
            config = {"block": "ode", "block.ode.rule": rule, "train.seed": seed}
            attrs = {"config": config, "seed": seed, "nfe_forward": nfe[0] + seed, "nfe_backward": nfe[1],
                     "nfe_total": 100.0 * (sum(nfe) + seed), "test_accuracy": 0.9,
                     "history": [{"epoch": 1, "accuracy": 0.9, "loss": 0.1, "train_loss": 0.1}]}
            study.add_trial(optuna.trial.create_trial(
                params={"block.ode.rule": rule}, distributions={"block.ode.rule": DIST(["plain", "heavy_ball"])},
                values=[0.9, attrs["nfe_total"]], user_attrs=attrs))
    table = variant_table(study).set_index("variant")
    assert table.loc["ode/plain", "mean nfe_forward"] == pytest.approx(20.5)
    assert table.loc["ode/heavy_ball", "mean nfe_backward"] == pytest.approx(14.0)
    assert table.loc["ode/heavy_ball", "nfe_total"] == f"{2850:.4g} ± {statistics.stdev([2800, 2900]):.2g}"
    assert table.loc["ode/heavy_ball", "epochs to accuracy 0.9 (ode/plain)"] == "1"
    assert "mean nfe_total" not in table.columns  # an objective already: shown once, as mean ± std


def test_variant_table_empty_without_repeated_seeds():
    study = optuna.create_study()
    add_trial(study, rnn_config("plain", 0), [0.5], test=0.5)
    add_trial(study, rnn_config("heavy_ball", 0, mu=0.6, s=0.6), [0.6], test=0.6)
    assert variant_table(study).empty
    for seed in (11, 12):  # a sampler repeating a configuration without train.seed: derived seeds differ
        add_trial(study, {**rnn_config("plain", 0), "train.seed": None}, [0.5], test=0.5, seed=seed)
    assert variant_table(study).empty


def test_summary_has_variants_section_and_curves(seeded_study, tmp_path):
    text = write_report(seeded_study, tmp_path).read_text()
    assert "## Variants over seeds" in text
    assert "| rnn/heavy_ball mu=0.6 s=0.6 | 3 |" in text
    assert "best mean validation accuracy 0.7 at epoch 3" in text
    assert (tmp_path / "variants.png").stat().st_size > 0


@pytest.mark.parametrize("path", STUDY_FILES + PAPER_FILES, ids=lambda p: str(p.relative_to(STUDIES)))
def test_study_files_validate(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert "valid study file" in capsys.readouterr().out


def tiny_copy(path: Path, tmp_path: Path) -> Path:
    """The study file at a tiny scale: 64 training examples where the task takes ``n_train``, one epoch of two
    batches, one trial, one worker, the space file's path made absolute."""
    data = yaml.safe_load(path.read_text())
    if "n_train" in data["task"]:
        data["task"]["n_train"] = 64
    data["train"].update(epochs=1, max_batches=2)
    data["study"].update(n_trials=1, jobs=1)
    if isinstance(data["space"], str):
        data["space"] = str((path.parent / data["space"]).resolve())
    tiny = tmp_path / path.name
    tiny.write_text(yaml.safe_dump(data, sort_keys=False))
    return tiny


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.name)
def test_study_file_runs_and_reports_at_tiny_scale(path, tmp_path):
    tiny = tiny_copy(path, tmp_path)
    out, report = tmp_path / "out", tmp_path / "report"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress"]) == 0
    assert main(["report", str(tiny), "--out", str(out), "--to", str(report)]) == 0
    assert "## Per update rule" in (report / "summary.md").read_text()


def test_variant_labels_name_the_kind_and_keep_colliding_variants_apart():
    softmax = {"block": "attention", "block.attention.kind": "softmax"}
    momentum = {"block": "attention", "block.attention.kind": "linear", "block.attention.kind.linear.rule":
                "heavy_ball", "block.attention.kind.linear.rule.heavy_ball.mu": 0.0,
                "block.attention.kind.linear.rule.heavy_ball.s": 1.5}
    varying = ["block.attention.kind"]
    assert variant_label(softmax, varying) == "attention/plain kind=softmax"
    assert variant_label(momentum, varying) == "attention/heavy_ball kind=linear mu=0 s=1.5"
    study = optuna.create_study()
    for extra in ({"block.rnn.rule.adam.eps": 1e-8}, {}, {"block.rnn.dropout": 0.1}):
        for seed in (0, 1):  # eps differs: shown; dropout set in one configuration only: numbered apart
            add_trial(study, {**rnn_config("adam", seed, mu=0.6), **extra}, [0.5], 0.5)
    assert list(variant_table(study)["variant"]) == ["rnn/adam mu=0.6 eps=1e-08", "rnn/adam mu=0.6 eps=1e-16",
                                                     "rnn/adam mu=0.6 eps=1e-16 [2]"]
