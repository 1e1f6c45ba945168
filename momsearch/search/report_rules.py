"""The numbers behind "which rule wins, at what cost?": every finished trial as a :class:`TrialView`, the per-rule
table, the Pareto front of an objective against a cost, and the trial table written as ``trials.csv``.

Pruned trials are results here: they keep the metrics of their last epoch and the cost of every epoch they
ran, so each rule's cost is the sum over all of its trials, completed, pruned and failed.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

import optuna
import pandas as pd

from ..catalog import METRICS
from .records import Records
from .results import short_config, trial_rule

State = optuna.trial.TrialState
FINISHED = (State.COMPLETE, State.PRUNED, State.FAIL)
STATE_NAMES = {State.COMPLETE: "done", State.PRUNED: "pruned", State.FAIL: "failed"}
COST_METRICS = ("device_seconds", "wall_seconds", "nfe_total", "nfe_forward", "nfe_backward", "params",
                "peak_memory_mb")
INTEGER_METRICS = ("params", "epochs", "seed")
TASK_METRICS = ("accuracy", "mse")  # the validation metric a history holds


@dataclass
class TrialView:
    """One finished trial as the report reads it.

    Attributes:
        number: the trial number.
        state: ``done``, ``pruned`` or ``failed``.
        label: the trial's rule (``heavy_ball``), or ``block/rule`` when the study searched several blocks.
        values: objective name -> value: the objective values of a completed trial; for a pruned or failed one
            the same metrics as far as it got (a pruned trial's at its last epoch), None where not measured.
        attrs: the trial's user attributes (scalar metrics, seed, ``status_reason``).
        params: the searched parameters.
        config: the full configuration (None where none was recorded).
        history: per-epoch validation metrics.
    """

    number: int
    state: str
    label: str
    values: dict[str, float | None]
    attrs: dict
    params: dict
    config: dict | None = None
    history: list[dict] = field(default_factory=list)

    def cost(self, metric: str) -> float:
        """A cost metric of the trial, 0 where it was not measured (e.g. a trial that failed before training)."""
        value = self.attrs.get(metric)
        return float(value) if value is not None else 0.0


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objective names (``objective_0``... where it has none)."""
    return list(study.metric_names or [f"objective_{i}" for i in range(len(study.directions))])


def maximized(study: optuna.Study) -> dict[str, bool]:
    """Objective name -> True when it is maximised."""
    return {name: d == optuna.study.StudyDirection.MAXIMIZE
            for name, d in zip(objective_names(study), study.directions, strict=True)}


def trial_views(study: optuna.Study, records: Records | None = None) -> list[TrialView]:
    """Every finished trial (completed, pruned, failed), labelled by rule; running and waiting trials are left out.

    Args:
        study: the study.
        records: where trials' configurations and histories are read (default: their user attributes only).
    """
    records = records or Records()
    names = objective_names(study)
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    rules = [trial_rule(t) for t in trials]
    several_blocks = len({r.split("/", 1)[0] for r in rules}) > 1
    views = []
    for t, rule in zip(trials, rules, strict=True):
        if t.state == State.COMPLETE:
            values = dict(zip(names, t.values, strict=True))
        else:
            values = {n: _number(t.user_attrs.get(n)) for n in names}
        label = rule if several_blocks else rule.split("/", 1)[-1]
        views.append(TrialView(t.number, STATE_NAMES[t.state], label, values, dict(t.user_attrs), dict(t.params),
                               records.config(t), records.history(t)))
    return views


def has_nfe(views: list[TrialView]) -> bool:
    """Whether any trial evaluated an ODE vector field (its ``nfe_total`` is above 0)."""
    return any((v.attrs.get("nfe_total") or 0) > 0 for v in views)


def rule_table(study: optuna.Study, records: Records | None = None, views: list[TrialView] | None = None
               ) -> pd.DataFrame:
    """One row per rule that was tried, then a ``total`` row.

    Columns: trials, done, pruned, failed; per objective the best and the median over the rule's completed
    trials (``-`` when none completed); the total cost over all of the rule's trials (device seconds, epochs,
    and function evaluations when ODE blocks were searched); the best completed trial (on the first objective)
    and its searched parameters.
    """
    views = trial_views(study, records) if views is None else views
    names, maximize = objective_names(study), maximized(study)
    costs = ["device_seconds", "epochs"] + (["nfe_total"] if has_nfe(views) else [])
    groups: dict[str, list[TrialView]] = {}
    for view in views:
        groups.setdefault(view.label, []).append(view)
    rows = []
    for label in sorted(groups, key=lambda g: (not g.endswith("plain"), g)):
        trials = groups[label]
        done = [v for v in trials if v.state == "done"]
        row = {"rule": label, "trials": len(trials), "done": len(done),
               "pruned": sum(v.state == "pruned" for v in trials), "failed": sum(v.state == "failed" for v in trials)}
        for name in names:
            values = [v.values[name] for v in done]
            row[f"best {name}"] = (max if maximize[name] else min)(values) if values else None
            row[f"median {name}"] = statistics.median(values) if values else None
        for cost in costs:
            row[f"total {cost}"] = _total(trials, cost)
        best = best_view(done, names[0], maximize[names[0]])
        row["best trial"] = best.number if best else None
        row["best configuration"] = (short_config(best.params) or "-") if best else "-"
        rows.append(row)
    total = {"rule": "total", "trials": len(views)}
    total.update({k: sum(r[k] for r in rows) for k in ("done", "pruned", "failed")})
    total.update({f"total {cost}": _total(views, cost) for cost in costs})
    return pd.DataFrame(rows + [total]) if rows else pd.DataFrame()


def best_view(views: list[TrialView], objective: str, maximize: bool) -> TrialView | None:
    """The view with the best value of ``objective`` (the lowest trial number on a tie); None if there is none."""
    scored = [v for v in views if v.values.get(objective) is not None]
    if not scored:
        return None
    return min(scored, key=lambda v: (-v.values[objective] if maximize else v.values[objective], v.number))


def pareto_front(points: list[tuple[float, float]], maximize_y: bool) -> list[int]:
    """Indices of the points (cost x, objective y) that no other point dominates, sorted by cost; the cost is
    minimised, the objective maximised or minimised."""
    sign = 1.0 if maximize_y else -1.0
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(x2 <= x and sign * y2 >= sign * y and (x2 < x or sign * y2 > sign * y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def history_metric(views: list[TrialView]) -> str | None:
    """The validation metric the trials' histories hold (``accuracy`` or ``mse``), or None."""
    for view in views:
        for entry in view.history:
            return next((m for m in TASK_METRICS if m in entry), None)
    return None


def trials_frame(study: optuna.Study, records: Records | None = None) -> pd.DataFrame:
    """One row per trial (all states): number, state, rule, objective values under their own names, status
    reason, parameters, metrics (integer ones as integers, missing ones empty), duration and the configuration
    as JSON."""
    records = records or Records()
    names = objective_names(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name, "rule": trial_rule(t)}
        row.update({n: (t.values[i] if t.state == State.COMPLETE else _number(t.user_attrs.get(n)))
                    for i, n in enumerate(names)})
        row["status_reason"] = t.user_attrs.get("status_reason")
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row.update({k: v for k, v in t.user_attrs.items() if k not in names and k not in row
                    and not isinstance(v, dict | list)})
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        row["config"] = json.dumps(records.config(t) or {}, sort_keys=True)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in INTEGER_METRICS:
        if column in frame:
            frame[column] = frame[column].astype("Int64")  # an integer with gaps stays an integer
    return frame


def _total(views: list[TrialView], metric: str) -> float:
    return sum(v.cost(metric) for v in views)


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def metric_direction(name: str) -> str:
    """``maximize`` or ``minimize`` for a catalog metric (``minimize`` for an unknown one)."""
    return METRICS.get(name, ("minimize",))[0]
