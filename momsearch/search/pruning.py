"""Pruning through a per-epoch callback of ``train.fit``.

Single-objective studies use the study's Optuna pruner on the objective's per-epoch validation value.
Multi-objective studies (Optuna's pruners refuse them) use one documented rule on the metric
``study.prune_on`` (default: the first objective): after ``n_warmup_steps`` epochs, a trial whose value at
epoch e is worse than the median of the completed trials' values at epoch e is pruned, once at least
``n_startup_trials`` trials have completed (both read from the pruner's keyword arguments; defaults 0 and 5).
With ``pruner: none`` nothing is pruned.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import optuna

from ..catalog import METRICS
from .samplers import pruner_settings

PER_EPOCH = ("accuracy", "mse", "loss", "train_loss")


def _no_pruning(spec) -> bool:
    name = spec.get("name") if isinstance(spec, dict) else spec
    return name is None or str(name).lower() in ("none", "nop", "nopruner")


def make_callback(trial: optuna.Trial, study_file,
                  history: Callable | None = None) -> Callable[[int, dict], None] | None:
    """The per-epoch callback that reports to Optuna and raises ``optuna.TrialPruned``; None if no pruning.

    ``history(frozen_trial)`` gives a completed trial's per-epoch metrics for the multi-objective median rule
    (default: its ``history`` user attribute, as studies before per-trial records kept it).
    """
    spec = study_file.study.get("pruner")
    if _no_pruning(spec):
        return None
    objectives = list(study_file.objectives)
    if len(objectives) == 1:
        metric = objectives[0]
        if metric not in PER_EPOCH:
            return None  # e.g. device_seconds: not known before the end

        def report(epoch: int, metrics: dict) -> None:
            trial.report(float(metrics[metric]), step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} by {type(trial.study.pruner).__name__}")

        return report
    metric = study_file.study.get("prune_on") or objectives[0]
    settings = pruner_settings(spec)
    return MedianRule(trial, metric, study_file.objectives.get(metric) or METRICS[metric][0],
                      warmup=int(settings.get("n_warmup_steps", 0)),
                      startup=int(settings.get("n_startup_trials", 5)), history=history)


class MedianRule:
    """The multi-objective pruning rule: worse than the completed trials' median at the same epoch."""

    def __init__(self, trial: optuna.Trial, metric: str, direction: str, warmup: int, startup: int,
                 history: Callable | None = None):
        self.trial, self.metric, self.direction = trial, metric, direction
        self.warmup, self.startup = warmup, startup
        self.history = history or (lambda t: t.user_attrs.get("history") or [])

    def __call__(self, epoch: int, metrics: dict) -> None:
        if epoch < self.warmup or self.metric not in metrics:
            return
        completed = self.trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(completed) < self.startup:
            return
        peers = [h[self.metric] for t in completed for h in self.history(t)
                 if h.get("epoch") == epoch and h.get(self.metric) is not None]
        if not peers:
            return
        median, value = statistics.median(peers), metrics[self.metric]  # the value is recorded with the trial
        worse = value < median if self.direction == "maximize" else value > median
        if worse:
            raise optuna.TrialPruned(f"pruned at epoch {epoch} by the median rule on {self.metric}")
