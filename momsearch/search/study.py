"""Create-or-resume a study and run its trials in one or several local worker processes.

``n_trials`` is the study's target: the trials that finished with a result (COMPLETE or PRUNED) plus those
alive now. FAIL trials do not use up the budget: a run starts new trials in their place, until more than
``study.max_fail_fraction`` of the study's finished trials failed, or as many of its own trials failed as it
set out to run. Each worker counts (one query) before each trial it starts, under a lock shared by the run's
workers, so one run never overshoots; k runs racing on one study (k hosts) overshoot by at most k - 1.

Every worker of every run samples with its own seed (``samplers.worker_seed``): the user's seed, the run's
number (``runs.claim_run``) and the worker's index. A sole worker on a fresh study is reproducible from the
seed; a resumed run continues instead of replaying. A trial of a killed worker is failed by Optuna's heartbeat
check and re-run once with the same parameters; a worker of this run that dies has its trial failed at once
by the parent (``workers``).
"""

from __future__ import annotations

import collections
import functools
import multiprocessing
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..errors import MomsearchError, StudyError
from . import contract, runs, workers
from .lookup import artifact_record, check_artifact_store
from .storage import ARTIFACT_DIR, default_url, open_storage, storage_faults

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
MIN_TRIALS_FOR_FAIL_CHECK = 3


@dataclass
class RunOptions:
    """How to run a study file (CLI flags override the file's ``study:`` section)."""

    out: Path
    storage: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    jobs: int | None = None
    threads: int | None = None
    device: str | None = None
    artifacts: Path | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def resolved(self, study_file) -> RunOptions:
        """Fill unset options from the study file's ``study:`` section."""
        s = study_file.study
        return RunOptions(
            out=Path(self.out),
            storage=self.storage or s.get("storage") or default_url(self.out),
            n_trials=self.n_trials if self.n_trials is not None else s["n_trials"],
            timeout=self.timeout if self.timeout is not None else s.get("timeout"),
            jobs=self.jobs or s.get("jobs") or 1,
            threads=self.threads or s.get("threads") or 1,
            device=self.device or s.get("device") or "auto",
            artifacts=Path(self.artifacts) if self.artifacts else Path(self.out) / ARTIFACT_DIR,
            progress=self.progress,
        )


def storage_for(study_file, options: RunOptions):
    """Open the run's storage with the study file's heartbeat and storage-retry settings."""
    s = study_file.study
    return open_storage(options.storage, heartbeat_interval=s["heartbeat_interval"],
                        grace_period=s["grace_period"], retry_seconds=s["storage_retry_seconds"])


def create_or_load(study_file, storage: optuna.storages.BaseStorage, artifacts: Path) -> optuna.Study:
    """Create the study (or load it if it exists) with its sampler, pruner, directions and metadata.

    Resuming is a contract (``contract.check``): a study file that differs from the study's record in its
    task, objectives, training settings or parameter space is refused (StudyError) before anything is written.
    """
    from .samplers import make_pruner, make_sampler

    s = study_file.study
    directions = list(study_file.objectives.values())
    study = optuna.create_study(
        study_name=study_file.name, storage=storage,
        sampler=make_sampler(s.get("sampler"), s["seed"]), pruner=make_pruner(s.get("pruner")),
        directions=directions, load_if_exists=True)
    recorded, updated = study.user_attrs.get("momsearch"), None
    if recorded is not None:
        updated = contract.check(recorded, study_file)
    if study.directions != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        contract.refuse(study_file.name, "objectives", study.metric_names or
                        [d.name.lower() for d in study.directions], dict(study_file.objectives))
    if study.metric_names is None:
        study.set_metric_names(list(study_file.objectives))
    if recorded is None:
        study.set_user_attr("momsearch", contract.record(study_file))
        for key, value in artifact_record(artifacts, getattr(runs.rdb(storage), "url", None)).items():
            study.set_user_attr(key, value)
    else:
        check_artifact_store(study, artifacts, getattr(runs.rdb(storage), "url", None))
        if updated is not None:
            study.set_user_attr("momsearch", updated)
    return study


def record(study_file) -> dict:
    """What a study stores about its study file (see ``contract.record``)."""
    return contract.record(study_file)


def is_grid(study_file) -> bool:
    """Whether the study enumerates a grid (``BruteForceSampler``)."""
    sampler = study_file.study.get("sampler")
    name = sampler.get("name") if isinstance(sampler, dict) else sampler
    return name == "BruteForceSampler"


def check_failures(trials: list, max_fraction: float) -> None:
    """Raise StudyError if more than ``max_fraction`` of the finished trials failed, naming the top reason."""
    trials = [t for t in trials if t.state in FINISHED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if len(trials) < MIN_TRIALS_FOR_FAIL_CHECK or len(failed) <= max_fraction * len(trials):
        return
    raise StudyError(f"stopped: {len(failed)} of {len(trials)} trials failed (more than "
                     f"study.max_fail_fraction={max_fraction}); most common reason {top_reason(failed)}")


def top_reason(failed: list) -> str:
    """``(3x): ValueError: ...``: the most common ``status_reason`` of failed trials and how often it occurs."""
    reasons = collections.Counter(t.user_attrs.get("status_reason") or "unknown reason" for t in failed)
    reason, count = reasons.most_common(1)[0]
    return f"({count}x): {reason}"


def _quiet_optuna() -> None:
    """Warnings and failures only: the progress bar and the final table tell the rest."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class Plan:
    """What every worker of a run works toward.

    Attributes:
        target: the study's ``n_trials``.
        max_failed: the run stops starting trials once this many of its trials failed (the failure-fraction
            stop aside, this bounds a run whose every trial fails, e.g. with ``max_fail_fraction: 1``).
        run: the run's number (``runs.claim_run``); with the worker index and the user's seed it makes the
            worker's sampler seed.
        first: the number the run's first new trial gets at the earliest (its failures are reported).
    """

    target: int
    max_failed: int
    run: int
    first: int = 0


def worker(study_file, options: RunOptions, index: int, plan: Plan, state: workers.RunState) -> None:
    """Run trials of the study in this process (worker ``index`` of ``--jobs``) until the study holds
    ``plan.target`` trials that count (``runs.count_toward_target``), the timeout passes, or too many failed.

    Before each trial the worker takes the run's start lock, counts, and creates its trial (RUNNING) before
    giving the lock back, so the workers of one run never overshoot the target; runs on other hosts each hold
    their own lock, so k of them racing overshoot by at most k - 1.
    """
    import torch
    from optuna.artifacts import FileSystemArtifactStore

    from ..tasks import load as load_task
    from .objective import Objective, TrialFailed
    from .samplers import base_seed, make_pruner, make_sampler, seeded, worker_seed

    torch.set_num_threads(options.threads)
    _quiet_optuna()
    spec = study_file.study.get("sampler")
    seed = worker_seed(base_seed(spec, study_file.study["seed"]), plan.run, index)
    shared = options.jobs > 1 or options.storage != default_url(options.out)  # other workers may sample it
    study = optuna.load_study(study_name=study_file.name, storage=storage_for(study_file, options),
                              sampler=make_sampler(seeded(spec, seed), seed, shared=shared),
                              pruner=make_pruner(study_file.study.get("pruner")))
    options.artifacts.mkdir(parents=True, exist_ok=True)
    objective = Objective(study_file, functools.partial(load_task, study_file.task),
                          FileSystemArtifactStore(str(options.artifacts)),
                          device=_device_for(options.device, index))
    grid, max_fraction = is_grid(study_file), study_file.study["max_fail_fraction"]
    storage, study_id = study._storage, study._study_id

    def may_start() -> bool:  # with the start lock held
        if state.failed.value >= plan.max_failed:
            return False
        count, waiting = runs.tally(storage, study_id, grid)
        return count < plan.target or waiting > 0  # ask() takes a queued re-run first

    def run_trial(trial: optuna.Trial):
        state.trials[index] = trial._trial_id  # the parent fails it if this process dies
        state.release(index)
        return objective(trial)

    def after_trial(study: optuna.Study, trial) -> None:
        state.trials[index] = workers.NO_TRIAL
        if trial.state == TrialState.FAIL:
            state.add(state.failed)
            try:
                check_failures(study.get_trials(deepcopy=False), max_fraction)
            except StudyError:
                study.stop()
                return
        else:
            state.add(state.completed)
        state.acquire(index)
        if not may_start():
            state.release(index)
            study.stop()

    state.acquire(index)
    try:
        with storage_faults():  # a storage outage or a full disk: one line, not Optuna's follow-on errors
            if may_start():
                study.optimize(run_trial, timeout=options.timeout, catch=(TrialFailed,), callbacks=[after_trial],
                               gc_after_trial=False)
    finally:
        state.release(index)


def _worker_process(study_file, options: RunOptions, index: int, plan: Plan, state: workers.RunState) -> None:
    """A worker process: dies with its parent; an interrupt or a momsearch error ends it with one line."""
    workers.die_with_parent()
    workers.install_worker_signals()
    try:
        worker(study_file, options, index, plan, state)
    except KeyboardInterrupt:
        sys.exit(workers.EXIT_INTERRUPTED)
    except MomsearchError as exc:
        print(f"momsearch run: worker {index}: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(workers.EXIT_ERROR)


def _device_for(device: str, index: int) -> str:
    """``auto`` places worker i on GPU i mod (visible GPUs), else the CPU; explicit devices are kept."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{index % torch.cuda.device_count()}"
    return "cpu"


def run(study_file, options: RunOptions) -> optuna.Study:
    """Create or resume the study and run it to its ``n_trials`` target.

    Args:
        study_file: the validated study (``momsearch.spec.load_study_file``).
        options: storage, output directory, jobs, device, ... (unset ones come from the file).

    Returns:
        The study, after the run.

    Raises:
        StudyError: the file differs from the study it resumes; too many trials failed
            (``study.max_fail_fraction``); the run completed no trial; workers died before the target was
            reached; or the storage is unusable.
        KeyboardInterrupt: SIGINT or SIGTERM (every worker's running trial is FAIL, no worker is left).
    """
    options = options.resolved(study_file)
    options.out.mkdir(parents=True, exist_ok=True)
    _quiet_optuna()
    storage = storage_for(study_file, options)
    study = create_or_load(study_file, storage, options.artifacts)
    optuna.storages.fail_stale_trials(study)  # trials of killed workers -> FAIL, re-runs queued
    grid = is_grid(study_file)
    target = options.n_trials
    if grid and study_file.space.size() is not None:
        target = min(target, study_file.space.size())  # a grid cannot hold more distinct points
    count, waiting = runs.tally(storage, study._study_id, grid)
    remaining = max(target - count, 0) + waiting  # the queued re-runs (counted already) are run too
    if remaining <= 0:
        return study
    plan = Plan(target=target, max_failed=remaining, run=runs.claim_run(storage, study._study_id),
                first=len(study.get_trials(deepcopy=False)))
    jobs = min(options.jobs, remaining)
    if jobs == 1:
        state = workers.RunState(multiprocessing, 1)
        previous = workers.install_worker_signals()
        try:
            with _Progress(study, remaining, options.progress):
                worker(study_file, options, 0, plan, state)
        finally:
            workers.restore_signals(previous)
        outcome = workers.Outcome()
    else:
        ctx, state = _start_context(storage, jobs)
        procs = [ctx.Process(target=_worker_process, args=(study_file, options, i, plan, state))
                 for i in range(jobs)]
        outcome = workers.supervise(procs, state, storage, progress=_Progress(study, remaining, options.progress))
    if outcome.signal is not None:
        raise KeyboardInterrupt(outcome.signal)
    _check_outcome(study, study_file, plan, state, outcome, grid)
    return study


def _check_outcome(study, study_file, plan: Plan, state: workers.RunState, outcome: workers.Outcome,
                   grid: bool) -> None:
    """Raise StudyError if the run did not do what it set out to: too many failures, no trial completed, or
    workers died before the target was reached."""
    trials = study.get_trials(deepcopy=False)
    check_failures(trials, study_file.study["max_fail_fraction"])
    died = "; ".join(outcome.died)
    if state.completed.value == 0 and (state.failed.value or died):
        failed = [t for t in trials if t.state == TrialState.FAIL and t.number >= plan.first]
        why = f"{died}; " if died else ""
        reason = f"; most common reason {top_reason(failed)}" if failed else ""
        raise StudyError(f"no trial completed in this run: {why}{state.failed.value} failed{reason}")
    held = runs.counted(trials, grid)
    if died and held < plan.target:
        raise StudyError(f"{died}; the study holds {held} of {plan.target} trials: run again to finish")


def running_elsewhere(study: optuna.Study) -> list[int]:
    """Numbers of the study's RUNNING trials: after a run, those of other workers (or of dead ones that a later
    run fails once ``study.grace_period`` passes without a heartbeat)."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


def _start_context(storage: optuna.storages.BaseStorage, jobs: int):
    """The multiprocessing context for the workers, and their shared state.

    On Linux the workers are forked after the parent has imported torch, the trainer and the task's
    libraries, so each starts in milliseconds instead of re-importing them (seconds); the parent's database
    connections are closed first so no child inherits one. Elsewhere they are spawned.
    """
    base = runs.rdb(storage)
    if sys.platform.startswith("linux") and base is not None:  # a gRPC client must not be forked: spawn
        _preload()
        base.engine.dispose()
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("spawn")
    return ctx, workers.RunState(ctx, jobs)


def _preload() -> None:
    """Import what every worker needs before forking: torch (and the compiler stack its optimizers import
    on first use), the trainer and the blocks."""
    import torch._dynamo  # noqa: F401

    from . import objective  # noqa: F401  (builder, blocks, train)


class _Progress:
    """A tqdm bar over the run's trials, fed by polling the storage (works for any number of workers)."""

    def __init__(self, study: optuna.Study, total: int, enabled: bool):
        self.study, self.total, self.enabled = study, total, enabled
        self.start, self.bar = 0, None  # read on entering: no storage connection before the workers fork

    def _finished(self) -> int:
        return runs.finished_with_result(self.study._storage, self.study._study_id)

    def poll(self) -> None:
        if self.bar is not None:
            done = min(self.total, self._finished() - self.start)
            if done != self.bar.n:
                self.bar.update(done - self.bar.n)

    def __enter__(self):
        if self.enabled:
            self.start = self._finished()
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=f"study {self.study.study_name}", unit="trial")
            self._stop_polling = _poll_in_thread(self)
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self._stop_polling()
            self.poll()
            self.bar.close()
        return False


def _poll_in_thread(progress: _Progress):
    import threading

    done = threading.Event()

    def loop():
        while not done.wait(1.0):
            progress.poll()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def stop():
        done.set()
        thread.join()

    return stop
