"""``momsearch compare``: tune every arm with the same budget, confirm each best over fresh seeds, run controls.

The three phases run in order and are resumable: each is a set of Optuna studies in the run's storage
(``<name>.<arm>``, ``<name>.<arm>.confirm``, ``<name>.<arm>.control``), and :func:`momsearch.search.study.run`
continues a study to its target. A re-run therefore skips the finished studies and continues the phase it was
in. A trial stopped by Ctrl-C or SIGTERM (FAIL, "interrupted") is queued again with the same parameters and
seed, and does not count twice.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from ..errors import StudyError
from .compare_plan import arm_study_file, confirm_seeds, control_config, seeded_study_file
from .records import Records
from .study import RunOptions, create_or_load, run, storage_for


@dataclass
class ArmResult:
    """What the verdict needs of one arm: its tuning study, best trial, confirm runs and control."""

    name: str
    tuning: optuna.Study
    best: optuna.trial.FrozenTrial
    confirm: optuna.Study | None = None
    control: optuna.Study | None = None
    control_text: str = ""
    config: dict | None = None  # the best trial's full configuration (from its record)
    records: Records | None = None  # reads the runs' records (configuration, per-epoch history)


def run_compare(study_file, options: RunOptions,
                log: Callable[[str], None] = print) -> tuple[list[ArmResult], list[int]]:
    """Run (or continue) the three phases of a comparison.

    Args:
        study_file: a validated study file with a ``compare:`` section.
        options: output directory, storage, jobs, threads, device (``n_trials``/``timeout`` are not used).

    Returns:
        The arms' results and the confirmation seeds.

    Raises:
        StudyError: an arm finished tuning without a completed trial, or a confirm study in the storage was
            run with another configuration than the one tuning selects now.
    """
    spec = study_file.compare
    options = replace(options, n_trials=None, timeout=None)
    resolved = options.resolved(study_file)
    resolved.out.mkdir(parents=True, exist_ok=True)
    _quiet_optuna()
    _sigterm_interrupts()
    storage = storage_for(study_file, resolved)
    arms = spec.arms
    log(f"compare {study_file.name}: phase 1/3, tuning {len(arms)} arms x {spec.trials_per_arm} trials")
    tuned = {}
    for arm in arms:
        tuned[arm.name] = _run(arm_study_file(study_file, arm), options, storage, log)
    records = Records(FileSystemArtifactStore(str(resolved.artifacts)) if resolved.artifacts.is_dir() else None)
    results = []
    for arm in arms:
        best = _best(tuned[arm.name], study_file)
        config = records.config(best)
        if config is None:
            raise StudyError(f"study {tuned[arm.name].study_name!r}: the record of its best trial "
                             f"{best.number} is not in {resolved.artifacts} (pass --artifacts)")
        results.append(ArmResult(arm.name, tuned[arm.name], best, config=config, records=records))
    used = {int(t.user_attrs["seed"]) for s in tuned.values() for t in s.get_trials(deepcopy=False)
            if "seed" in t.user_attrs}
    seeds = confirm_seeds(used, spec.seeds, study_file.study["seed"])
    log(f"compare {study_file.name}: phase 2/3, confirming each arm's best over {len(seeds)} fresh seeds")
    confirm = {r.name: _prepare_seeded(study_file, f"{study_file.name}.{r.name}.confirm",
                                       r.config, seeds, options, storage, log) for r in results}
    _run_all(list(confirm.values()), options, storage, log)
    for result in results:
        result.confirm = optuna.load_study(study_name=confirm[result.name].name, storage=storage)
    if spec.controls:
        log(f"compare {study_file.name}: phase 3/3, controls (mu = 0, s / (1 - mu)) over the same seeds")
        controls = {}
        for result in results:
            control, result.control_text = control_config(result.config)
            if control is not None:
                controls[result.name] = _prepare_seeded(study_file, f"{study_file.name}.{result.name}.control",
                                                        control, seeds, options, storage, log)
        _run_all(list(controls.values()), options, storage, log)
        for result in results:
            if result.name in controls:
                result.control = optuna.load_study(study_name=controls[result.name].name, storage=storage)
    return results, seeds


def _run(study_file, options: RunOptions, storage, log) -> optuna.Study:
    """Requeue interrupted trials, then run the study to its target."""
    study = create_or_load(study_file, storage, options.resolved(study_file).artifacts)
    requeued = requeue_interrupted(study)
    done = sum(1 for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
    log(f"  {study_file.name}: {done} of {study_file.study['n_trials']} trials finished"
        + (f", {requeued} interrupted re-queued" if requeued else ""))
    return run(study_file, options)


def _prepare_seeded(study_file, name: str, config: dict, seeds: list[int], options, storage, log):
    """Create (or check) the study that trains ``config`` once per seed, with one queued trial per seed."""
    seeded = seeded_study_file(study_file, name, config, seeds)
    study = create_or_load(seeded, storage, options.resolved(seeded).artifacts)
    plan = json.loads(json.dumps({"config": config, "seeds": seeds}))
    recorded = study.user_attrs.get("compare")
    if recorded is None:  # queue one run per seed
        for seed in seeds:
            study.enqueue_trial({"train.seed": seed})
        study.set_user_attr("compare", plan)
    elif recorded != plan:
        raise StudyError(f"study {name!r} in this storage was run with another configuration or seeds than "
                         "tuning selects now (was the space or compare section changed?); use another name, "
                         "--out or --storage")
    requeued = requeue_interrupted(study, any_failure=True)
    done = sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE)
    log(f"  {name}: {done} of {len(seeds)} runs finished" + (f", {requeued} re-queued (interrupted or failed)"
                                                                if requeued else ""))
    return seeded


def _run_all(seeded: list, options: RunOptions, storage, log) -> None:
    """Run the seeded studies, each in one worker, up to ``--jobs`` of them at a time.

    One worker per study: its queued runs are then taken one by one with no race between workers (two
    workers sharing a queue can both find it non-empty and one then samples an extra run).
    """
    single = replace(options, jobs=1, progress=False)
    jobs = options.resolved(seeded[0]).jobs if seeded else 1
    if jobs == 1 or len(seeded) == 1:
        for item in seeded:
            run(item, replace(options, jobs=1))
        return
    _preload_and_release(storage)
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pending, running, failed = list(seeded), [], []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                item = pending.pop(0)
                proc = ctx.Process(target=_child, args=(item, single))
                proc.start()
                running.append((item, proc))
            time.sleep(0.2)
            for item, proc in [x for x in running if not x[1].is_alive()]:
                running.remove((item, proc))
                proc.join()
                if proc.exitcode != 0:
                    failed.append(f"{item.name} (exit code {proc.exitcode})")
                else:
                    log(f"  {item.name}: done")
    except KeyboardInterrupt:
        for _, proc in running:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the worker marks its running trial FAIL ("interrupted") and exits
        for _, proc in running:
            proc.join()
        raise
    if failed:
        raise StudyError(f"stopped: {', '.join(failed)}; run momsearch compare again to continue")


def _child(study_file, options: RunOptions) -> None:
    try:
        run(study_file, options)
    except KeyboardInterrupt:
        sys.exit(130)
    except StudyError as exc:
        print(f"momsearch compare: {study_file.name}: {exc}", file=sys.stderr)
        sys.exit(2)


def _preload_and_release(storage) -> None:
    """Import the trainer before forking (children start in milliseconds) and close the parent's database
    connections so no child inherits one."""
    import torch._dynamo  # noqa: F401

    from . import objective  # noqa: F401

    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def requeue_interrupted(study: optuna.Study, any_failure: bool = False) -> int:
    """Queue again every trial stopped by Ctrl-C/SIGTERM that has no re-run yet; return how many.

    The re-run keeps the trial's parameters and user attributes (its seed) and is marked as a retry
    (Optuna's ``RetryHeartbeatStaleTrialCallback``), so it replaces the trial in the count of the budget.
    With ``any_failure`` (the confirmation and control runs, where every seed must have a result) a trial that
    failed for another reason is re-run too, once: a crash is retried, a configuration that diverges on a
    seed stays failed and the verdict counts that arm's seeds as fewer.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    queued = 0
    for t in trials:
        if t.state != TrialState.FAIL or t.number in retried:
            continue
        interrupted = str(t.user_attrs.get("status_reason", "")).startswith("interrupted")
        if interrupted:
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, t)
            queued += 1
        elif any_failure and not t.system_attrs.get("retry_history"):
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, t)
            queued += 1
    return queued


def _best(study: optuna.Study, study_file) -> optuna.trial.FrozenTrial:
    """The completed trial with the best first objective (the validation metric); the earliest on a tie."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        raise StudyError(f"study {study.study_name!r}: no completed tuning trial, so no best configuration "
                         "to confirm (see the trials' status_reason)")
    sign = 1.0 if next(iter(study_file.objectives.values())) == "maximize" else -1.0
    return max(complete, key=lambda t: (sign * t.values[0], -t.number))


def _quiet_optuna() -> None:
    """Warnings and failures only (as ``momsearch run``): the phase lines and the verdict tell the rest."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _sigterm_interrupts() -> None:
    """SIGTERM stops a comparison like Ctrl-C: running trials are marked interrupted, a re-run continues."""
    import threading

    if threading.current_thread() is threading.main_thread():
        def interrupt(signum, frame):
            raise KeyboardInterrupt(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, interrupt)
