"""``export --pareto K`` exports exactly the non-dominated trials (at most K of them, best first objective
first), never a dominated trial that ranks high on the first objective."""

from __future__ import annotations

import optuna
import pytest
import torch
import yaml

from momsearch.builder import build
from momsearch.search.exporting import MARKER, export, sha256

pytestmark = pytest.mark.slow

CONFIG = {"block": "rnn", "block.rnn.hidden_size": 4}
IO = {"input_size": 2, "output_size": 3, "input": "sequence", "target": "last", "times": False}
# (accuracy: maximize, nfe_total: minimize); trials 2, 4 and 5 are dominated, 5 ranks second on accuracy
VALUES = [(0.90, 10.0), (0.80, 5.0), (0.70, 20.0), (0.95, 30.0), (0.60, 6.0), (0.92, 40.0)]
FRONT = {0, 1, 3}


@pytest.fixture
def study(tmp_path):
    """A two-objective study whose trials hold real weights artifacts (no training needed)."""
    study = optuna.create_study(directions=["maximize", "minimize"],
                                storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="front")
    study.set_metric_names(["accuracy", "nfe_total"])
    study.set_user_attr("io", IO)
    store_dir = tmp_path / "artifacts"
    store_dir.mkdir()
    store = optuna.artifacts.FileSystemArtifactStore(str(store_dir))
    for number, values in enumerate(VALUES):
        torch.manual_seed(number)
        model = build(CONFIG, IO["input_size"], IO["output_size"], input=IO["input"], target=IO["target"])
        path = tmp_path / f"w{number}.pt"
        torch.save(model.state_dict(), path)
        with open(path, "rb") as f:
            store.write(f"w{number}", f)
        study.add_trial(optuna.trial.create_trial(values=list(values), user_attrs={
            "config": CONFIG, "weights_artifact": f"w{number}", "weights_sha256": sha256(path), "seed": number}))
    return study, store_dir


def _exported(directories):
    return [yaml.safe_load((d / "spec.yaml").read_text())["trial"] for d in directories]


def test_pareto_exports_exactly_the_non_dominated_trials(study, tmp_path):
    study, store = study
    assert {t.number for t in study.best_trials} == FRONT
    written = export(study, out=tmp_path / "all", pareto=len(VALUES), artifacts=store)
    assert _exported(written) == [3, 0, 1]  # the whole front, best accuracy first; no dominated trial
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [MARKER, "trial_0", "trial_1", "trial_3"]
    assert _exported(export(study, out=tmp_path / "two", pareto=2, artifacts=store)) == [3, 0]
    assert _exported(export(study, out=tmp_path / "best", artifacts=store)) == [3]
