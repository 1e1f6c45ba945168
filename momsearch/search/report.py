"""Study reports: ``trials.csv``, interactive plots (HTML) and PNGs through ``optuna.visualization``, and
``summary.md`` with the best trial (or Pareto front) and a per-rule table — "which update rule wins".

When a study repeats configurations over ``train.seed``, the summary adds a "variants over seeds" table (mean
± std per configuration, epochs to reach each plain variant's best mean validation metric, NFE of ODE blocks)
and a plot of the mean validation curves."""

from __future__ import annotations

import json
import statistics
import warnings
from pathlib import Path

import optuna
import pandas as pd

from .results import best_trials, rule_of, short_config, shown_metrics

COMPLEX_ATTRS = ("history", "config")
SEED_KEY = "train.seed"
QUIET_PARAMS = ("eps",)  # numerical guards: left out of variant labels unless they differ between variants
NFE_METRICS = ("nfe_forward", "nfe_backward", "nfe_total")
TASK_METRICS = {"accuracy": "maximize", "mse": "minimize"}  # the validation metric in each trial's history


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


def variant_groups(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Completed trials grouped by their configuration without ``train.seed``, labelled readably; a configuration
    run twice with the same explicit seed counts once (the first run).

    Returns:
        ``{label: trials}``, plain variants first, then by label, e.g. ``{"rnn/plain": [...],
        "rnn/heavy_ball mu=0.6 s=0.6": [...]}``; the label holds the block/rule, the rule's hyperparameters and
        any other setting that differs between groups.
    """
    groups: dict[str, list] = {}
    configs: dict[str, dict] = {}
    seen: set[tuple[str, object]] = set()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        config = {k: v for k, v in t.user_attrs.get("config", {}).items() if k != SEED_KEY}
        key = json.dumps(config, sort_keys=True, default=str)
        seed = t.user_attrs.get("config", {}).get(SEED_KEY)
        if seed is not None and (key, seed) in seen:
            continue  # the same configuration and seed again (parallel samplers can repeat one): counted once
        seen.add((key, seed))
        groups.setdefault(key, []).append(t)
        configs.setdefault(key, config)
    keys = [k for c in configs.values() for k in c]
    varying = [k for k in dict.fromkeys(keys)  # keys with two or more values among the configurations holding them
               if len({json.dumps(c[k], default=str) for c in configs.values() if k in c}) > 1]
    labelled: dict[str, list] = {}
    for key, trials in groups.items():
        label = variant_label(configs[key], varying)
        if label in labelled:  # differs only in a setting the label leaves out: keep both, numbered
            label = f"{label} [{sum(1 for k in labelled if k.startswith(label)) + 1}]"
        labelled[label] = trials
    return dict(sorted(labelled.items(), key=lambda item: (not _is_plain(item[0]), item[0])))


def _is_plain(label: str) -> bool:
    return label.split(" ", 1)[0].endswith("/plain")


def variant_label(config: dict, varying: list[str]) -> str:
    """``block/rule`` + the rule's hyperparameters + the other ``varying`` settings, e.g.
    ``rnn/heavy_ball mu=0.6 s=0.6`` or ``attention/plain kind=softmax``."""
    kind = config.get("block", "?")
    rule_key = next((k for k in config if k.startswith(f"block.{kind}") and k.endswith(".rule")), None)
    prefix = f"{rule_key}.{config[rule_key]}." if rule_key else None
    others = [k for k in varying if k in config and k not in ("block", rule_key) and not k.endswith(".rule")
              and not (prefix and k.startswith(prefix))]
    rule_params = [k for k in config if prefix and k.startswith(prefix)
                   and (k[len(prefix):] not in QUIET_PARAMS or k in varying)]
    parts = [f"{k.rsplit('.', 1)[-1]}={_value(config[k])}" for k in others + rule_params]
    return " ".join([rule_of(config), *parts])


def variant_table(study: optuna.Study) -> pd.DataFrame:
    """Per configuration repeated over ``train.seed``: seeds, mean ± std of the objectives, the test metric and
    device seconds, mean NFE (ODE blocks), and epochs to reach each plain variant's best mean validation metric.

    Returns:
        One row per variant; empty when no configuration ran with two or more explicit ``train.seed`` values.
    """
    groups = variant_groups(study)
    seeds = ({t.user_attrs.get("config", {}).get(SEED_KEY) for t in trials} - {None} for trials in groups.values())
    if not any(len(explicit) > 1 for explicit in seeds):  # derived per-trial seeds are not a repeat design
        return pd.DataFrame()
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    metric = _history_metric(groups)
    targets = {label: _best_mean(trials, metric) for label, trials in groups.items()
               if metric and _is_plain(label)}
    extra = [m for m in (f"test_{metric}" if metric else None, "device_seconds") if m and m not in names]
    has_nfe = any(t.user_attrs.get("nfe_total") is not None for trials in groups.values() for t in trials)
    rows = []
    for label, trials in groups.items():
        row = {"variant": label, "seeds": len(trials)}
        for i, name in enumerate(names):
            row[name] = _mean_std([t.values[i] for t in trials])
        for name in extra:
            row[name] = _mean_std([t.user_attrs.get(name) for t in trials])
        if has_nfe:
            row.update({f"mean {m}": _mean([t.user_attrs.get(m) for t in trials]) for m in NFE_METRICS
                        if m not in names})
        for ref, (target, _) in targets.items():
            row[f"epochs to {metric} {target:.4g} ({ref})"] = _epochs_to_reach(trials, metric, target)
        rows.append(row)
    return pd.DataFrame(rows)


def variant_notes(study: optuna.Study) -> list[str]:
    """Lines under the variants table: what ± means and where each plain variant's best mean lies."""
    groups = variant_groups(study)
    metric = _history_metric(groups)
    lines = ["Mean ± sample standard deviation over seeds. A difference smaller than the spread is within "
             "seed-to-seed noise."]
    for label, trials in groups.items():
        if metric and _is_plain(label):
            target, epoch = _best_mean(trials, metric)
            lines.append(f"`{label}`: best mean validation {metric} {target:.4g} at epoch {epoch}; \"epochs to\" "
                         f"is the first epoch a seed reaches it, averaged over the seeds that do (k/n when not all "
                         f"do).")
    return lines


def plot_variant_curves(study: optuna.Study, path: Path) -> bool:
    """Mean validation curve per variant over seeds, shaded ± std; return False when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    groups = variant_groups(study)
    metric = _history_metric(groups)
    if metric is None or variant_table(study).empty:
        return False
    figure, ax = plt.subplots(figsize=(7.5, 4.5))
    colors, styles = plt.get_cmap("tab10").colors, ("-", "--", ":", "-.")
    for i, (label, trials) in enumerate(groups.items()):
        epochs, means, stds = _curve(trials, metric)
        color = colors[i % len(colors)]
        ax.plot(epochs, means, color=color, linestyle=styles[i // len(colors) % len(styles)],
                label=f"{label} (n={len(trials)})")
        ax.fill_between(epochs, [m - s for m, s in zip(means, stds, strict=True)],
                        [m + s for m, s in zip(means, stds, strict=True)], color=color, alpha=0.12)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {metric} (mean ± std over seeds)")
    ax.set_title(study.study_name)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return True


def _history_metric(groups: dict[str, list]) -> str | None:
    """The validation metric the trials' histories hold (``accuracy`` or ``mse``), or None."""
    for trials in groups.values():
        for t in trials:
            for entry in t.user_attrs.get("history") or []:
                return next((m for m in TASK_METRICS if m in entry), None)
    return None


def _curve(trials: list, metric: str) -> tuple[list[int], list[float], list[float]]:
    """(epochs, mean, std) of the validation metric over the trials that ran each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for t in trials:
        for entry in t.user_attrs.get("history") or []:
            by_epoch.setdefault(entry["epoch"], []).append(entry[metric])
    epochs = sorted(by_epoch)
    return (epochs, [statistics.mean(by_epoch[e]) for e in epochs],
            [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])


def _best_mean(trials: list, metric: str) -> tuple[float, int]:
    """(best value of the mean validation curve, its epoch)."""
    epochs, means, _ = _curve(trials, metric)
    pick = max if TASK_METRICS[metric] == "maximize" else min
    best = pick(range(len(epochs)), key=lambda i: means[i])
    return means[best], epochs[best]


def _epochs_to_reach(trials: list, metric: str, target: float) -> str:
    """Mean over seeds of the first epoch whose validation metric reaches ``target``; ``k/n`` when only k do."""
    maximize = TASK_METRICS[metric] == "maximize"
    reached = []
    for t in trials:
        hits = [e["epoch"] for e in t.user_attrs.get("history") or []
                if (e[metric] >= target if maximize else e[metric] <= target)]
        if hits:
            reached.append(min(hits))
    if not reached:
        return "not reached"
    mean = f"{statistics.mean(reached):.3g}"
    return mean if len(reached) == len(trials) else f"{mean} ({len(reached)}/{len(trials)})"


def _mean_std(values: list) -> str:
    """``mean ± std`` of the measured values (``-`` when none were measured)."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def _mean(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return statistics.mean(values) if values else None


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plots(study: optuna.Study):
    """(name, plotly figure factory, matplotlib factory) of every plot that applies to the study."""
    vis, mpl = optuna.visualization, optuna.visualization.matplotlib
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    if len(study.directions) == 1:
        yield "history", vis.plot_optimization_history, mpl.plot_optimization_history, {}
        yield "importances", vis.plot_param_importances, mpl.plot_param_importances, {}
        if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):  # only pruned studies report
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
             *_timing(study),
             f"## {kind}", "", _markdown(best_frame(study)), "",
             "## Per update rule (completed trials)", "", _markdown(rule_table(study)), ""]
    variants = variant_table(study)
    if not variants.empty:
        lines += ["## Variants over seeds", "", _markdown(variants), "", *variant_notes(study), ""]
        if plot_variant_curves(study, out / "variants.png"):
            lines += ["![variants](variants.png)", ""]
    lines += ["## Plots", ""]
    lines += [f"![{n}]({n}.png) ([interactive]({n}.html))" for n in written]
    lines += [f"- skipped {s}" for s in skipped]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _timing(study: optuna.Study) -> list[str]:
    """One line with the study's elapsed time (first trial start to last trial end) and summed device time."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    if not trials:
        return []
    elapsed = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
    device = sum(t.user_attrs.get("device_seconds") or 0.0 for t in trials)
    return [f"Time: {elapsed.total_seconds() / 60:.1f} min from the first trial's start to the last trial's end; "
            f"{device:.0f} device seconds summed over trials.", ""]


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
