"""Faults: a storage that goes away (bounded retry, then one line, or recovery), a full disk, a user task
calling sys.exit, and the heartbeat retry of a killed worker's trial on SQLite."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
import sqlalchemy
from test_scaleout import spawn_run, wait_for_running, write_study

from momsearch.cli import main
from momsearch.search.storage import (
    ResilientStorage,
    StorageFull,
    StorageUnreachable,
    open_storage,
    redact_url,
    storage_faults,
)

State = optuna.trial.TrialState


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_connection_error() -> sqlalchemy.exc.OperationalError:
    """A real OperationalError: PostgreSQL's driver refused by a port nobody listens on."""
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://u@127.0.0.1:{closed_port()}/db")
    try:
        engine.connect()
    except sqlalchemy.exc.OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("a closed port accepted a connection")


class GoesAway(optuna.storages.InMemoryStorage):
    """A storage whose study listing fails like a dropped database for its first ``failures`` calls."""

    def __init__(self, failures: int, error: Exception):
        super().__init__()
        self.failures, self.error, self.calls = failures, error, 0

    def get_all_studies(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from self.error
        return super().get_all_studies()


def test_redact_url_hides_user_and_query_passwords():
    assert redact_url("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert "s3cret" not in redact_url("postgresql://bob@db/x?password=s3cret&sslmode=require")
    assert "sslmode=require" in redact_url("postgresql://bob@db/x?password=s3cret&sslmode=require")
    assert redact_url("grpc://127.0.0.1:13000") == "grpc://127.0.0.1:13000"


def test_outage_shorter_than_the_bound_recovers(capsys):
    inner = GoesAway(failures=2, error=refused_connection_error())
    storage = ResilientStorage(inner, "postgresql://bob:s3cret@127.0.0.1/x", retry_seconds=30)
    start = time.monotonic()
    assert storage.get_all_studies() == []
    assert inner.calls == 3 and time.monotonic() - start < 10  # backoff 0.5 s, then 1 s
    err = capsys.readouterr().err
    assert "storage unreachable" in err and "storage back" in err and "s3cret" not in err


def test_outage_longer_than_the_bound_is_one_line_and_later_calls_do_not_wait():
    inner = GoesAway(failures=10**6, error=refused_connection_error())
    storage = ResilientStorage(inner, "postgresql://bob:s3cret@127.0.0.1/x", retry_seconds=1.5)
    start = time.monotonic()
    with pytest.raises(StorageUnreachable) as info:
        storage.get_all_studies()
    assert 1.5 <= time.monotonic() - start < 10
    message = str(info.value)
    assert message.startswith("storage unreachable for 1.5 s: postgresql://bob:***@127.0.0.1/x: OperationalError")
    assert "\n" not in message and "s3cret" not in message
    calls, start = inner.calls, time.monotonic()
    with pytest.raises(StorageUnreachable):
        storage.get_all_studies()
    assert inner.calls == calls and time.monotonic() - start < 0.5


def test_a_server_tries_again_after_giving_up():
    inner = GoesAway(failures=3, error=refused_connection_error())
    storage = ResilientStorage(inner, "postgresql://127.0.0.1/x", retry_seconds=0.6, give_up_for_good=False)
    with pytest.raises(StorageUnreachable):
        storage.get_all_studies()
    while inner.calls < 3:
        with pytest.raises(StorageUnreachable):
            storage.get_all_studies()
    assert storage.get_all_studies() == []


def test_other_errors_pass_through_at_once():
    storage = ResilientStorage(optuna.storages.InMemoryStorage(), "sqlite:///x", retry_seconds=30)
    start = time.monotonic()
    with pytest.raises(KeyError):
        storage.get_study_id_from_name("no such study")
    assert time.monotonic() - start < 1


def test_full_sqlite_database_is_one_line_disk_full(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'full.db'}", retry_seconds=30)

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _small(connection, record):  # SQLite's own limit: writes past it fail with SQLITE_FULL
        connection.execute("PRAGMA max_page_count=40")

    storage.engine.dispose()
    study = optuna.create_study(study_name="full", storage=storage)
    start = time.monotonic()
    with pytest.raises(StorageFull) as info:
        for i in range(100):
            study.set_user_attr(f"blob{i}", "x" * 4000)
    assert time.monotonic() - start < 10  # no retrying a full disk
    assert str(info.value).startswith("disk full:") and "database or disk is full" in str(info.value)
    assert "\n" not in str(info.value) and "max length" not in str(info.value)


def test_storage_faults_finds_the_fault_behind_optunas_follow_on_error():
    with pytest.raises(StorageUnreachable, match="^storage unreachable for 5 s"):
        with storage_faults():
            try:
                raise StorageUnreachable("storage unreachable for 5 s: x")
            except StorageUnreachable:
                raise UnboundLocalError("cannot access local variable 'updated_state'")  # noqa: B904
    with pytest.raises(StorageFull, match="^disk full: OSError: .*No space left"):
        with storage_faults():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(ValueError):
        with storage_faults():
            raise ValueError("not a storage fault")
    with pytest.raises(StorageUnreachable, match="^storage unreachable: OperationalError"):
        with storage_faults():
            raise refused_connection_error()


def test_retry_runs_a_query_of_ones_own_under_the_same_policy():
    storage = ResilientStorage(optuna.storages.InMemoryStorage(), "postgresql://127.0.0.1/x", retry_seconds=30)
    error, calls = refused_connection_error(), []

    def count(x):
        calls.append(x)
        if len(calls) < 3:
            raise error
        return 7

    assert storage.retry(count, "arg") == 7 and calls == ["arg"] * 3


def test_unreachable_grpc_proxy_is_one_line():
    port = closed_port()
    start = time.monotonic()
    with pytest.raises(StorageUnreachable, match=f"^storage unreachable for 1 s: no gRPC storage proxy answers at "
                                                 f"127.0.0.1:{port}"):
        open_storage(f"grpc://127.0.0.1:{port}", retry_seconds=1)
    assert time.monotonic() - start < 30
    with pytest.raises(Exception, match="expected grpc://HOST:PORT"):
        open_storage("grpc://127.0.0.1", retry_seconds=1)


def test_storage_retry_seconds_is_a_validated_setting(tmp_path, capsys):
    path = write_study(tmp_path, "retry", "{n_trials: 1, storage_retry_seconds: -1}")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "study.storage_retry_seconds" in err and "-1" in err and err.count("\n") == 1
    assert main(["list", "study"]) == 0
    assert "storage_retry_seconds: float in [0, inf), default 60.0" in capsys.readouterr().out


DISK_FULL_TASK = '''
def make(n=64):
    with open("/dev/full", "w") as f:  # a cache file on a full disk: ENOSPC
        f.write("x" * 65536)
        f.flush()
'''

EXITING_TASK = '''
import os, sys
from points_task import make as points

def make(marker, n=64):
    """Calls sys.exit(3) the first time (a user script's argument check, say), then works."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        sys.exit(3)
    return points(n=n)
'''


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_in_a_trial_stops_the_run_with_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "full_task.py").write_text(DISK_FULL_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path, "diskfull", "{n_trials: 3, pruner: none}", task="{module: 'full_task:make'}")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("momsearch run: error: disk full:") and "No space left on device" in err
    assert err.count("\n") == 1
    trials = optuna.load_study(study_name="diskfull", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}").trials
    assert [t.state for t in trials] == [State.FAIL]  # stopped at once, not one failed trial after another
    assert "No space left on device" in trials[0].user_attrs["status_reason"]


def test_sys_exit_in_a_user_task_fails_its_trial_and_the_worker_goes_on(tmp_path, monkeypatch):
    write_study(tmp_path, "unused", "{n_trials: 1}")  # writes points_task.py
    (tmp_path / "exiting_task.py").write_text(EXITING_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "exited-once"
    path = write_study(tmp_path, "exits", "{n_trials: 3, pruner: none, max_fail_fraction: 1.0}",
                       task=f"{{module: 'exiting_task:make', marker: '{marker}'}}")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    trials = optuna.load_study(study_name="exits", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}").trials
    assert trials[0].state == State.FAIL
    assert trials[0].user_attrs["status_reason"] == "SystemExit: the task called sys.exit(3)"
    assert State.COMPLETE in [t.state for t in trials[1:]] and State.RUNNING not in [t.state for t in trials]


@pytest.mark.slow
def test_killed_worker_trial_fails_and_is_retried_once_on_sqlite(tmp_path, monkeypatch):
    """SQLite has heartbeats too: the stale-trial retry works where PostgreSQL is absent."""
    path = write_study(tmp_path, "kill", "{n_trials: 3, pruner: none, heartbeat_interval: 1, grace_period: 2}")
    storage = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    proc = spawn_run(path, tmp_path, n=400_000)
    wait_for_running(storage, "kill", proc)
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(3)  # past the grace period: the next worker fails the stale trial and queues its re-run

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MOMSEARCH_TEST_N", "64")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    trials = optuna.load_study(study_name="kill", storage=storage).get_trials()
    killed = trials[0]
    assert killed.state == State.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1
    assert retries[0].state == State.COMPLETE and retries[0].params == killed.params
    assert retries[0].user_attrs["seed"] == killed.user_attrs["seed"]
    assert not [t for t in trials if t.state in (State.RUNNING, State.WAITING)]


# --- a real PostgreSQL server stopped mid-trial -----------------------------------------------------------

@pytest.fixture
def cluster():
    """A PostgreSQL cluster of the test's own, so stopping it disturbs no other test."""
    from pg_server import Cluster, server_bin

    if server_bin() is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql; .ci/run does)")
    c = Cluster().start()
    yield c
    c.stop()


def with_password(url: str) -> str:
    """The cluster trusts local connections: a password in the URL is accepted and must never be printed."""
    return url.replace("momsearch@", "momsearch:s3cret-pw@", 1)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_stopped_mid_trial_then_back_recovers(tmp_path, cluster):
    path = write_study(tmp_path, "outage", "{n_trials: 2, pruner: none, heartbeat_interval: 1, grace_period: 30, "
                       "storage_retry_seconds: 60}")
    url = with_password(cluster.url)
    proc = spawn_run(path, tmp_path, "--storage", url, n=20_000)
    wait_for_running(cluster.url, "outage", proc)
    cluster.stop_server()
    time.sleep(4)  # the heartbeat (every second) meets the outage
    cluster.start_server()
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()
    err = err.decode()
    assert "storage unreachable" in err and "storage back" in err and "s3cret-pw" not in err + out.decode()
    trials = optuna.load_study(study_name="outage", storage=cluster.url).get_trials()
    assert len(trials) == 2 and all(t.state == State.COMPLETE for t in trials)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_gone_for_good_stops_with_one_line_after_the_bound(tmp_path, cluster, monkeypatch):
    path = write_study(tmp_path, "gone", "{n_trials: 2, pruner: none, heartbeat_interval: 1, grace_period: 2, "
                       "storage_retry_seconds: 3}")
    url = with_password(cluster.url)
    proc = spawn_run(path, tmp_path, "--storage", url, n=20_000)
    wait_for_running(cluster.url, "gone", proc)
    cluster.stop_server()
    stopped = time.monotonic()
    out, err = proc.communicate(timeout=240)
    took = time.monotonic() - stopped
    err = err.decode()
    assert proc.returncode == 2, err
    assert 3 <= took < 120, took  # bounded: the retry window plus the trial's remaining training
    last = err.strip().splitlines()[-1]
    assert last.startswith("momsearch run: error: storage unreachable for 3 s: postgresql://momsearch:***@127.0.0.1")
    assert "Traceback" not in err and "UnboundLocalError" not in err and "s3cret-pw" not in err + out.decode()

    # Back again: the trial the outage left RUNNING is failed by the heartbeat check and re-run.
    cluster.start_server()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MOMSEARCH_TEST_N", "64")
    time.sleep(2.5)  # past the grace period
    assert main(["run", str(path), "--storage", url, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    trials = optuna.load_study(study_name="gone", storage=cluster.url).get_trials()
    assert not [t for t in trials if t.state in (State.RUNNING, State.WAITING)]
    assert State.FAIL in [t.state for t in trials]
    assert sum(t.state == State.COMPLETE for t in trials) >= 2


def test_storage_proxy_refuses_bad_arguments_in_one_line():
    for args, words in ((["sqlite:///x.db", "--port", "70000"], "--port=70000"),
                        (["grpc://127.0.0.1:13000"], "not another proxy")):
        proc = subprocess.run([sys.executable, "-m", "momsearch", "storage-proxy", *args], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


