"""The verdict of a comparison: per-arm intervals, paired differences, Holm's adjustment, one sentence per arm.

Every number is the first objective's *test* value of the confirmation runs (the tuning runs chose the
configuration on validation). Differences pair runs by training seed; intervals are 95% t intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from optuna.trial import TrialState

from .compare_stats import Interval, holm, mean_interval, paired_interval

ALPHA = 0.05


@dataclass
class Row:
    """One row of the verdict: an arm, the baseline or a control."""

    arm: str
    kind: str  # baseline | arm | control
    config: str
    values: dict[int, float]  # seed -> test metric
    device_seconds: list[float]
    nfe_total: list[float]
    curves: dict[int, list[float]]  # seed -> validation metric per epoch
    tuning_trials: int = 0
    control_of: str = ""
    note: str = ""
    metric: Interval | None = None
    vs_baseline: Interval | None = None
    vs_arm: Interval | None = None
    holm_baseline: float = math.nan
    holm_arm: float = math.nan
    extra: dict = field(default_factory=dict)


def seeded_runs(study, test_metric: str, metric: str, records=None) -> tuple[dict, list, list, dict]:
    """Per seed, the test metric, device seconds, total NFE and validation curve of a study's completed runs."""
    values, seconds, nfe, curves = {}, [], [], {}
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        seed = int(t.user_attrs["seed"])
        if seed in values or t.user_attrs.get(test_metric) is None:
            continue
        values[seed] = float(t.user_attrs[test_metric])
        seconds.append(float(t.user_attrs.get("device_seconds", math.nan)))
        nfe.append(float(t.user_attrs.get("nfe_total") or 0.0))
        history = records.history(t) if records is not None else t.user_attrs.get("history") or []
        curves[seed] = [float(e[metric]) for e in history if metric in e]
    return values, seconds, nfe, curves


def build_rows(results, spec, describe) -> list[Row]:
    """The verdict's rows (baseline first, then arms, each followed by its control) with intervals and Holm.

    Args:
        results: ``ArmResult`` per arm (from ``run_compare``).
        spec: the ``CompareSpec``.
        describe: the best tuning trial's params -> short text of the arm's chosen hyperparameters.
    """
    base_metric = spec.metric
    rows = []
    for result in sorted(results, key=lambda r: r.name != spec.baseline):
        values, seconds, nfe, curves = seeded_runs(result.confirm, spec.test_metric, base_metric, result.records)
        tuning = [t for t in result.tuning.get_trials(deepcopy=False)  # the budget: trials with a result
                  if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        kind = "baseline" if result.name == spec.baseline else "arm"
        rows.append(Row(result.name, kind, describe(result.best.params), values, seconds, nfe,
                        curves, len(tuning), note=result.control_text if spec.controls else ""))
        rows[-1].extra["tuning_device_seconds"] = sum(float(t.user_attrs.get("device_seconds") or 0.0)
                                                      for t in result.tuning.get_trials(deepcopy=False))
        if result.control is not None:
            values, seconds, nfe, curves = seeded_runs(result.control, spec.test_metric, base_metric, result.records)
            rows.append(Row(f"{result.name}:control", "control", result.control_text, values, seconds, nfe,
                            curves, control_of=result.name))
    by_name = {row.arm: row for row in rows}
    baseline = by_name[spec.baseline]
    for row in rows:
        row.metric = mean_interval(list(row.values.values()))
        if row is not baseline:
            row.vs_baseline = _paired(row.values, baseline.values)
        if row.control_of:
            row.vs_arm = _paired(row.values, by_name[row.control_of].values)
    tests = [(row, "holm_baseline", row.vs_baseline.p) for row in rows if row.vs_baseline is not None]
    tests += [(row, "holm_arm", row.vs_arm.p) for row in rows if row.vs_arm is not None]
    for (row, attr, _), adjusted in zip(tests, holm([p for _, _, p in tests]), strict=True):
        setattr(row, attr, adjusted)
    return rows


def _paired(a: dict[int, float], b: dict[int, float]) -> Interval:
    seeds = sorted(set(a) & set(b))
    return paired_interval([a[s] for s in seeds], [b[s] for s in seeds])


def csv_records(rows: list[Row], spec) -> list[dict]:
    """The rows of ``verdict.csv``."""
    m = spec.test_metric
    has_nfe = any(x > 0 for row in rows for x in row.nfe_total)
    out = []
    for row in rows:
        rec = {"arm": row.arm, "kind": row.kind, "config": row.config, "n_seeds": row.metric.n,
               f"{m}_mean": row.metric.mean, f"{m}_ci_low": row.metric.low, f"{m}_ci_high": row.metric.high}
        for prefix, iv, adj in (("delta", row.vs_baseline, row.holm_baseline), ("delta_vs_arm", row.vs_arm,
                                                                               row.holm_arm)):
            head = "delta_vs_baseline" if prefix == "delta" else prefix
            rec[head] = iv.mean if iv else math.nan
            rec[f"{prefix}_ci_low"] = iv.low if iv else math.nan
            rec[f"{prefix}_ci_high"] = iv.high if iv else math.nan
            rec[f"{prefix}_p" if prefix != "delta" else "p_vs_baseline"] = iv.p if iv else math.nan
            rec[f"{prefix}_p_holm" if prefix != "delta" else "p_holm_vs_baseline"] = adj
        rec["control_of"] = row.control_of
        rec["tuning_trials"] = row.tuning_trials if row.kind != "control" else ""
        rec["tuning_device_seconds"] = row.extra.get("tuning_device_seconds", "")
        rec["device_seconds_mean"] = _mean(row.device_seconds)
        if has_nfe:
            rec["nfe_total_mean"] = _mean(row.nfe_total)
        rec["seeds"] = " ".join(str(s) for s in sorted(row.values))
        out.append(rec)
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def sentence(row: Row, rows: list[Row], spec, direction: str) -> str:
    """One plain sentence about an arm: its difference to the baseline and, if any, to its control."""
    sign = 1.0 if direction == "maximize" else -1.0
    n = row.vs_baseline.n
    text = f"{row.arm}: {_iv(row.vs_baseline)} vs {spec.baseline}, "
    text += _judge(row.vs_baseline, row.holm_baseline, sign, n, spec.baseline)
    control = next((r for r in rows if r.control_of == row.arm), None)
    if control is None:
        return text + (f"; no control: {row.note}." if row.note else ".")
    flipped = Interval(-control.vs_arm.mean, -control.vs_arm.high, -control.vs_arm.low, control.vs_arm.n,
                       control.vs_arm.p)
    text += f"; against its control ({control.config}) {_iv(flipped)}, "
    text += _judge(flipped, control.holm_arm, sign, flipped.n, "its control")
    differs = row.holm_baseline < ALPHA
    if control.holm_arm >= ALPHA:
        text += (": the difference is the step size, not the momentum." if differs
                 else ": the momentum itself made no measurable difference.")
    elif sign * flipped.mean > 0:
        text += ": the momentum helped beyond the step size."
    else:
        text += ": the momentum hurt at this step size."
    return text


def _iv(iv: Interval) -> str:
    mean, low, high = (0.0 if abs(x) < 1e-12 else x for x in (iv.mean, iv.low, iv.high))
    return f"{mean:+.4g} [{low:+.4g}, {high:+.4g}]"


def _judge(iv: Interval, adjusted: float, sign: float, n: int, other: str) -> str:
    if math.isnan(adjusted) or adjusted >= ALPHA:
        return f"not distinguishable at {n} seeds (Holm p = {adjusted:.2g})"
    word = "better" if sign * iv.mean > 0 else "worse"
    return f"{word} than {other} (Holm p = {adjusted:.2g})"
