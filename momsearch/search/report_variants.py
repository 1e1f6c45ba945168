"""The "variants over seeds" table of a report: when a study repeats configurations over ``train.seed``, mean ±
std per configuration, epochs to reach each plain variant's best mean validation metric, NFE of ODE blocks, and
a plot of the mean validation curves."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna
import pandas as pd

from .records import Records
from .results import rule_of

SEED_KEY = "train.seed"
QUIET_PARAMS = ("eps",)  # numerical guards: left out of variant labels unless they differ between variants
NFE_METRICS = ("nfe_forward", "nfe_backward", "nfe_total")
TASK_METRICS = {"accuracy": "maximize", "mse": "minimize"}  # the validation metric in each trial's history


class _WithRecord:
    """A completed trial with its record read: ``number``, ``values``, ``user_attrs``, ``config``, ``history``."""

    def __init__(self, trial: optuna.trial.FrozenTrial, config: dict, history: list[dict]):
        self.number, self.values, self.user_attrs = trial.number, trial.values, trial.user_attrs
        self.config, self.history = config, history


def variant_groups(study: optuna.Study, records: Records | None = None) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Completed trials grouped by their configuration without ``train.seed``, labelled readably; a configuration
    run twice with the same explicit seed counts once (the first run).

    Returns:
        ``{label: trials}``, plain variants first, then by label, e.g. ``{"rnn/plain": [...],
        "rnn/heavy_ball mu=0.6 s=0.6": [...]}``; the label holds the block/rule, the rule's hyperparameters and
        any other setting that differs between groups.
    """
    records = records or Records()
    groups: dict[str, list] = {}
    configs: dict[str, dict] = {}
    seen: set[tuple[str, object]] = set()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        full = records.config(t) or {}
        config = {k: v for k, v in full.items() if k != SEED_KEY}
        key = json.dumps(config, sort_keys=True, default=str)
        seed = full.get(SEED_KEY)
        if seed is not None and (key, seed) in seen:
            continue  # the same configuration and seed again (parallel samplers can repeat one): counted once
        seen.add((key, seed))
        groups.setdefault(key, []).append(_WithRecord(t, full, records.history(t)))
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


def variant_table(study: optuna.Study, records: Records | None = None) -> pd.DataFrame:
    """Per configuration repeated over ``train.seed``: seeds, mean ± std of the objectives, the test metric and
    device seconds, mean NFE (ODE blocks), and epochs to reach each plain variant's best mean validation metric.

    Returns:
        One row per variant; empty when no configuration ran with two or more explicit ``train.seed`` values.
    """
    groups = variant_groups(study, records)
    seeds = ({t.config.get(SEED_KEY) for t in trials} - {None} for trials in groups.values())
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


def variant_notes(study: optuna.Study, records: Records | None = None) -> list[str]:
    """Lines under the variants table: what ± means and where each plain variant's best mean lies."""
    groups = variant_groups(study, records)
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


def plot_variant_curves(study: optuna.Study, path: Path, records: Records | None = None) -> bool:
    """Mean validation curve per variant over seeds, shaded ± std; return False when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    groups = variant_groups(study, records)
    metric = _history_metric(groups)
    if metric is None or variant_table(study, records).empty:
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
            for entry in t.history:
                return next((m for m in TASK_METRICS if m in entry), None)
    return None


def _curve(trials: list, metric: str) -> tuple[list[int], list[float], list[float]]:
    """(epochs, mean, std) of the validation metric over the trials that ran each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for t in trials:
        for entry in t.history:
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
        hits = [e["epoch"] for e in t.history
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
