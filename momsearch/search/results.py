"""Text tables of a study's results: the best trial or the Pareto front, with metrics and configuration."""

from __future__ import annotations

import optuna

SHOWN_METRICS = ("accuracy", "mse", "test_accuracy", "test_mse", "nfe_total", "device_seconds", "params")
RULE_ATTR = "rule"  # the user attribute holding a trial's block/rule


def rule_of(config: dict) -> str:
    """``block/rule`` of a trial configuration, e.g. ``rnn/heavy_ball``."""
    kind = config.get("block", "?")
    rule = next((v for k, v in config.items() if k.startswith(f"block.{kind}") and k.endswith(".rule")), "plain")
    return f"{kind}/{rule}"


def trial_rule(trial: optuna.trial.FrozenTrial) -> str:
    """``block/rule`` of a trial: its ``rule`` user attribute (from its configuration in older studies)."""
    return trial.user_attrs.get(RULE_ATTR) or rule_of(trial.user_attrs.get("config") or {})


def short_config(params: dict) -> str:
    """A trial's searched parameters in one line, by their last name (``mu=0.6 lr=0.003``); block and rule,
    shown in their own column, are left out."""
    parts = []
    for key, value in params.items():
        if key == "block" or key.endswith(".rule"):
            continue
        leaf = key.rsplit(".", 1)[-1]
        parts.append(f"{leaf}={value:.4g}" if isinstance(value, float) else f"{leaf}={value}")
    return " ".join(parts)


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial of a single-objective study, or the Pareto front of a multi-objective one."""
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


def shown_metrics(trials, objective_names) -> list[str]:
    """The metrics worth a column next to the objectives: those some of the trials actually measured."""
    return [m for m in SHOWN_METRICS if m not in objective_names
            and any(t.user_attrs.get(m) is not None for t in trials)]


def table(study: optuna.Study) -> str:
    """The final table of ``momsearch run``: best trial or Pareto front."""
    trials = best_trials(study)
    if not trials:
        return "no completed trial"
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    title = "best trial" if len(study.directions) == 1 else f"Pareto front ({len(trials)} trials)"
    extra = shown_metrics(trials, names)
    header = ["trial", *names, *extra, "block/rule", "searched parameters"]
    rows = []
    for t in trials:
        values = [_fmt(v) for v in t.values]
        metrics = [_fmt(t.user_attrs.get(m)) for m in extra]
        rows.append([str(t.number), *values, *metrics, trial_rule(t), short_config(t.params)])
    return f"{title}\n" + _format(header, rows)


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _format(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)] + [row[-1]]
        lines.append("  ".join(cells))
    return "\n".join(lines)
