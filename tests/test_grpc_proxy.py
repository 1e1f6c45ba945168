"""Optuna's gRPC storage proxy: ``momsearch storage-proxy`` as a real process, workers on ``grpc://``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import optuna
import pytest
from test_scaleout import spawn_run, wait_for_running, write_study

from momsearch.cli import main
from momsearch.search.storage import StorageUnreachable, open_storage

State = optuna.trial.TrialState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(url: str, *extra: str) -> tuple[subprocess.Popen, str]:
    """``python -m momsearch storage-proxy URL`` on 127.0.0.1; returns it and its grpc:// URL once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "momsearch", "storage-proxy", url, "--host", "127.0.0.1",
                             "--port", str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ)
    target = f"grpc://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            open_storage(target, retry_seconds=2).close()
            return proc, target
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.5)


def stop_proxy(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err.decode()


@pytest.fixture
def backend(request, tmp_path):
    """The database behind the proxy: the throwaway PostgreSQL server, or an SQLite file where it is absent."""
    from pg_server import server_bin

    if server_bin() is None:
        return f"sqlite:///{tmp_path / 'behind-proxy.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.slow
def test_two_workers_complete_a_study_through_the_proxy(tmp_path, backend):
    name = f"proxied_{backend.split(':')[0]}"
    path = write_study(tmp_path, name, "{n_trials: 4, pruner: none}")
    proxy, target = start_proxy(backend)
    try:
        workers = [spawn_run(path, tmp_path, "--storage", target, n=64) for _ in range(2)]
        for w in workers:
            out, err = w.communicate(timeout=300)
            assert w.returncode == 0, err.decode()
            assert f"study {name}:" in out.decode()
    finally:
        err = stop_proxy(proxy)
    assert "Server started at 127.0.0.1" in err and "stopped" in err
    # Read the database directly, not through the proxy: the trials are in it.
    trials = optuna.load_study(study_name=name, storage=backend).get_trials()
    complete = [t for t in trials if t.state == State.COMPLETE]
    assert len(complete) >= 4  # (how far racing workers may overshoot is the counting tests' business)
    assert not [t for t in trials if t.state in (State.RUNNING, State.WAITING)]
    assert len({t.number for t in trials}) == len(trials)
    for t in complete:
        assert {"accuracy", "seed", "rule", "record_artifact"} <= set(t.user_attrs)


@pytest.mark.slow
def test_jobs_through_the_proxy_and_report(tmp_path):
    """``--jobs 2`` through the proxy (workers are spawned: a gRPC client is not forked), then report."""
    backend = f"sqlite:///{tmp_path / 'behind-proxy.db'}"
    path = write_study(tmp_path, "proxjobs", "{n_trials: 2, pruner: none}")
    proxy, target = start_proxy(backend)
    try:
        run = spawn_run(path, tmp_path, "--storage", target, "--jobs", "2", n=64)
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err.decode()
        assert main(["report", "proxjobs", "--storage", target, "--out", str(tmp_path / "out")]) == 0
    finally:
        stop_proxy(proxy)
    trials = optuna.load_study(study_name="proxjobs", storage=backend).get_trials()
    assert sum(t.state == State.COMPLETE for t in trials) == 2 and len(trials) == 2


@pytest.mark.slow
@pytest.mark.postgres
def test_database_behind_the_proxy_stopped_then_back_recovers_or_fails_in_one_line():
    from pg_server import Cluster, server_bin

    if server_bin() is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql; .ci/run does)")
    cluster = Cluster().start()
    proxy = None
    try:
        proxy, target = start_proxy(cluster.url, "--retry-seconds", "1")
        study = optuna.create_study(study_name="behind", storage=open_storage(target, retry_seconds=60))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        cluster.stop_server()
        restart = threading.Timer(3, cluster.start_server)
        restart.start()
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # waits out the outage
        restart.join()
        assert [t.state for t in study.get_trials()] == [State.COMPLETE] * 2

        cluster.stop_server()
        with pytest.raises(StorageUnreachable) as info:
            optuna.load_study(study_name="behind", storage=open_storage(target, retry_seconds=2)).get_trials()
        assert str(info.value).startswith(f"storage unreachable for 2 s: {target}: storage unreachable for 1 s: "
                                          "postgresql://momsearch@127.0.0.1")
        cluster.start_server()
    finally:
        if proxy is not None:
            stop_proxy(proxy)
        cluster.stop()


@pytest.mark.slow
def test_killed_worker_trial_through_the_proxy_fails_and_is_retried_once(tmp_path, monkeypatch):
    """The proxy's client has no heartbeats; momsearch keeps them as trial attributes, so the grace period
    and the retry of a killed worker's trial work through it as on the database."""
    backend = f"sqlite:///{tmp_path / 'behind-proxy.db'}"
    path = write_study(tmp_path, "proxkill", "{n_trials: 2, pruner: none, heartbeat_interval: 1, grace_period: 3}")
    proxy, target = start_proxy(backend)
    try:
        proc = spawn_run(path, tmp_path, "--storage", target, n=400_000)
        wait_for_running(backend, "proxkill", proc)
        time.sleep(2)
        beat = optuna.load_study(study_name="proxkill", storage=backend).get_trials()[0].system_attrs
        assert beat["momsearch:heartbeat"][0] == 1  # [trial id, time]: the first trial's own beat
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(4)  # past the grace period
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setenv("MOMSEARCH_TEST_N", "64")
        assert main(["run", str(path), "--storage", target, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    finally:
        stop_proxy(proxy)
    trials = optuna.load_study(study_name="proxkill", storage=backend).get_trials()
    killed = trials[0]
    assert killed.state == State.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == State.COMPLETE and retries[0].params == killed.params
    assert not [t for t in trials if t.state in (State.RUNNING, State.WAITING)]
