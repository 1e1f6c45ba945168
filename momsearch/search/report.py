"""Study reports that answer "which rule wins, at what cost?".

``write_report`` writes into one directory:

- ``summary.md``: trial counts and the cost of every trial (pruned ones included), the per-rule table (every
  rule tried, completed/pruned/failed counts, best and median objective, total cost, best configuration), the
  best trial or the Pareto front, parameter importances (fANOVA, named there), and — when a study repeats
  configurations over ``train.seed`` — the "variants over seeds" table;
- ``by_rule.png``, ``cost_vs_<objective>.png``, ``curves_by_rule.png``: the rule-centred figures;
- ``trials.csv``: one row per trial;
- Optuna's optimisation-history / Pareto-front / importance plots as PNG and as HTML that works offline
  (``plotly.min.js`` is written once beside them).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pandas as pd

from . import plots
from .records import Records
from .report_rules import COST_METRICS, TrialView, maximized, objective_names, rule_table, trial_views, trials_frame
from .report_variants import plot_variant_curves, variant_label, variant_notes, variant_table
from .results import best_trials, short_config, shown_metrics, trial_rule

__all__ = ["write_report", "rule_table", "trials_frame", "best_frame", "importances", "variant_label",
           "variant_table", "variant_notes", "plot_variant_curves", "MIN_IMPORTANCE_TRIALS"]

MIN_IMPORTANCE_TRIALS = 8  # fANOVA's random forest on fewer completed trials says little
IMPORTANCE_METHOD = ("fANOVA (`optuna.importance.FanovaImportanceEvaluator`, 64 trees, seed 0) on the completed "
                     "trials")
PLOTLY_JS = "directory"  # plotly.min.js copied once beside the HTML files: they work offline


def best_frame(study: optuna.Study) -> pd.DataFrame:
    """The best trial or the Pareto front as a table."""
    names = objective_names(study)
    rows, trials = [], best_trials(study)
    for t in trials:
        row = {"trial": t.number, **dict(zip(names, t.values, strict=True))}
        row.update({m: t.user_attrs.get(m) for m in shown_metrics(trials, names)})
        row["block/rule"] = trial_rule(t)
        row["searched parameters"] = short_config(t.params)
        rows.append(row)
    return pd.DataFrame(rows)


def importances(study: optuna.Study, objective: int = 0) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances of the parameters present in every completed trial, for one objective.

    Returns:
        (importances normalised to sum 1, a sentence naming the method and the trials), or (None, a sentence
        saying why they are left out: fewer than ``MIN_IMPORTANCE_TRIALS`` completed trials, or no parameter
        that varies across all of them).
    """
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    name = objective_names(study)[objective]
    if len(completed) < MIN_IMPORTANCE_TRIALS:
        return None, (f"Importances of `{name}` left out: {len(completed)} completed trials, fewer than the "
                      f"{MIN_IMPORTANCE_TRIALS} that fANOVA needs to say anything.")
    try:
        values = optuna.importance.get_param_importances(study, evaluator=_evaluator(),
                                                         target=lambda t: t.values[objective])
    except (ValueError, RuntimeError) as exc:
        return None, f"Importances of `{name}` left out: {str(exc).splitlines()[0]}"
    if not values:
        return None, (f"Importances of `{name}` left out: no searched parameter is present in every completed "
                      "trial.")
    return values, (f"Importances of `{name}`: {IMPORTANCE_METHOD} ({len(completed)} trials); parameters present "
                    "in every completed trial only (a rule's own parameters are conditional and left out).")


def _evaluator():
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


def _optuna_plots(study: optuna.Study, with_importances: list[int]):
    """(name, plotly factory, matplotlib factory, kwargs) of Optuna's plots that apply to the study."""
    vis, mpl = optuna.visualization, optuna.visualization.matplotlib
    names = objective_names(study)
    single = len(names) == 1
    if not single:
        yield "pareto", vis.plot_pareto_front, mpl.plot_pareto_front, {}
    for i, name in enumerate(names):
        target = {} if single else {"target": (lambda t, i=i: t.values[i]), "target_name": name}
        suffix = "" if single else f"_{name}"
        yield f"history{suffix}", vis.plot_optimization_history, mpl.plot_optimization_history, target
        if i in with_importances:
            kwargs = {"evaluator": _evaluator(), "target": (lambda t, i=i: t.values[i]), "target_name": name}
            yield f"importances{suffix}", vis.plot_param_importances, mpl.plot_param_importances, kwargs


def write_optuna_plots(study: optuna.Study, out: Path, with_importances: list[int]) -> tuple[list[str], list[str]]:
    """Write each of Optuna's plots as ``<name>.html`` (offline) and ``<name>.png``; return (written names,
    skipped with reasons)."""
    plt = plots._pyplot()
    written, skipped = [], []
    for name, plotly_fn, mpl_fn, kwargs in _optuna_plots(study, with_importances):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks the matplotlib backend experimental
                title = _title(study, name)
                figure = plotly_fn(study, **kwargs)
                if title:
                    figure.update_layout(title=title)
                figure.write_html(str(out / f"{name}.html"), include_plotlyjs=PLOTLY_JS)
                ax = mpl_fn(study, **kwargs)
                if title and hasattr(ax, "set_title"):
                    ax.set_title(title)
                figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                figure.savefig(out / f"{name}.png", dpi=plots.DPI, bbox_inches="tight")
                plt.close(figure)
            written.append(name)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. no completed trial
            skipped.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return written, skipped


def _title(study: optuna.Study, name: str) -> str | None:
    """The importance plots' title names the method and the trials it used."""
    if not name.startswith("importances"):
        return None
    n = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    return f"Parameter importances: fANOVA over {n} completed trials"


def write_report(study: optuna.Study, out: Path, records: Records | None = None) -> Path:
    """Write ``summary.md``, the figures and ``trials.csv`` into ``out``; return the summary's path.

    Args:
        study: the study.
        out: the report directory (created).
        records: reads the trials' configurations and histories from the study's artifact store (default:
            from their user attributes only, as studies before per-trial records kept them).
    """
    out.mkdir(parents=True, exist_ok=True)
    records = records or Records()
    trials_frame(study, records).to_csv(out / "trials.csv", index=False)
    views = trial_views(study, records)
    names, maximize = objective_names(study), maximized(study)
    labels = _labels(views)
    lines = [f"# Study `{study.study_name}`", "", *_overview(study, views), ""]
    unread = [v.number for v in views if v.config is None and "record_artifact" in v.attrs]
    if unread:
        lines += [f"{len(unread)} trials' records (configuration, history) were not found in the artifact store: "
                  "their learning curves are left out (name the study's output directory with `--out`).", ""]
    if not views:
        path = out / "summary.md"
        path.write_text("\n".join(lines + ["No finished trial yet."]) + "\n")
        return path

    lines += ["## Per update rule: which rule wins", "", _markdown(rule_table(study, views=views)), "",
              *_table_notes(views, names), ""]
    plots.plot_by_rule(views, labels, maximize, out / "by_rule.png")
    lines += ["![by rule](by_rule.png)", ""]

    lines += ["## At what cost", ""]
    for name in names:
        if name in COST_METRICS:
            continue  # a cost itself: the cost plots of the other objectives show it
        plots.plot_cost(views, labels, name, maximize[name], out / f"cost_vs_{name}.png")
        lines += [f"![cost vs {name}](cost_vs_{name}.png)", ""]
    lines += ["Filled: completed trials; hollow: pruned trials, at the value of their last epoch and the cost "
              "they spent until stopped. The dashed step line is the Pareto front of the completed trials (no "
              "other completed trial is both cheaper and better).", ""]
    if plots.plot_curves(views, labels, out / "curves_by_rule.png"):
        lines += ["## Learning curves", "", "![curves by rule](curves_by_rule.png)", "",
                  "Validation curves, one line per trial, coloured by rule; dotted: pruned trials.", ""]

    kind = "Best trial" if len(names) == 1 else "Pareto front"
    lines += [f"## {kind}", "", _markdown(best_frame(study)), ""]

    lines += ["## Parameter importances", ""]
    with_importances = []
    for i in range(len(names)):
        values, sentence = importances(study, i)
        lines += [sentence, ""]
        if values:
            with_importances.append(i)
            lines += [_markdown(pd.DataFrame({"parameter": list(values), "importance": list(values.values())})), ""]
    written, skipped = write_optuna_plots(study, out, with_importances)
    lines += [f"![{n}]({n}.png)" for n in written if n.startswith("importances")]

    variants = variant_table(study, records)
    if not variants.empty:
        lines += ["", "## Variants over seeds", "", _markdown(variants), "", *variant_notes(study, records), ""]
        if plot_variant_curves(study, out / "variants.png", records):
            lines += ["![variants](variants.png)", ""]
    lines += ["", "## More plots", ""]
    lines += [f"- {n}: [PNG]({n}.png), [interactive]({n}.html)" for n in written]
    lines += [f"- skipped {s}" for s in skipped]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _labels(views: list[TrialView]) -> list[str]:
    """The rules in table order: plain first, then by name."""
    return sorted({v.label for v in views}, key=lambda g: (not g.endswith("plain"), g))


def _overview(study: optuna.Study, views: list[TrialView]) -> list[str]:
    """Trial counts, objectives, and the cost of all trials with the pruned trials' share."""
    counts = pd.Series([t.state.name.lower() for t in study.get_trials(deepcopy=False)]).value_counts()
    lines = ["Trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()), "",
             "Objectives: " + ", ".join(f"{n} ({'maximize' if up else 'minimize'})"
                                          for n, up in maximized(study).items()), ""]
    if not views:
        return lines
    device = sum(v.cost("device_seconds") for v in views)
    pruned = sum(v.cost("device_seconds") for v in views if v.state == "pruned")
    share = f" ({pruned:.0f} s, {100 * pruned / device:.0f}%, in pruned trials)" if device > 0 and pruned else ""
    line = f"Cost: {device:.1f} device seconds over all {len(views)} finished trials{share}"
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    if trials:
        elapsed = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
        line += f"; {elapsed.total_seconds() / 60:.1f} min from the first trial's start to the last trial's end"
    return lines + [line + "."]


def _table_notes(views: list[TrialView], names: list[str]) -> list[str]:
    notes = [f"`best` and `median` {', '.join(names)}: over each rule's completed trials (`-`: none completed). "
             "`total` costs: over all of a rule's trials — completed, pruned (until stopped) and failed. "
             "`best configuration`: the searched parameters of the rule's best completed trial."]
    never = [label for label in _labels(views) if not any(v.label == label and v.state == "done" for v in views)]
    if never:
        notes.append("Tried but never completed: " + ", ".join(f"`{n}`" for n in never) + ".")
    return notes


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
