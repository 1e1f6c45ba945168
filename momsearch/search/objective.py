"""The Optuna objective: suggest a configuration, build it, train it, record metrics and weights.

``train.fit`` knows nothing of Optuna; pruning reaches it through a per-epoch callback (see ``pruning``).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import torch

from ..builder import build
from ..errors import MomsearchError
from ..metrics import param_count
from ..spec import resolve
from ..tasks.arrays import check_model_size
from ..train import StopRun, fit
from .pruning import make_callback
from .records import Records, write_record
from .results import RULE_ATTR, rule_of
from .storage import is_disk_full

TRIAL_SEED_STRIDE = 1_000_003


class TrialFailed(MomsearchError):
    """A trial that ended without a result (its reason is in the ``status_reason`` user attribute)."""


def trial_seed(study_seed: int, trial: optuna.Trial) -> int:
    """Per-trial seed = f(study seed, trial number); a re-run of a killed trial keeps that trial's seed.

    A re-run starts with the user attributes of the trial it repeats (Optuna's retry callback copies them);
    a new trial starts with none, so no storage query is needed to tell them apart.
    """
    if "seed" in trial.user_attrs:
        return int(trial.user_attrs["seed"])
    return (study_seed * TRIAL_SEED_STRIDE + trial.number) % 2**31


def objective_values(metrics: Mapping[str, Any], objectives: Mapping[str, str], has_nfe: bool) -> list[float]:
    """The objective values of a finished run, in the study's order.

    A model without ODE blocks evaluates no vector field: its NFE objectives are 0. A metric that was not
    measured (e.g. ``nfe_backward`` without the adjoint) cannot be an objective value: TrialFailed.
    """
    values = []
    for name in objectives:
        value = metrics.get(name)
        if value is None and name.startswith("nfe") and not has_nfe:
            value = 0.0
        if value is None or not math.isfinite(float(value)):
            raise TrialFailed(f"objective {name!r} was not measured for this configuration (value {value!r})")
        values.append(float(value))
    return values


def record_io(study: optuna.Study, task) -> None:
    """Store the task's input/output description on the study (once): with a trial's config, all that
    export needs to rebuild the trial's model. Every trial of a study has the same task."""
    if "io" not in study.user_attrs:
        study.set_user_attr("io", {"input_size": task.input_size, "output_size": task.output_size,
                                   "input": task.input, "target": task.target, "times": task.has_times})


class Objective:
    """A picklable objective for one study.

    Args:
        study_file: the validated study (``momsearch.spec.StudyFile``).
        load_task: returns the task (``momsearch.tasks.Task``); called on the first trial, inside it, so a
            failing user task fails trials with a reason instead of crashing the worker.
        artifact_store: where trained weights go (``optuna.artifacts.FileSystemArtifactStore``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    def __init__(self, study_file, load_task, artifact_store, device: str = "auto"):
        self.study_file = study_file
        self.load_task = load_task
        self.task = None
        self.artifact_store = artifact_store
        self.device = None if device == "auto" else device
        self.records = Records(artifact_store)  # completed trials' histories, for the multi-objective median rule

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        run: dict[str, Any] = {}  # what the run got to: config, model size, result
        try:
            result, has_nfe = self._train(trial, run)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("status_reason", "interrupted (SIGINT/SIGTERM)")
            raise
        except (Exception, SystemExit) as exc:  # a user task or a configuration can fail in any way: record, go on
            if isinstance(exc, SystemExit):  # a user task calling sys.exit(): its trial fails, the worker goes on
                reason = f"SystemExit: the task called sys.exit({exc.code!r})"
            else:
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            trial.set_user_attr("status_reason", reason)  # first: on a full disk the record may not be written
            self._set_metrics(trial, run)
            self._write_record(trial, run)
            if is_disk_full(exc):
                raise  # every later trial would fail the same way: the run stops (with one line, "disk full")
            raise TrialFailed(reason) from exc
        self._set_metrics(trial, run)
        weights = digest = None
        try:
            if result.status == "stopped":  # pruned: its metrics and cost up to the pruning point are recorded
                trial.set_user_attr("status_reason", result.reason)
                raise optuna.TrialPruned(result.reason)
            if result.status != "complete":
                trial.set_user_attr("status_reason", result.reason)
                raise TrialFailed(result.reason)
            values = objective_values(result.metrics, self.study_file.objectives, has_nfe)
            weights, digest = self._upload_weights(trial, result.state_dict)
        finally:
            self._write_record(trial, run, weights, digest)
        return values[0] if len(values) == 1 else values

    def _train(self, trial: optuna.Trial, run: dict[str, Any]):
        study = self.study_file
        config = study.space.suggest(trial)  # every active value, fixed training settings included
        run["config"] = config
        trial.set_user_attr(RULE_ATTR, rule_of(config))
        train = resolve(config)["train"]
        seed = train["seed"] if train["seed"] is not None else trial_seed(study.study["seed"], trial)
        trial.set_user_attr("seed", seed)
        if self.task is None:
            self.task = self.load_task()
            record_io(trial.study, self.task)
        task = self.task
        check_model_size(study.name, config, {"input_size": task.input_size, "output_size": task.output_size,
                                              "input": task.input, "target": task.target})  # before allocating
        torch.manual_seed(seed)
        model = build(config, task.input_size, task.output_size, input=task.input, target=task.target)
        run["params"] = param_count(model)
        has_nfe = any(hasattr(m, "nfe_forward") for m in model.modules())
        callback = make_callback(trial, study, history=self.records.history)
        callbacks = [_stop_when_pruned(callback)] if callback else []
        result = fit(model, task, train, callbacks=callbacks, device=self.device, seed=seed, progress=False)
        run["result"] = result
        return result, has_nfe

    def _set_metrics(self, trial: optuna.Trial, run: dict[str, Any]) -> None:
        """Scalar metrics as user attributes (of a run that failed before training: what is known, its size)."""
        result = run.get("result")
        metrics = result.metrics if result is not None else {k: run[k] for k in ("params",) if k in run}
        for key, value in metrics.items():
            trial.set_user_attr(key, value)

    def _write_record(self, trial: optuna.Trial, run: dict[str, Any], weights: str | None = None,
                      digest: str | None = None) -> None:
        """Configuration, history, weights id and checksum as the trial's record (when the configuration is
        known)."""
        if "config" in run:
            result = run.get("result")
            write_record(self.artifact_store, trial, run["config"], result.history if result is not None else [],
                         weights, digest)

    def _upload_weights(self, trial: optuna.Trial, state_dict: Mapping[str, torch.Tensor]) -> tuple[str, str]:
        """Upload the weights as an Optuna artifact of the trial; return its id and the file's SHA-256 (both kept
        in the trial's record: a hyphenated uuid in a user attribute wraps over four lines of a dashboard
        table row)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "weights.pt"
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, path)
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=self.artifact_store, file_path=str(path), study_or_trial=trial,
                mimetype="application/octet-stream")  # a guess from ".pt" says "SNES page table"
            digest = hashlib.sha256(path.read_bytes()).hexdigest()  # export checks the file against it
        return artifact_id, digest


def _stop_when_pruned(callback):
    """The pruning callback for ``fit``: a pruned trial stops the run (``StopRun``), so that ``fit`` still returns
    the metrics and cost measured up to that epoch."""

    def on_epoch(epoch: int, metrics: dict) -> None:
        try:
            callback(epoch, metrics)
        except optuna.TrialPruned as pruned:
            raise StopRun(str(pruned)) from None

    return on_epoch
