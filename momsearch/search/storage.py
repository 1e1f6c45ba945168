"""Optuna storages: embedded SQLite by default, any storage URL (PostgreSQL, ...) for many workers, and
``grpc://host:port`` for Optuna's gRPC storage proxy (``momsearch storage-proxy``) in front of one database.

Storages get heartbeats so a killed worker's trial is marked FAIL after the grace period and retried once
with the same parameters by Optuna's own ``RetryHeartbeatStaleTrialCallback``: RDB storages keep them in
their heartbeat table, and through the gRPC proxy (whose client has none) they are kept as a trial attribute.

Every storage is wrapped in :class:`ResilientStorage`: a storage that goes away (connection refused or
dropped, a gRPC proxy that does not answer) is retried with exponential backoff for ``retry_seconds``, after
which every call raises :class:`StorageUnreachable`; a full disk raises :class:`StorageFull` at once.
"""

from __future__ import annotations

import errno
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
import sqlalchemy
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat

from ..errors import StudyError
from ..redact import redact, scrub

SQLITE_NAME = "study.db"
SCHEMA_RACE_RETRIES = 5
ARTIFACT_DIR = "artifacts"
STORAGE_RETRY_SECONDS = 60.0
GRPC_SCHEME = "grpc://"
HEARTBEAT_ATTR = "momsearch:heartbeat"
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 4.0


class StorageUnreachable(StudyError):
    """The storage did not answer for ``storage_retry_seconds``: the run stops."""


class StorageFull(StudyError):
    """The disk under the storage (or under the run's files) is full: the run stops."""


def default_url(out: Path) -> str:
    """The embedded SQLite storage URL of an output directory (``<out>/study.db``)."""
    return f"sqlite:///{(Path(out) / SQLITE_NAME).resolve()}"


def redact_url(url: str) -> str:
    """A storage URL fit to print: its password (in the user part or a ``password=`` query parameter) hidden
    (:func:`momsearch.redact.redact`, the one redaction every message goes through)."""
    return redact(url)


def open_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int = 1, retry_seconds: float = STORAGE_RETRY_SECONDS,
                 give_up_for_good: bool = True) -> ResilientStorage:
    """Open an Optuna storage from a URL.

    Args:
        url: ``sqlite:///path``, ``postgresql://user@host:port/db``, any SQLAlchemy URL Optuna accepts, or
            ``grpc://host:port`` (a ``momsearch storage-proxy``).
        heartbeat_interval: seconds between heartbeats of a running trial; None: off. RDB storages keep
            them in their heartbeat table; through a gRPC proxy they are trial system attributes.
        grace_period: seconds without a heartbeat after which a running trial is failed.
        max_retry: how many times a stale (killed) trial is re-run with the same parameters.
        retry_seconds: how long a storage that went away is retried before :class:`StorageUnreachable`.
        give_up_for_good: after one :class:`StorageUnreachable`, fail every later call at once (a run, which
            stops); False for a long-lived server (the gRPC proxy), whose next call tries again.

    Returns:
        A :class:`ResilientStorage` around Optuna's cached ``RDBStorage`` or its ``GrpcStorageProxy``.
    """
    if url.startswith(GRPC_SCHEME):
        storage = ResilientStorage(_grpc_proxy(url, retry_seconds), url, retry_seconds, give_up_for_good)
        if heartbeat_interval:  # the proxy carries no heartbeats: keep them as trial attributes instead
            storage.beat_through_attributes(
                heartbeat_interval, grace_period,
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
        return storage
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
        raise StudyError(f"storage {redact_url(url)!r}: missing database driver ({scrub(str(exc), url)}); "
                         "for PostgreSQL install momsearch[postgres]") from None
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or an unreachable server
        if _fault(exc) == "full":
            raise StorageFull(f"disk full: storage {redact_url(url)!r} cannot be written "
                              f"({_first_line(exc, url)})") from None
        raise StudyError(f"storage {redact_url(url)!r}: cannot open ({_first_line(exc, url)})") from None
    if url.startswith("sqlite"):
        _write_ahead_log(storage)
    # Optuna wraps an RDBStorage given by URL in its trial cache; do the same for the one built here.
    return ResilientStorage(optuna.storages._CachedStorage(storage), url, retry_seconds, give_up_for_good)


def _grpc_proxy(url: str, wait_seconds: float) -> BaseStorage:
    """``GrpcStorageProxy`` for ``grpc://host:port`` once the proxy answers; StorageUnreachable if it does not
    within ``wait_seconds`` (at least 1 s), StudyError for a malformed URL."""
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port or parts.path not in ("", "/"):
        raise StudyError(f"storage {url!r}: expected grpc://HOST:PORT (a momsearch storage-proxy)")
    try:
        import grpc  # noqa: F401
    except ImportError as exc:
        raise StudyError(f"storage {url!r}: the gRPC client is missing ({exc}); pip install grpcio protobuf") from None
    proxy, wait_seconds = optuna.storages.GrpcStorageProxy(host=host, port=port), max(wait_seconds, 1.0)
    try:
        proxy.wait_server_ready(timeout=wait_seconds)
    except ConnectionError:
        proxy.close()
        raise StorageUnreachable(f"storage unreachable for {wait_seconds:g} s: no gRPC storage proxy answers "
                                 f"at {host}:{port} (start one with momsearch storage-proxy)") from None
    return proxy


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


# --- faults -------------------------------------------------------------------------------------------------

def _chain(exc: BaseException) -> Iterator[BaseException]:
    """An exception and its causes and contexts (Optuna re-raises SQLAlchemy's errors as its own)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


FULL_MARKERS = ("database or disk is full", "No space left on device", "could not extend file")
UNREACHABLE_GRPC = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
PROXY_DATABASE_DOWN = ("storage unreachable", "StorageInternalError", "OperationalError")


def _fault(exc: BaseException) -> str | None:
    """``"full"`` for a full disk, ``"unreachable"`` for a storage that went away, None for anything else.

    Unreachable: SQLAlchemy's OperationalError or a dropped connection (server down, restarting, network,
    a locked SQLite file past its timeout), a gRPC proxy that does not answer, or the proxy's own database
    failing behind it.
    """
    chain = list(_chain(exc))
    if any(_says_full(e) for e in chain):
        return "full"
    for e in chain:
        if isinstance(e, sqlalchemy.exc.DBAPIError) and (
                e.connection_invalidated or isinstance(e, (sqlalchemy.exc.OperationalError,
                                                           sqlalchemy.exc.InterfaceError))):
            return "unreachable"
        code = getattr(e, "code", None)
        if callable(code) and type(e).__module__.startswith("grpc"):
            name = getattr(code(), "name", "")
            details = e.details() if callable(getattr(e, "details", None)) else ""
            if name in UNREACHABLE_GRPC or (name == "UNKNOWN" and _database_down_behind_proxy(details or "")):
                return "unreachable"
    return None


def _says_full(exc: BaseException) -> bool:
    """This error itself (not its chain) says the disk is full."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return any(marker in str(exc) for marker in FULL_MARKERS)


def _database_down_behind_proxy(details: str) -> bool:
    """The proxy answered, but its database did not: the server reports the exception it caught (a
    ``momsearch storage-proxy`` says "storage unreachable for N s: ...")."""
    return any(marker in details for marker in PROXY_DATABASE_DOWN)


def _first_line(exc: BaseException, url: str) -> str:
    """The most telling line of an error: the database's own message where there is one, password hidden."""
    chain = list(_chain(exc))
    inner = next((e for e in chain if isinstance(e, sqlalchemy.exc.DBAPIError) and e.orig is not None), None)
    if inner is not None:
        text = f"{type(inner.orig).__name__}: {inner.orig}"
    else:
        details = getattr(exc, "details", None)
        text = details() if callable(details) and details() else f"{type(exc).__name__}: {exc}"
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    line = line.removeprefix("Exception calling application: ")  # how a gRPC server passes an error on
    return scrub(line, url) if url else line


def find_fault(exc: BaseException) -> StudyError | None:
    """The :class:`StorageUnreachable` or :class:`StorageFull` somewhere in an exception's chain, if any.

    Optuna reacts to a failing storage inside its own error handling, so what leaves ``study.optimize`` may
    be a follow-on error (e.g. an ``UnboundLocalError``) whose context holds the real one.
    """
    return next((e for e in _chain(exc) if isinstance(e, (StorageUnreachable, StorageFull))), None)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error (or one in its chain) says the disk is full: ``OSError`` ENOSPC, SQLite's "database
    or disk is full", PostgreSQL's "could not extend file"."""
    return _fault(exc) == "full"


@contextmanager
def storage_faults() -> Iterator[None]:
    """Re-raise a storage fault hidden in any error's chain as itself, a storage that went away under a query
    of its own as :class:`StorageUnreachable`, and a full disk met anywhere (weights, a task's files) as
    :class:`StorageFull`: one line for the CLI to print."""
    try:
        yield
    except (StorageUnreachable, StorageFull):
        raise
    except Exception as exc:
        fault = find_fault(exc)
        if fault is not None:
            raise type(fault)(str(fault)) from exc
        if _fault(exc) == "unreachable":  # a query that did not go through ResilientStorage.retry
            raise StorageUnreachable(f"storage unreachable: {_first_line(exc, '')}") from exc
        if is_disk_full(exc):
            full = next(e for e in _chain(exc) if _says_full(e))
            raise StorageFull(f"disk full: {_first_line(full, '')}; free space and run again: finished trials "
                              "are kept") from exc
        raise


class ResilientStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage that outlives short outages of the storage behind it.

    Each call is passed on; when it fails because the storage went away it is repeated with exponential
    backoff (0.5 s doubling up to 4 s) until ``retry_seconds`` have passed since the first failure of the
    outage, then :class:`StorageUnreachable` is raised, and raised at once by every later call (Optuna calls
    the storage again while handling the first error; none of those calls should wait again), unless
    ``give_up_for_good`` is False (a server: its next call tries again). A full disk
    raises :class:`StorageFull` at once. Other errors pass through unchanged.

    Heartbeats are those of the storage behind it (none through a gRPC proxy); a heartbeat that cannot be
    written is skipped, since the trial's own next write reports the outage.

    A call that reached the database just before the connection dropped is repeated: a repeated write of the
    same value is harmless; a repeated trial creation may leave one RUNNING trial behind, which the
    heartbeat check (or the next run) fails.
    """

    def __init__(self, inner: BaseStorage, url: str, retry_seconds: float = STORAGE_RETRY_SECONDS,
                 give_up_for_good: bool = True):
        self.inner = inner
        self.url = url
        self.retry_seconds = float(retry_seconds)
        self.give_up_for_good = give_up_for_good
        self._gave_up: StudyError | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._beats: tuple | None = None  # (interval, grace period, stale-trial callback) kept as attributes

    def _call(self, name: str, *args, **kwargs):
        return self.retry(getattr(self.inner, name), *args, **kwargs)

    def retry(self, method, *args, **kwargs):
        """``method(*args, **kwargs)`` under this storage's fault policy: retried while the storage is away
        (up to ``retry_seconds``), :class:`StorageFull` on a full disk. For code that queries the database
        behind the storage itself (e.g. a COUNT through the engine of the RDB storage under it)."""
        if self._gave_up is not None:
            raise type(self._gave_up)(str(self._gave_up))
        first_failure, delay = None, FIRST_BACKOFF
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                kind = _fault(exc)
                if kind is None:
                    raise
                if kind == "full":
                    raise self._give_up(StorageFull(
                        f"disk full: the storage {redact_url(self.url)} cannot be written "
                        f"({_first_line(exc, self.url)}); free space and run again: finished trials are kept"
                    )) from exc
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                    self._notice(f"storage unreachable ({_first_line(exc, self.url)}); retrying for up to "
                                 f"{self.retry_seconds:g} s")
                if now - first_failure >= self.retry_seconds:
                    raise self._give_up(StorageUnreachable(
                        f"storage unreachable for {self.retry_seconds:g} s: {redact_url(self.url)}: "
                        f"{_first_line(exc, self.url)}")) from exc
                time.sleep(max(0.0, min(delay, first_failure + self.retry_seconds - now)))
                delay = min(2 * delay, MAX_BACKOFF)
                continue
            if first_failure is not None and self._warned:
                self._notice(f"storage back after {time.monotonic() - first_failure:.0f} s", back=True)
            return result

    def _give_up(self, error: StudyError) -> StudyError:
        with self._lock:
            if self.give_up_for_good:
                self._gave_up = self._gave_up or error
            self._warned = False  # a server that goes on says so again at the next outage
        return error

    def _notice(self, text: str, back: bool = False) -> None:
        """One line on stderr when an outage starts (and when it ends), not one per retried call."""
        with self._lock:
            if back == self._warned:
                self._warned = not back
                print(f"momsearch: {text}", file=sys.stderr, flush=True)

    # BaseStorage
    def create_new_study(self, directions, study_name=None):
        return self._call("create_new_study", directions, study_name)

    def delete_study(self, study_id):
        return self._call("delete_study", study_id)

    def set_study_user_attr(self, study_id, key, value):
        return self._call("set_study_user_attr", study_id, key, value)

    def set_study_system_attr(self, study_id, key, value):
        return self._call("set_study_system_attr", study_id, key, value)

    def get_study_id_from_name(self, study_name):
        return self._call("get_study_id_from_name", study_name)

    def get_study_name_from_id(self, study_id):
        return self._call("get_study_name_from_id", study_id)

    def get_study_directions(self, study_id):
        return self._call("get_study_directions", study_id)

    def get_study_user_attrs(self, study_id):
        return self._call("get_study_user_attrs", study_id)

    def get_study_system_attrs(self, study_id):
        return self._call("get_study_system_attrs", study_id)

    def get_all_studies(self):
        return self._call("get_all_studies")

    def create_new_trial(self, study_id, template_trial=None):
        return self._call("create_new_trial", study_id, template_trial)

    def set_trial_param(self, trial_id, param_name, param_value_internal, distribution):
        return self._call("set_trial_param", trial_id, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id, trial_number):
        return self._call("get_trial_id_from_study_id_trial_number", study_id, trial_number)

    def get_trial_number_from_id(self, trial_id):
        return self._call("get_trial_number_from_id", trial_id)

    def get_trial_param(self, trial_id, param_name):
        return self._call("get_trial_param", trial_id, param_name)

    def set_trial_state_values(self, trial_id, state, values=None):
        return self._call("set_trial_state_values", trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id, step, intermediate_value):
        return self._call("set_trial_intermediate_value", trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id, key, value):
        return self._call("set_trial_user_attr", trial_id, key, value)

    def set_trial_system_attr(self, trial_id, key, value):
        return self._call("set_trial_system_attr", trial_id, key, value)

    def get_trial(self, trial_id):
        return self._call("get_trial", trial_id)

    def get_all_trials(self, study_id, deepcopy=True, states=None):
        return self._call("get_all_trials", study_id, deepcopy, states)

    def get_n_trials(self, study_id, state=None):
        return self._call("get_n_trials", study_id, state)

    def get_best_trial(self, study_id):
        return self._call("get_best_trial", study_id)

    def get_trial_params(self, trial_id):
        return self._call("get_trial_params", trial_id)

    def get_trial_user_attrs(self, trial_id):
        return self._call("get_trial_user_attrs", trial_id)

    def get_trial_system_attrs(self, trial_id):
        return self._call("get_trial_system_attrs", trial_id)

    def remove_session(self):
        return self._call("remove_session")

    def check_trial_is_updatable(self, trial_id, trial_state):
        return self.inner.check_trial_is_updatable(trial_id, trial_state)

    # BaseHeartbeat: the storage's own heartbeats (RDB), or heartbeats kept as trial system attributes
    # (beat_through_attributes: through the gRPC proxy, whose client has none)
    def beat_through_attributes(self, interval: int, grace_period: int | None, stale_callback) -> None:
        """Give a storage without heartbeats of its own (Optuna's gRPC proxy client) heartbeats: each beat
        writes ``[trial id, time.time()]`` to the trial's system attribute ``momsearch:heartbeat``; a
        RUNNING trial whose last beat is older than ``grace_period`` (default twice the interval) is stale.

        The times are the workers' clocks: hosts' clocks must agree to well within the grace period (NTP).
        A re-run inherits the attribute of the trial it repeats, with the old trial's id: not a beat of its own.
        """
        self._beats = (interval, grace_period or 2 * interval, stale_callback)

    def record_heartbeat(self, trial_id):
        try:
            if self._beats is None:
                self._call("record_heartbeat", trial_id)
            else:
                self._call("set_trial_system_attr", trial_id, HEARTBEAT_ATTR, [trial_id, time.time()])
        except (StorageUnreachable, StorageFull):
            pass  # the trial's own next storage call reports it, once
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker already failed it as stale: its own next write says so

    def _get_stale_trial_ids(self, study_id):
        if self._beats is None:
            return self._call("_get_stale_trial_ids", study_id)
        now, grace = time.time(), self._beats[1]
        running = self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        beats = [(t._trial_id, t.system_attrs.get(HEARTBEAT_ATTR)) for t in running]
        return [trial_id for trial_id, beat in beats
                if isinstance(beat, list) and len(beat) == 2 and beat[0] == trial_id and now - beat[1] > grace]

    def get_heartbeat_interval(self):
        if self._beats is not None:
            return self._beats[0]
        inner = self.inner
        return inner.get_heartbeat_interval() if isinstance(inner, BaseHeartbeat) else None

    def get_heartbeat_stale_trial_callback(self):
        if self._beats is not None:
            return self._beats[2]
        inner = self.inner
        return inner.get_heartbeat_stale_trial_callback() if isinstance(inner, BaseHeartbeat) else None

    @property
    def _backend(self) -> BaseStorage:
        """The storage behind (the name Optuna's own cache wrapper uses, so code that looks for the RDB
        storage under wrappers finds it)."""
        return self.inner

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine of an RDB storage; None through a gRPC proxy."""
        backend = getattr(self.inner, "_backend", self.inner)
        return getattr(backend, "engine", None)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release connections (before forking workers, so no child shares one; or when done)."""
        if self.engine is not None:
            self.engine.dispose()
        elif hasattr(self.inner, "close"):
            self.inner.close()
