"""A run's worker processes: what they share, how signals reach them, and how the parent watches them.

SIGTERM and SIGINT to the parent are passed to every worker; each marks its running trial FAIL
("interrupted") and exits; a worker still alive ``STOP_SECONDS`` later is killed and its trial failed by the
parent. A worker that dies on its own (SIGKILL, the out-of-memory killer, ``os._exit`` in user code) has its
running trial marked FAIL at once with the reason, e.g. ``worker 1 died: killed by signal 9 (SIGKILL)``; the
other workers go on with the budget.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

STOP_SECONDS = 30.0
EXIT_INTERRUPTED = 130
EXIT_ERROR = 2
NO_TRIAL = -1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunState:
    """What the workers of one run share: a lock over "count the study's trials, then start one" (so one run
    never overshoots its target), each worker's running trial (for the parent to fail if the worker dies),
    and how many trials the run completed or failed.

    Args:
        ctx: the ``multiprocessing`` context the workers are started with.
        jobs: the number of workers.
    """

    def __init__(self, ctx, jobs: int):
        self.lock = ctx.Lock()
        self.holder = ctx.Value("i", NO_TRIAL, lock=False)
        self.trials = ctx.Array("q", [NO_TRIAL] * jobs, lock=False)
        self.completed = ctx.Value("i", 0)
        self.failed = ctx.Value("i", 0)

    def acquire(self, index: int) -> None:
        """Take the start lock (worker ``index``)."""
        self.lock.acquire()
        self.holder.value = index

    def release(self, index: int) -> None:
        """Give the start lock back if worker ``index`` holds it."""
        if self.holder.value == index:
            self.holder.value = NO_TRIAL
            self.lock.release()

    def add(self, counter, n: int = 1) -> None:
        with counter.get_lock():
            counter.value += n


def install_worker_signals() -> dict:
    """SIGTERM and SIGINT raise KeyboardInterrupt once (Optuna then marks the running trial FAIL); further ones
    are ignored so that nothing interrupts the worker while it records that. Returns the previous handlers."""

    def interrupt(signum, frame):
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    return _set_handlers(interrupt)


def _set_handlers(handler) -> dict:
    """Set ``handler`` for SIGINT and SIGTERM; only the main thread may (a run started from another thread
    keeps the process's handlers). Returns the previous ones."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def restore_signals(previous: dict) -> None:
    """Put back the handlers ``install_worker_signals`` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def die_with_parent() -> None:
    """Linux: ask the kernel to send this worker SIGTERM if its parent dies (even by SIGKILL), so no worker
    outlives its run."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def how_it_ended(exitcode: int) -> str:
    """A worker's exit code in words: ``killed by signal 9 (SIGKILL)``, ``exited with code 3``."""
    if exitcode < 0:
        try:
            name = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            name = ""
        return f"killed by signal {-exitcode}{name}"
    return f"exited with code {exitcode}"


@dataclass
class Outcome:
    """What the parent saw: the workers that died (one line each) and the signal that stopped the run."""

    died: list[str] = field(default_factory=list)
    signal: str | None = None


def supervise(procs: list, state: RunState, storage, progress=None) -> Outcome:
    """Start the workers, wait for them; pass SIGTERM/SIGINT on to them; fail the trial of any worker that dies.

    Args:
        procs: the ``multiprocessing`` processes (not started yet), worker ``i`` at index ``i``.
        state: the run's shared state.
        storage: the study's storage (to mark a dead worker's trial FAIL).
        progress: a context manager to hold while the workers run, entered once they are started (a progress
            bar whose polling thread must not exist when the workers fork).

    Returns:
        An :class:`Outcome`.
    """
    outcome, received = Outcome(), []
    previous = _set_handlers(lambda signum, frame: received.append(signum))
    try:
        for proc in procs:  # after the handlers: a signal from now on reaches every worker
            proc.start()
        with progress or contextlib.nullcontext():
            _watch(procs, state, storage, received, outcome)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcome


def _watch(procs: list, state: RunState, storage, received: list, outcome: Outcome) -> None:
    """Until every worker has exited: report and clean up after each that ends, forward a stop signal."""
    alive, kill_at = dict(enumerate(procs)), None
    while alive:
        multiprocessing.connection.wait([p.sentinel for p in alive.values()], timeout=0.2)
        for index, proc in list(alive.items()):
            if proc.exitcode is None:
                continue
            del alive[index]
            line = _ended(index, proc.exitcode, state, storage, stopping=outcome.signal is not None)
            if line:
                outcome.died.append(line)
                print(f"momsearch run: {line}" + ("; the other workers go on" if alive else ""),
                      file=sys.stderr, flush=True)
        if received and outcome.signal is None:
            outcome.signal = signal.Signals(received[0]).name
            kill_at = time.monotonic() + STOP_SECONDS
            for proc in alive.values():
                _signal(proc, signal.SIGTERM)
        if kill_at is not None and time.monotonic() > kill_at:
            for proc in alive.values():
                _signal(proc, signal.SIGKILL)
            kill_at = None


def _signal(proc, sig) -> None:
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def _ended(index: int, exitcode: int, state: RunState, storage, stopping: bool) -> str | None:
    """Handle worker ``index``'s exit: release the start lock if it held it, fail its running trial.
    Returns the line to report, or None for a worker that ended normally or was stopped by the run."""
    state.release(index)
    trial_id = state.trials[index]
    state.trials[index] = NO_TRIAL
    how = how_it_ended(exitcode)
    number = None
    if trial_id != NO_TRIAL:
        number = fail_running(storage, trial_id, f"worker {index} died: {how}")
        if number is not None:
            state.add(state.failed)
    if exitcode == 0 and number is None:
        return None
    if stopping and exitcode in (EXIT_INTERRUPTED, -signal.SIGTERM, -signal.SIGINT) and number is None:
        return None
    verb = "stopped" if exitcode == EXIT_INTERRUPTED else "died"
    trial = f"; its trial {number} is marked FAIL" if number is not None else ""
    return f"worker {index} {verb}: {how}{trial}"


def fail_running(storage, trial_id: int, reason: str) -> int | None:
    """Mark a trial FAIL with ``status_reason`` if it is still RUNNING; return its number, else None."""
    try:
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            return None
        storage.set_trial_user_attr(trial_id, "status_reason", reason)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return None
    except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
        return None
    return trial.number
