"""Optuna storages: embedded SQLite by default, any storage URL (PostgreSQL, ...) for many workers.

RDB storages get heartbeats so a killed worker's trial is marked FAIL after the grace period and retried
once with the same parameters by Optuna's own ``RetryHeartbeatStaleTrialCallback``.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import sqlalchemy

from ..errors import StudyError
from ..redact import redact, scrub

SQLITE_NAME = "study.db"
SCHEMA_RACE_RETRIES = 5
ARTIFACT_DIR = "artifacts"


def default_url(out: Path) -> str:
    """The embedded SQLite storage URL of an output directory (``<out>/study.db``)."""
    return f"sqlite:///{(Path(out) / SQLITE_NAME).resolve()}"


def open_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int = 1) -> optuna.storages.BaseStorage:
    """Open an Optuna storage from a URL.

    Args:
        url: ``sqlite:///path``, ``postgresql://user@host:port/db`` or any SQLAlchemy URL Optuna accepts.
        heartbeat_interval: seconds between heartbeats of a running trial (RDB storages); None: off.
        grace_period: seconds without a heartbeat after which a running trial is failed.
        max_retry: how many times a stale (killed) trial is re-run with the same parameters.

    Returns:
        An ``optuna.storages.RDBStorage``.
    """
    engine_kwargs = {}
    if url.startswith("sqlite"):
        # Several local worker processes share one file: wait for the lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    heartbeat = {}
    if heartbeat_interval:
        heartbeat = dict(
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
        )
    try:
        storage = _create(url, engine_kwargs, heartbeat)
    except ImportError as exc:
        raise StudyError(f"storage {redact(url)!r}: missing database driver ({scrub(str(exc), url)}); "
                         "for PostgreSQL install momsearch[postgres]") from None
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or an unreachable server
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"storage {redact(url)!r}: cannot open ({scrub(first, url)})") from None
    if url.startswith("sqlite"):
        _write_ahead_log(storage)
    return storage


def _create(url: str, engine_kwargs: dict, heartbeat: dict) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, retried briefly when another process is creating the same new database's tables
    at that moment (two workers, or a worker and a reader, starting together on a fresh file)."""
    for attempt in range(SCHEMA_RACE_RETRIES):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
            if "already exists" not in str(exc) and "UNIQUE constraint failed: alembic_version" not in str(exc):
                raise
            time.sleep(0.2 * (attempt + 1))
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)


def _write_ahead_log(storage: optuna.storages.RDBStorage) -> None:
    """SQLite in WAL mode with normal sync: readers do not block the writer of another worker, and each of a
    trial's attribute writes costs about a third of a rollback-journal commit (measured here)."""

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _pragmas(connection, record):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # connections opened while Optuna created the tables get the pragmas too


def _redact(url: str) -> str:
    """Hide a password in a storage URL (see :func:`momsearch.redact.redact`)."""
    return redact(url)
