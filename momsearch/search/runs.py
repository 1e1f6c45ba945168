"""What a run needs to know of the other runs on its study: its own run number, and how many trials count.

A study's ``n_trials`` counts the trials that finished with a result (COMPLETE or PRUNED) plus those alive now
(RUNNING, or WAITING: queued re-runs of killed trials). A FAIL trial does not use up the budget. On a grid
(``BruteForceSampler``) it counts distinct finished configurations plus the trials alive now: workers
sampling in parallel can draw the same grid point twice, and a repeat must not take the place of a point
that was never run.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import time

import optuna
import sqlalchemy
from optuna.trial import TrialState

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
ALIVE = (TrialState.RUNNING, TrialState.WAITING)
RUN_KEY = "momsearch:run:"
CLAIM_ATTEMPTS = 200


def retried(query):
    """A query that reads the database under ``storage`` itself runs under the storage's retry policy
    (``ResilientStorage.retry``: a storage that went away is waited for, then one line), when it has one."""

    @functools.wraps(query)
    def run(storage, *args, **kwargs):
        retry = getattr(storage, "retry", None)
        return query(storage, *args, **kwargs) if retry is None else retry(query, storage, *args, **kwargs)

    return run


def rdb(storage) -> optuna.storages.RDBStorage | None:
    """The RDB storage under ``storage`` (Optuna's cache and other wrappers keep it as ``_backend``), or None."""
    for _ in range(8):
        if isinstance(storage, optuna.storages.RDBStorage):
            return storage
        storage = getattr(storage, "_backend", None) or getattr(storage, "_storage", None)
        if storage is None:
            return None
    return None


def claim_run(storage, study_id: int) -> int:
    """A number for this run of the study that no other run of it has, assigned by the storage.

    On an RDB storage each run inserts the study attribute ``momsearch:run:<k>`` for the smallest free ``k``;
    the database's unique key on (study, attribute) lets exactly one of two racing runs have each ``k``, so
    the first run of a fresh study is run 0 and every later or simultaneous run gets a number of its own.
    Elsewhere (no such key to rely on) it is a random 64-bit number, which no other run shares either.
    """
    base = rdb(storage)
    if base is None:
        return _random_run()
    from optuna.storages._rdb import models

    taken = [int(key[len(RUN_KEY):]) for key in base.get_study_system_attrs(study_id) if key.startswith(RUN_KEY)]
    number = max(taken, default=-1) + 1
    who = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    for attempt in range(CLAIM_ATTEMPTS):
        session = base.scoped_session()
        try:
            session.add(models.StudySystemAttributeModel(study_id=study_id, key=f"{RUN_KEY}{number}",
                                                         value_json=who))
            session.commit()
            return number
        except sqlalchemy.exc.IntegrityError:  # another run has this number: take the next one
            session.rollback()
            number += 1
        except sqlalchemy.exc.OperationalError:  # SQLite busy (another process writes): try again
            session.rollback()
            time.sleep(0.01 * min(attempt + 1, 20))
        finally:
            session.close()
    return _random_run()


def _random_run() -> int:
    return secrets.randbits(64) | 1 << 64  # never 0: only the first run on a storage-numbered study is 0


def count_toward_target(storage, study_id: int, grid: bool = False) -> int:
    """How many of the study's trials count toward ``n_trials`` now (see the module docstring)."""
    return tally(storage, study_id, grid)[0]


@retried
def tally(storage, study_id: int, grid: bool = False) -> tuple[int, int]:
    """``(trials that count toward n_trials, of them WAITING)``: a worker starts a trial while the first is
    below the target, or while the second is not 0 (a queued re-run is run even when the target is reached).

    On an RDB storage this reads neither the trials' attributes nor their histories: one grouped ``COUNT``
    query (a worker asks before each trial it starts; about 100x cheaper than the trial list of a 200-trial
    study), on a grid the finished trials' parameter rows too. Elsewhere it reads the trial list.
    """
    base = rdb(storage)
    if base is None:
        trials = storage.get_all_trials(study_id, deepcopy=False, states=DONE + ALIVE)
        return counted(trials, grid), sum(1 for t in trials if t.state == TrialState.WAITING)
    from optuna.storages._rdb import models

    trial, param = models.TrialModel, models.TrialParamModel
    session = base.scoped_session()
    try:
        by_state = dict(session.query(trial.state, sqlalchemy.func.count(trial.trial_id)).filter(
            trial.study_id == study_id, trial.state.in_(DONE + ALIVE)).group_by(trial.state))
        alive, waiting = sum(by_state.get(s, 0) for s in ALIVE), by_state.get(TrialState.WAITING, 0)
        if not grid:
            return alive + sum(by_state.get(s, 0) for s in DONE), waiting
        done = {trial_id: [] for (trial_id,) in session.query(trial.trial_id).filter(
            trial.study_id == study_id, trial.state.in_(DONE))}
        rows = session.query(param.trial_id, param.param_name, param.param_value).join(trial).filter(
            trial.study_id == study_id, trial.state.in_(DONE))
        for trial_id, name, value in rows:
            done[trial_id].append((name, value))  # the storage's value: a choice's index, a number's value
        return alive + len({tuple(sorted(points)) for points in done.values()}), waiting
    finally:
        session.close()


@retried
def finished_with_result(storage, study_id: int) -> int:
    """The study's COMPLETE and PRUNED trials (the progress bar polls it): a COUNT query on an RDB storage."""
    base = rdb(storage)
    if base is None:
        return len(storage.get_all_trials(study_id, deepcopy=False, states=DONE))
    from optuna.storages._rdb import models

    session = base.scoped_session()
    try:
        return session.query(sqlalchemy.func.count(models.TrialModel.trial_id)).filter(
            models.TrialModel.study_id == study_id, models.TrialModel.state.in_(DONE)).scalar()
    finally:
        session.close()


def counted(trials: list, grid: bool = False) -> int:
    """Of a study's trials, those that count toward ``n_trials`` (see the module docstring)."""
    done = [t for t in trials if t.state in DONE]
    alive = sum(1 for t in trials if t.state in ALIVE)
    if grid:
        return len({json.dumps(t.params, sort_keys=True, default=str) for t in done}) + alive
    return len(done) + alive
