"""Study reports: ``trials.csv``, interactive plots (HTML) and PNGs through ``optuna.visualization``, and
``summary.md`` with the best trial (or Pareto front) and a per-rule table — "which update rule wins"."""

from __future__ import annotations

import json
import statistics
import warnings
from pathlib import Path

import optuna
import pandas as pd

from .results import best_trials, rule_of, short_config, shown_metrics

COMPLEX_ATTRS = ("history", "config")


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective values, parameters, metrics, block/rule, config (JSON)."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"),
                                   multi_index=False)
    for name in COMPLEX_ATTRS:
        frame = frame.drop(columns=[f"user_attrs_{name}"], errors="ignore")
    frame = frame.rename(columns=lambda c: c.replace("user_attrs_", ""))
    trials = study.get_trials(deepcopy=False)
    frame["block_rule"] = [rule_of(t.user_attrs.get("config", {})) for t in trials]
    frame["config"] = [json.dumps(t.user_attrs.get("config", {}), sort_keys=True) for t in trials]
    return frame


def rule_table(study: optuna.Study) -> pd.DataFrame:
    """Per block/rule over completed trials: count, best and median of the first objective, mean NFE and time."""
    metric = (study.metric_names or ["value"])[0]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    groups: dict[str, list] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        groups.setdefault(rule_of(t.user_attrs.get("config", {})), []).append(t)
    rows = []
    for name, trials in sorted(groups.items()):
        values = [t.values[0] for t in trials]
        nfe = [t.user_attrs["nfe_total"] for t in trials if t.user_attrs.get("nfe_total") is not None]
        secs = [t.user_attrs["device_seconds"] for t in trials if t.user_attrs.get("device_seconds") is not None]
        rows.append({"block/rule": name, "trials": len(trials),
                     f"best {metric}": max(values) if maximize else min(values),
                     f"median {metric}": statistics.median(values),
                     "mean nfe_total": statistics.mean(nfe) if nfe else None,
                     "mean device_seconds": statistics.mean(secs) if secs else None})
    return pd.DataFrame(rows)


def best_frame(study: optuna.Study) -> pd.DataFrame:
    """The best trial or the Pareto front as a table."""
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    rows, trials = [], best_trials(study)
    for t in trials:
        row = {"trial": t.number, **dict(zip(names, t.values, strict=True))}
        row.update({m: t.user_attrs.get(m) for m in shown_metrics(trials, names)})
        row["block/rule"] = rule_of(t.user_attrs.get("config", {}))
        row["searched parameters"] = short_config(t.params)
        rows.append(row)
    return pd.DataFrame(rows)


def _plots(study: optuna.Study):
    """(name, plotly figure factory, matplotlib factory) of every plot that applies to the study."""
    vis, mpl = optuna.visualization, optuna.visualization.matplotlib
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    if len(study.directions) == 1:
        yield "history", vis.plot_optimization_history, mpl.plot_optimization_history, {}
        yield "importances", vis.plot_param_importances, mpl.plot_param_importances, {}
        yield "intermediate", vis.plot_intermediate_values, mpl.plot_intermediate_values, {}
        return
    yield "pareto", vis.plot_pareto_front, mpl.plot_pareto_front, {}
    for i, name in enumerate(names):
        target = {"target": (lambda t, i=i: t.values[i]), "target_name": name}
        yield f"history_{name}", vis.plot_optimization_history, mpl.plot_optimization_history, target
        yield f"importances_{name}", vis.plot_param_importances, mpl.plot_param_importances, target


def write_plots(study: optuna.Study, out: Path) -> tuple[list[str], list[str]]:
    """Write each plot as ``<name>.html`` and ``<name>.png``; return (written names, skipped with reasons)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written, skipped = [], []
    for name, plotly_fn, mpl_fn, kwargs in _plots(study):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks the matplotlib backend experimental
                plotly_fn(study, **kwargs).write_html(out / f"{name}.html", include_plotlyjs="cdn")
                ax = mpl_fn(study, **kwargs)
                figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                figure.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
                plt.close(figure)
            written.append(name)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. too few trials for importances
            skipped.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return written, skipped


def write_report(study: optuna.Study, out: Path) -> Path:
    """Write ``trials.csv``, the plots and ``summary.md`` into ``out``; return the summary's path."""
    out.mkdir(parents=True, exist_ok=True)
    trials_frame(study).to_csv(out / "trials.csv", index=False)
    written, skipped = write_plots(study, out)
    counts = pd.Series([t.state.name for t in study.get_trials(deepcopy=False)]).value_counts()
    kind = "Best trial" if len(study.directions) == 1 else "Pareto front"
    lines = [f"# Study `{study.study_name}`", "",
             "Trials: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items()), "",
             "Objectives: " + ", ".join(f"{n} ({d.name.lower()})" for n, d in
                                          zip(study.metric_names or [], study.directions, strict=False)), "",
             f"## {kind}", "", _markdown(best_frame(study)), "",
             "## Per update rule (completed trials)", "", _markdown(rule_table(study)), "",
             "## Plots", ""]
    lines += [f"![{n}]({n}.png) ([interactive]({n}.html))" for n in written]
    lines += [f"- skipped {s}" for s in skipped]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no completed trial)"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
