"""The comparison's statistics: t intervals against hand computation, coverage on synthetic paired data, Holm."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from momsearch.search.compare_stats import holm, mean_interval, paired_interval


def test_mean_interval_matches_the_t_formula():
    x = [1.0, 2.0, 3.0, 4.0]
    iv = mean_interval(x)
    sd = math.sqrt(sum((v - 2.5) ** 2 for v in x) / 3)  # 1.2909944...
    half = 3.182446305284263 * sd / 2.0                 # t_{0.975, 3} from a table, n = 4
    assert iv.mean == 2.5 and iv.n == 4
    assert iv.low == pytest.approx(2.5 - half, rel=1e-12) and iv.high == pytest.approx(2.5 + half, rel=1e-12)


def test_paired_interval_is_the_interval_of_the_differences_and_its_p_the_paired_t_test():
    a, b = [0.80, 0.82, 0.79, 0.85, 0.81], [0.78, 0.79, 0.80, 0.80, 0.77]
    iv = paired_interval(a, b)
    d = np.subtract(a, b)
    ref = mean_interval(d)
    assert (iv.mean, iv.low, iv.high) == pytest.approx((ref.mean, ref.low, ref.high), rel=1e-12)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    from scipy import stats

    assert iv.p == pytest.approx(2 * stats.t.sf(abs(t), 4), rel=1e-10)


def test_paired_interval_covers_a_known_difference_about_95_percent_of_the_time():
    """Two arms whose metric differs by 0.03 by construction, with a per-seed effect shared by both arms."""
    rng = np.random.default_rng(0)
    truth, hits, n_rep = 0.03, 0, 2000
    for _ in range(n_rep):
        seed_effect = rng.normal(0.0, 0.05, size=5)   # what pairing by seed removes
        a = 0.7 + truth + seed_effect + rng.normal(0.0, 0.01, size=5)
        b = 0.7 + seed_effect + rng.normal(0.0, 0.01, size=5)
        iv = paired_interval(a, b)
        hits += iv.low <= truth <= iv.high
    assert 0.93 <= hits / n_rep <= 0.97


def test_identical_differences_give_a_point_interval():
    iv = paired_interval([0.5, 0.6], [0.4, 0.5])
    assert iv.low == iv.high == pytest.approx(0.1) and iv.p == 0.0
    same = paired_interval([0.5, 0.6], [0.5, 0.6])
    assert same.mean == 0.0 and same.p == 1.0


def test_holm_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.01]) == pytest.approx([0.5, 0.02])
    out = holm([float("nan"), 0.02, 0.2])
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.04, 0.2])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 x 0.8 capped at 1; the larger one may not fall below it


def _seeded_study(storage, name: str, values: dict[int, float]) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for seed, value in values.items():
        study.add_trial(optuna.trial.create_trial(
            value=value, params={}, distributions={},
            user_attrs={"seed": seed, "test_accuracy": value, "device_seconds": 1.0,
                        "history": [{"epoch": 1, "accuracy": value}]}))
    return study


def test_verdict_finds_a_difference_built_into_the_data_and_not_one_that_is_absent():
    """The verdict on real Optuna studies: arm 'better' differs from the baseline by 0.05 by construction."""
    from momsearch.search.compare import ArmResult
    from momsearch.search.compare_report import describe
    from momsearch.search.compare_verdict import build_rows, sentence
    from momsearch.spec.compare import Arm, CompareSpec

    storage = optuna.storages.InMemoryStorage()
    rng = np.random.default_rng(1)
    seeds = [11, 12, 13, 14, 15]
    seed_effect = dict(zip(seeds, rng.normal(0, 0.05, 5), strict=True))
    base = {s: 0.7 + seed_effect[s] for s in seeds}
    better = {s: base[s] + 0.05 + rng.normal(0, 0.002) for s in seeds}
    same = {s: base[s] + rng.normal(0, 0.002) for s in seeds}
    best = optuna.trial.create_trial(value=0.0, params={}, distributions={}, user_attrs={"config": {}})
    tuning = optuna.create_study(storage=storage)
    results = [ArmResult("plain", tuning, best, _seeded_study(storage, "p", base)),
               ArmResult("better", tuning, best, _seeded_study(storage, "b", better)),
               ArmResult("same", tuning, best, _seeded_study(storage, "s", same))]
    spec = CompareSpec(None, (Arm("plain", ()), Arm("better", ()), Arm("same", ())), "plain", 1, 5, False,
                       "accuracy", "test_accuracy")
    rows = {r.arm: r for r in build_rows(results, spec, describe)}
    assert rows["plain"].kind == "baseline" and rows["plain"].vs_baseline is None
    iv = rows["better"].vs_baseline
    assert iv.n == 5 and iv.low <= 0.05 <= iv.high and iv.low > 0
    assert rows["better"].holm_baseline < 0.05
    assert rows["same"].vs_baseline.low <= 0.0 <= rows["same"].vs_baseline.high
    text = sentence(rows["better"], list(rows.values()), spec, "maximize")
    assert text.startswith("better: +0.05") and "better than plain" in text
    assert "not distinguishable at 5 seeds" in sentence(rows["same"], list(rows.values()), spec, "maximize")
