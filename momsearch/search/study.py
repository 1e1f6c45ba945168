"""Create-or-resume a study and run its trials in one or several local worker processes.

``n_trials`` is the study's target: a run adds trials until the study holds that many. Inside one
``momsearch run`` the remaining trials are split exactly between the ``--jobs`` workers. A trial of a killed
worker is failed by Optuna's heartbeat check and re-run once with the same parameters; the re-run replaces
it and does not count again. Workers on other hosts joining the same storage stop once the target is reached
(each host's run splits what remained when it started, so hosts started at the same moment may overshoot).

The study-wide checks (the target reached by other hosts, the share of failed trials) read the whole trial
list, a query that costs more than a tiny trial's other storage traffic. A worker makes them after every
trial of its own that fails, once its share is done, on a grid after every trial, and otherwise at most
once every ``STUDY_CHECK_SECONDS``: every trial when trials are longer than that.
"""

from __future__ import annotations

import collections
import functools
import json
import multiprocessing
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..errors import StudyError
from .lookup import artifact_record, check_artifact_store
from .storage import ARTIFACT_DIR, default_url, open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
MIN_TRIALS_FOR_FAIL_CHECK = 3
STUDY_CHECK_SECONDS = 1.0


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
    """Open the run's storage with the study file's heartbeat settings."""
    s = study_file.study
    return open_storage(options.storage, heartbeat_interval=s["heartbeat_interval"],
                        grace_period=s["grace_period"])


def create_or_load(study_file, storage: optuna.storages.BaseStorage, artifacts: Path) -> optuna.Study:
    """Create the study (or load it if it exists) with its sampler, pruner, directions and metadata."""
    from .samplers import make_pruner, make_sampler

    s = study_file.study
    directions = list(study_file.objectives.values())
    study = optuna.create_study(
        study_name=study_file.name, storage=storage,
        sampler=make_sampler(s.get("sampler"), s["seed"]), pruner=make_pruner(s.get("pruner")),
        directions=directions, load_if_exists=True)
    if study.directions != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise StudyError(f"study {study_file.name!r} already exists with other objectives "
                         f"({study.metric_names or len(study.directions)}); use another name or storage")
    if study.metric_names is None:
        study.set_metric_names(list(study_file.objectives))
    recorded = study.user_attrs.get("momsearch")
    if recorded is None:
        study.set_user_attr("momsearch", record(study_file))
        for key, value in artifact_record(artifacts, getattr(storage, "url", None)).items():
            study.set_user_attr(key, value)
    elif recorded["task"] != json.loads(json.dumps(study_file.task)):
        raise StudyError(f"study {study_file.name!r} already exists with task {recorded['task']} (this file: "
                         f"{study_file.task}); its trials would not compare: use another name or storage")
    else:
        check_artifact_store(study, artifacts, getattr(storage, "url", None))
    return study


def record(study_file) -> dict:
    """What a study stores about its study file, so report and export work from the storage alone."""
    return {"task": study_file.task, "objectives": dict(study_file.objectives), "train": dict(study_file.train),
            "seed": study_file.study["seed"]}


def is_retry(trial) -> bool:
    """Whether a trial re-runs a failed one (Optuna's retry callback marks it with ``failed_trial``)."""
    return "failed_trial" in trial.system_attrs


def counted(trials: list, grid: bool = False) -> int:
    """Of a study's trials, those that count toward ``n_trials``: started ones that are not re-runs.

    On a grid (``BruteForceSampler``) it counts distinct configurations instead: workers sampling in parallel
    can draw the same grid point twice (Optuna documents this), and a repeat must not take the place of a
    point that was never run.
    """
    started = [t for t in trials if t.state != TrialState.WAITING and not is_retry(t)]
    if grid:
        return len({json.dumps(t.params, sort_keys=True, default=str) for t in started})
    return len(started)


def is_grid(study_file) -> bool:
    """Whether the study enumerates a grid (``BruteForceSampler``)."""
    sampler = study_file.study.get("sampler")
    name = sampler.get("name") if isinstance(sampler, dict) else sampler
    return name == "BruteForceSampler"


def waiting(trials: list) -> int:
    """Queued trials (e.g. re-runs of killed trials) that a worker will pick up before sampling new ones."""
    return sum(1 for t in trials if t.state == TrialState.WAITING)


def check_failures(trials: list, max_fraction: float) -> None:
    """Raise StudyError if more than ``max_fraction`` of the finished trials failed, naming the top reason."""
    trials = [t for t in trials if t.state in FINISHED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if len(trials) < MIN_TRIALS_FOR_FAIL_CHECK or len(failed) <= max_fraction * len(trials):
        return
    reasons = collections.Counter(t.user_attrs.get("status_reason") or "unknown reason" for t in failed)
    reason, count = reasons.most_common(1)[0]
    raise StudyError(f"stopped: {len(failed)} of {len(trials)} trials failed (more than "
                     f"study.max_fail_fraction={max_fraction}); most common reason ({count}x): {reason}")


def _quiet_optuna() -> None:
    """Warnings and failures only: the progress bar and the final table tell the rest."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: the running trial is marked FAIL with a reason, then the worker stops."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)


def worker(study_file, options: RunOptions, n_trials: int, index: int, sampler_seed: int) -> None:
    """Run ``n_trials`` new trials of the study in this process (one of ``--jobs`` workers), plus any
    queued re-runs of killed trials it picks up on the way.

    ``sampler_seed`` differs per worker and per resumed run, so workers and resumed runs do not replay
    the same random start-up samples.
    """
    import torch
    from optuna.artifacts import FileSystemArtifactStore

    from ..tasks import load as load_task
    from .objective import Objective, TrialFailed
    from .samplers import make_pruner, make_sampler

    _install_signal_handlers()
    torch.set_num_threads(options.threads)
    _quiet_optuna()
    shared = options.jobs > 1 or options.storage != default_url(options.out)  # other workers may sample it
    study = optuna.load_study(study_name=study_file.name, storage=storage_for(study_file, options),
                              sampler=make_sampler(study_file.study.get("sampler"), sampler_seed, shared=shared),
                              pruner=make_pruner(study_file.study.get("pruner")))
    options.artifacts.mkdir(parents=True, exist_ok=True)
    objective = Objective(study_file, functools.partial(load_task, study_file.task),
                          FileSystemArtifactStore(str(options.artifacts)),
                          device=_device_for(options.device, index))
    target, started, grid = options.n_trials, [0], is_grid(study_file)
    max_fraction = study_file.study["max_fail_fraction"]
    next_check = [time.monotonic() + STUDY_CHECK_SECONDS]

    def stop_when_done(study: optuna.Study, trial) -> None:
        started[0] += not is_retry(trial)
        mine_done = started[0] >= n_trials and not grid  # on a grid a repeated point does not use up a share
        now = time.monotonic()
        if not (mine_done or grid or trial.state == TrialState.FAIL or now >= next_check[0]):
            return
        next_check[0] = now + STUDY_CHECK_SECONDS
        trials = study.get_trials(deepcopy=False)
        if not waiting(trials) and (mine_done or counted(trials, grid) >= target):
            study.stop()
        try:
            check_failures(trials, max_fraction)
        except StudyError:
            study.stop()

    study.optimize(objective, timeout=options.timeout, catch=(TrialFailed,), callbacks=[stop_when_done],
                   gc_after_trial=False)


def _device_for(device: str, index: int) -> str:
    """``auto`` places worker i on GPU i mod (visible GPUs), else the CPU; explicit devices are kept."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{index % torch.cuda.device_count()}"
    return "cpu"


def _split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def run(study_file, options: RunOptions) -> optuna.Study:
    """Create or resume the study and run it to its ``n_trials`` target.

    Args:
        study_file: the validated study (``momsearch.spec.load_study_file``).
        options: storage, output directory, jobs, device, ... (unset ones come from the file).

    Returns:
        The study, after the run.

    Raises:
        StudyError: too many trials failed (``study.max_fail_fraction``), or the storage is unusable.
    """
    options = options.resolved(study_file)
    options.out.mkdir(parents=True, exist_ok=True)
    _quiet_optuna()
    storage = storage_for(study_file, options)
    study = create_or_load(study_file, storage, options.artifacts)
    optuna.storages.fail_stale_trials(study)  # trials of killed workers -> FAIL, re-runs queued
    trials = study.get_trials(deepcopy=False)
    done = counted(trials, is_grid(study_file))
    remaining = max(0, options.n_trials - done)
    if remaining == 0 and not waiting(trials):
        return study
    shares = [n for n in _split(remaining, options.jobs) if n > 0] or [0]
    seeds = [study_file.study["seed"] + done + 7919 * i for i in range(len(shares))]
    if len(shares) == 1:
        with _Progress(study, remaining, options.progress):
            worker(study_file, options, shares[0], 0, seeds[0])
    else:
        procs = _start_processes(study_file, options, shares, seeds, storage)
        with _Progress(study, remaining, options.progress):  # its polling thread starts after the fork
            _join(procs)
    check_failures(study.get_trials(deepcopy=False), study_file.study["max_fail_fraction"])
    return study


def _start_processes(study_file, options: RunOptions, shares: list[int], seeds: list[int],
                     storage: optuna.storages.BaseStorage) -> list:
    """Start one worker process per share.

    On Linux the workers are forked after the parent has imported torch, the trainer and the task's
    libraries, so each starts in milliseconds instead of re-importing them (seconds); the parent's database
    connections are closed first so no child inherits one. Elsewhere they are spawned.
    """
    if sys.platform.startswith("linux"):
        _preload()
        storage.engine.dispose()
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(study_file, options, n, i, seed))
             for i, (n, seed) in enumerate(zip(shares, seeds, strict=True))]
    for p in procs:
        p.start()
    return procs


def _preload() -> None:
    """Import what every worker needs before forking: torch (and the compiler stack its optimizers import
    on first use), the trainer and the blocks."""
    import torch._dynamo  # noqa: F401

    from . import objective  # noqa: F401  (builder, blocks, train)


def _join(procs: list) -> None:
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: each worker marks its running trial FAIL and exits
        for p in procs:
            p.join()
        raise


class _Progress:
    """A tqdm bar over the run's trials, fed by polling the storage (works for any number of workers)."""

    def __init__(self, study: optuna.Study, total: int, enabled: bool):
        self.study, self.total, self.enabled = study, total, enabled
        self.start = self._finished()
        self.bar = None

    def _finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def poll(self) -> None:
        if self.bar is not None:
            done = min(self.total, self._finished() - self.start)
            if done != self.bar.n:
                self.bar.update(done - self.bar.n)

    def __enter__(self):
        if self.enabled:
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
