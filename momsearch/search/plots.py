"""The report's rule-centred figures (matplotlib, PNG): the objective per rule, the objective against its cost,
and the learning curves, each coloured by rule the same way; completed trials drawn solid, pruned ones hollow
or dotted."""

from __future__ import annotations

from pathlib import Path

from .report_rules import TrialView, has_nfe, history_metric, pareto_front

DPI = 110
COST_AXES = {"device_seconds": "device seconds (training, all epochs run)",
             "nfe_total": "function evaluations (nfe_total, whole training)"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rule_colors(labels: list[str]) -> dict[str, tuple]:
    """One colour per rule, the same in every figure."""
    plt = _pyplot()
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def _direction(maximize: bool) -> str:
    return "higher is better" if maximize else "lower is better"


def plot_by_rule(views: list[TrialView], labels: list[str], objectives: dict[str, bool], path: Path) -> None:
    """``by_rule.png``: each objective per rule, one point per trial (completed filled, pruned hollow at its
    last epoch's value), a box over the completed trials, and "n done / n pruned" under each rule."""
    plt = _pyplot()
    colors = rule_colors(labels)
    figure, axes = plt.subplots(1, len(objectives), figsize=(max(6.0, 1.3 * len(labels) + 2.5) * len(objectives), 4.8),
                                squeeze=False)
    for ax, (name, maximize) in zip(axes[0], objectives.items(), strict=True):
        done = [[v.values[name] for v in views if v.label == label and v.state == "done"
                 and v.values[name] is not None] for label in labels]
        boxes = [(i, d) for i, d in enumerate(done) if len(d) >= 2]
        if boxes:
            ax.boxplot([d for _, d in boxes], positions=[i for i, _ in boxes], widths=0.5, showfliers=False,
                       medianprops={"color": "black"}, boxprops={"color": "0.6"}, whiskerprops={"color": "0.6"},
                       capprops={"color": "0.6"})
        for i, label in enumerate(labels):
            for state, marker in (("done", "o"), ("pruned", "o")):
                ys = [v.values[name] for v in views if v.label == label and v.state == state
                      and v.values[name] is not None]
                xs = [i + offset for offset in _jitter(len(ys))]
                face = colors[label] if state == "done" else "none"
                ax.scatter(xs, ys, s=36, marker=marker, facecolors=face, edgecolors=colors[label], linewidths=1.4,
                           zorder=3)
                if state == "pruned":  # its value is from an earlier epoch than a completed trial's: say which
                    epochs = [v.attrs.get("epochs") for v in views if v.label == label and v.state == state
                              and v.values[name] is not None]
                    for x, y, epoch in zip(xs, ys, epochs, strict=True):
                        if epoch:
                            ax.annotate(f"ep {epoch}", (x, y), textcoords="offset points", xytext=(5, -3),
                                        fontsize=6, color="0.4")
        ticks = []
        for label in labels:
            n_done = sum(v.label == label and v.state == "done" for v in views)
            n_pruned = sum(v.label == label and v.state == "pruned" for v in views)
            n_failed = sum(v.label == label and v.state == "failed" for v in views)
            ticks.append(f"{label}\n{n_done} done / {n_pruned} pruned" + (f"\n{n_failed} failed" if n_failed else ""))
        ax.set_xticks(range(len(labels)), ticks, fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_ylabel(f"{name} ({_direction(maximize)})")
        ax.grid(axis="y", alpha=0.3)
        ax.scatter([], [], s=36, color="0.3", label="completed (best epoch)")
        ax.scatter([], [], s=36, facecolors="none", edgecolors="0.3", linewidths=1.4,
                   label="pruned (value at the epoch it was stopped)")
        ax.legend(fontsize=8, loc="best")
    figure.suptitle(f"{', '.join(objectives)} per rule (box: completed trials)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)


def cost_axes(views: list[TrialView]) -> list[str]:
    """The costs to plot an objective against: device seconds, and function evaluations when ODE blocks ran."""
    return ["device_seconds"] + (["nfe_total"] if has_nfe(views) else [])


def plot_cost(views: list[TrialView], labels: list[str], objective: str, maximize: bool, path: Path) -> None:
    """``cost_vs_<objective>.png``: the objective against each cost, coloured by rule (completed filled, pruned
    hollow: a pruned trial's cost is what it spent before it was stopped), with the Pareto front of the
    completed trials (cheapest for its value) drawn as a step line."""
    plt = _pyplot()
    import matplotlib.ticker

    colors = rule_colors(labels)
    costs = cost_axes(views)
    figure, axes = plt.subplots(1, len(costs), figsize=(7.2 * len(costs), 4.8), squeeze=False)
    for ax, cost in zip(axes[0], costs, strict=True):
        shown = [v for v in views if v.values[objective] is not None and v.attrs.get(cost) is not None
                 and (cost != "nfe_total" or v.attrs[cost] > 0)]  # no ODE block: no evaluations to plot
        for label in labels:
            for state in ("done", "pruned"):
                group = [v for v in shown if v.label == label and v.state == state]
                if group:
                    ax.scatter([v.attrs[cost] for v in group], [v.values[objective] for v in group], s=40,
                               facecolors=colors[label] if state == "done" else "none", edgecolors=colors[label],
                               linewidths=1.4, zorder=3)
        done = [v for v in shown if v.state == "done"]
        points = [(float(v.attrs[cost]), float(v.values[objective])) for v in done]
        front = [points[i] for i in pareto_front(points, maximize)]
        if front:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=1,
                    linestyle="--", zorder=2)
            ax.scatter([p[0] for p in front], [p[1] for p in front], s=110, facecolors="none", edgecolors="black",
                       linewidths=1, zorder=2, label="Pareto front (completed trials)")
            for i in pareto_front(points, maximize):
                ax.annotate(f"#{done[i].number}", points[i], textcoords="offset points", xytext=(6, 5), fontsize=7)
        if _spread(v.attrs[cost] for v in shown) > 30:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
        label = COST_AXES[cost] + (", log scale" if ax.get_xscale() == "log" else "")
        left_out = sum(v.values[objective] is not None and v.attrs.get(cost) == 0 for v in views)
        if cost == "nfe_total" and left_out:
            label += f"\n({left_out} trials without ODE blocks left out)"
        ax.set_xlabel(label)
        ax.set_ylabel(f"{objective} ({_direction(maximize)})")
        ax.grid(alpha=0.3)
        ax.margins(0.08)  # room for the trial labels of the front
        for label in labels:
            ax.scatter([], [], s=40, color=colors[label], label=label)
        ax.scatter([], [], s=40, facecolors="none", edgecolors="0.3", linewidths=1.4,
                   label="hollow: pruned (cost until stopped)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.suptitle(f"{objective} against its cost, by rule", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)


def plot_curves(views: list[TrialView], labels: list[str], path: Path, maximize: bool | None = None) -> bool:
    """``curves_by_rule.png``: every trial's validation curve coloured by its rule, pruned trials dotted; False
    when no trial has a history."""
    metric = history_metric(views)
    if metric is None:
        return False
    plt = _pyplot()
    import matplotlib.ticker

    colors = rule_colors(labels)
    figure, ax = plt.subplots(figsize=(8.0, 4.8))
    for view in sorted(views, key=lambda v: v.state == "done"):  # completed curves drawn on top
        epochs = [e["epoch"] for e in view.history if e.get(metric) is not None]
        values = [e[metric] for e in view.history if e.get(metric) is not None]
        if not epochs:
            continue
        style = {"done": "-", "pruned": ":", "failed": "-."}[view.state]
        width = 1.6 if view.state == "done" else 1.2
        ax.plot(epochs, values, linestyle=style, color=colors[view.label], linewidth=width, alpha=0.9,
                marker="o" if len(epochs) == 1 else None, markersize=4)
        if view.state != "done":  # where it was stopped
            ax.plot(epochs[-1:], values[-1:], marker="x", color=colors[view.label], markersize=5, linestyle="")
    for label in labels:
        n = sum(v.label == label and bool(v.history) for v in views)
        ax.plot([], [], color=colors[label], label=f"{label} ({n} trials)")
    ax.plot([], [], color="0.3", linestyle="-", label="completed")
    ax.plot([], [], color="0.3", linestyle=":", marker="x", markersize=5, label="pruned (x: stopped)")
    if any(v.state == "failed" and v.history for v in views):
        ax.plot([], [], color="0.3", linestyle="-.", label="failed")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    direction = maximize if maximize is not None else metric == "accuracy"
    ax.set_ylabel(f"validation {metric} ({_direction(direction)})")
    ax.set_title("learning curves by rule")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return True


def _jitter(n: int) -> list[float]:
    """Deterministic horizontal offsets that spread n points over [-0.18, 0.18]."""
    if n <= 1:
        return [0.0] * n
    return [-0.18 + 0.36 * i / (n - 1) for i in range(n)]


def _spread(values) -> float:
    values = [float(v) for v in values if v is not None and float(v) > 0]
    return max(values) / min(values) if values else 1.0
