"""Write a comparison's verdict: ``verdict.csv``, ``verdict.md`` and its figures (forest plot, curves, cost)."""

from __future__ import annotations

import math
from pathlib import Path

from .compare_verdict import ALPHA, Row, build_rows, csv_records, sentence

LEVEL_TEXT = "95% Student t intervals (scipy.stats.t); differences paired by training seed (paired t test)"


def describe(params: dict) -> str:
    """The searched hyperparameters of a trial, by their short names (``mu=0.6 s=0.5 lr=0.003``)."""
    return " ".join(f"{key.rsplit('.', 1)[-1]}={_num(value)}" for key, value in params.items()) or "(all fixed)"


def write_verdict(out: Path, study_file, results, seeds: list[int]) -> str:
    """Write the verdict files under ``out`` and return the verdict table (markdown) for the console."""
    import pandas as pd

    spec = study_file.compare
    direction = next(iter(study_file.objectives.values()))
    out.mkdir(parents=True, exist_ok=True)
    rows = build_rows(results, spec, describe)
    records = csv_records(rows, spec)
    pd.DataFrame(records).to_csv(out / "verdict.csv", index=False)
    table = markdown_table(records, spec)
    figures = _figures(out, rows, spec)
    lines = [f"# Verdict: {study_file.name}", "",
             f"Arms by {spec.by or 'update rule'}; {spec.trials_per_arm} tuning trials per arm (sampler "
             f"{study_file.study['sampler']['name']}, selected on validation {spec.metric}); each arm's best "
             f"configuration re-trained with {len(seeds)} fresh seeds ({', '.join(map(str, seeds))}); the numbers "
             f"are {spec.test_metric} ({direction}). {LEVEL_TEXT}.", "", table, ""]
    lines += [sentence(row, rows, spec, direction) for row in rows if row.kind == "arm"]
    no_control = [row for row in rows if row.kind == "baseline" and row.note]
    lines += [f"{row.arm} (baseline): no control: {row.note}." for row in no_control if spec.controls
              and "no momentum" not in row.note]
    tests = sum(1 for row in rows if row.vs_baseline is not None) + sum(1 for row in rows if row.vs_arm is not None)
    lines += ["", f"**Multiple comparisons.** The table makes {tests} paired tests (every arm and control "
              f"against {spec.baseline}, every control against its arm). The p-values are Holm-adjusted over all "
              f"{tests} (family-wise error {ALPHA}); \"distinguishable\" means an adjusted p below {ALPHA}. The "
              "intervals are not adjusted: an interval that just excludes 0 may still be \"not distinguishable\".",
              ""]
    lines += [f"![{name}]({file})" for name, file in figures]
    (out / "verdict.md").write_text("\n".join(lines) + "\n")
    return table


def markdown_table(records: list[dict], spec) -> str:
    """The verdict table: arm, kind, configuration, seeds, metric with interval, deltas, cost."""
    m = spec.test_metric
    nfe = "nfe_total_mean" in records[0]
    head = ["arm", "kind", "config", "n", f"{m} [95% CI]", f"vs {spec.baseline} [95% CI]", "Holm p",
            "vs own arm [95% CI]", "Holm p", "device s"] + (["nfe_total"] if nfe else []) + ["tuning trials (device s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [r["arm"], r["kind"], r["config"], str(r["n_seeds"]),
                 _ci(r[f"{m}_mean"], r[f"{m}_ci_low"], r[f"{m}_ci_high"]),
                 _ci(r["delta_vs_baseline"], r["delta_ci_low"], r["delta_ci_high"], signed=True),
                 _num(r["p_holm_vs_baseline"]),
                 _ci(r["delta_vs_arm"], r["delta_vs_arm_ci_low"], r["delta_vs_arm_ci_high"], signed=True),
                 _num(r["delta_vs_arm_p_holm"]), _num(r["device_seconds_mean"])]
        if nfe:
            cells.append(_num(r["nfe_total_mean"]))
        cells.append("-" if r["kind"] == "control" else f"{r['tuning_trials']} ({_num(r['tuning_device_seconds'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci(mean, low, high, signed: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    f = "{:+.4g}" if signed else "{:.4g}"
    return f"{f.format(_zero(mean))} [{f.format(_zero(low))}, {f.format(_zero(high))}]"


def _zero(x: float) -> float:
    """0 for a rounding residue (a mean difference of equal numbers can come out as 1e-18)."""
    return 0.0 if abs(x) < 1e-12 else x


def _num(x) -> str:
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def _figures(out: Path, rows: list[Row], spec) -> list[tuple[str, str]]:
    """forest.png (differences with intervals), curves.png (validation per epoch), cost.png (device seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    items = [(f"{r.arm} vs {spec.baseline}", r.vs_baseline) for r in rows if r.vs_baseline is not None]
    items += [(f"{r.control_of} vs its control", _flip(r.vs_arm)) for r in rows if r.vs_arm is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(items) + 1.4))
    for i, (_, iv) in enumerate(items):
        ax.errorbar([iv.mean], [i], xerr=[[iv.mean - iv.low], [iv.high - iv.mean]], fmt="o", capsize=4)
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(items)), [label for label, _ in items])
    ax.invert_yaxis()
    ax.set_xlabel(f"difference in {spec.test_metric} (paired by seed, 95% t interval)")
    fig.tight_layout()
    fig.savefig(out / "forest.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in rows:
        curves = [c for c in r.curves.values() if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = [sum(c[e] for c in curves) / len(curves) for e in range(length)]
        ax.plot(range(1, length + 1), mean, ls="--" if r.kind == "control" else "-", label=r.arm)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {spec.metric} (mean over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)

    has_nfe = any(x > 0 for r in rows for x in r.nfe_total)
    fig, axes = plt.subplots(1, 2 if has_nfe else 1, figsize=(10 if has_nfe else 6, 0.4 * len(rows) + 1.6))
    axes = list(axes) if has_nfe else [axes]
    labels = [r.arm for r in rows]
    axes[0].barh(labels, [_mean(r.device_seconds) for r in rows])
    axes[0].set_xlabel("device seconds per training run (mean over seeds)")
    if has_nfe:
        axes[1].barh(labels, [_mean(r.nfe_total) for r in rows])
        axes[1].set_xlabel("function evaluations per training run (mean)")
    for ax in axes:
        ax.invert_yaxis()
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # five-digit NFE labels would run into each other
    fig.tight_layout()
    fig.savefig(out / "cost.png", dpi=110)
    plt.close(fig)
    return [("differences", "forest.png"), ("learning curves", "curves.png"), ("cost", "cost.png")]


def _flip(iv):
    from .compare_stats import Interval

    return Interval(-iv.mean, -iv.high, -iv.low, iv.n, iv.p)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
