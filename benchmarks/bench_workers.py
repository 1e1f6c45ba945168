"""Workers on one study: whole trials with 1-3 local workers, and N light clients on PostgreSQL directly vs through
Optuna's gRPC storage proxy.

Two measurements (``--what trials``, ``--what clients``, or both, the default):

- trials: trials finished per minute with 1, 2 and 3 local workers (``momsearch run --jobs``), on SQLite and on
  PostgreSQL, with the study of tiny trials of bench_search.py, each on a fresh storage.
- clients: N client processes (``--clients``, default 1,8,32,64) that only ask and tell (a RandomSampler, one
  float parameter, no training: the storage traffic of a trial and nothing else), for ``--seconds`` each,
  against PostgreSQL directly and through ``momsearch storage-proxy`` (a real process, Optuna's gRPC proxy
  with ``--proxy-threads`` server threads). Prints trials told per second and the PostgreSQL connections
  held (``pg_stat_activity`` on the study's database, sampled every 0.1 s in the measured window; max and
  mean). Every client opens the storage as ``momsearch run`` does (``open_storage``); the clients start
  together, once all are connected, so start-up is not measured.

Starts a throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package, as the tests do); everything
listens on 127.0.0.1 only. Each client phase is bounded (``--ready-timeout`` to connect, ``--seconds`` to run,
then leftovers are killed), so the script stops by itself.

    python benchmarks/bench_workers.py [--what clients] [--clients 1,8,32,64] [--seconds 10]
    python benchmarks/bench_workers.py --what trials [--trials 30] [--batches 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pg_server import Cluster, server_bin  # noqa: E402

# --- whole trials, 1-3 local workers ------------------------------------------------------------------------

def trials_per_minute(trials: int, batches: int, jobs: int, storage: str | None) -> float:
    from bench_search import study_file

    from momsearch.search.study import RunOptions, run

    with tempfile.TemporaryDirectory() as tmp:
        sf = dataclasses.replace(study_file(Path(tmp), trials, batches), name=f"bench-{jobs}-{time.monotonic_ns()}")
        start = time.perf_counter()
        run(sf, RunOptions(out=Path(tmp) / "out", jobs=jobs, storage=storage, progress=False))
        return 60 * trials / (time.perf_counter() - start)


def bench_trials(args, cluster: Cluster | None) -> None:
    storages = {"sqlite": None}
    if cluster:
        storages["postgresql"] = cluster.url
    print(f"{'storage':<12}{'jobs':>6}{'trials/min':>12}{'vs 1 job':>10}")
    for name, url in storages.items():
        base = None
        for jobs in (1, 2, 3):
            rate = trials_per_minute(args.trials, args.batches, jobs, url)
            base = base or rate
            print(f"{name:<12}{jobs:>6}{rate:>12.1f}{rate / base:>9.2f}x", flush=True)


# --- light clients: ask/tell only -------------------------------------------------------------------------

def light_client(url: str, study_name: str, ready, start, seconds: float, counts) -> None:
    """One client process: connect, say so, wait for the common start, then ask/tell for ``seconds``."""
    import optuna

    from momsearch.search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=study_name, storage=open_storage(url),
                              sampler=optuna.samplers.RandomSampler())
    study.get_trials(deepcopy=False)  # a first round trip: the connection is open before the clock starts
    ready.release()
    start.wait()
    end, told = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
        told += 1
    counts.put(told)


def tagged(url: str, application: str) -> str:
    """The URL with a PostgreSQL ``application_name``, so pg_stat_activity tells whose connections are whose."""
    return f"{url}{'&' if '?' in url else '?'}application_name={application}"


def pg_connections(dsn: str):
    """A function that counts the connections of one ``application_name`` (see :func:`tagged`)."""
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)

    def count(application: str) -> int:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                            (application,)).fetchone()[0]

    count.close = conn.close
    return count


def run_clients(url: str, n: int, seconds: float, ready_timeout: float, count_connections) -> dict:
    """N clients for ``seconds``: trials per second and the connections held meanwhile."""
    import optuna

    from momsearch.search.storage import open_storage

    name = f"light-{n}-{time.monotonic_ns()}"
    storage = open_storage(url)
    optuna.create_study(study_name=name, storage=storage)
    storage.close()  # the parent holds no connection while the clients run
    ctx = multiprocessing.get_context("fork")  # the parent holds no gRPC channel or connection at this point
    ready, start, counts = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=light_client, args=(url, name, ready, start, seconds, counts), daemon=True)
             for _ in range(n)]
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + ready_timeout
        for _ in range(n):
            if not ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"{n} clients: not all connected within {ready_timeout:g} s")
        held_before = count_connections()
        start.set()
        t0, samples = time.monotonic(), []
        while time.monotonic() - t0 < seconds:
            samples.append(count_connections())
            time.sleep(0.1)
        told = [counts.get(timeout=seconds + ready_timeout) for _ in range(n)]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return {"rate": sum(told) / seconds, "max": max(samples + [held_before]),
            "mean": statistics.mean(samples) if samples else held_before}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(url: str, threads: int, timeout: float) -> tuple[subprocess.Popen, str]:
    """``momsearch storage-proxy`` on 127.0.0.1 as its own process; its grpc:// URL once it answers."""
    from momsearch.search.storage import open_storage

    port = free_port()
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "momsearch", "storage-proxy", url, "--host", "127.0.0.1",
                             "--port", str(port), "--threads", str(threads)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target, deadline = f"grpc://127.0.0.1:{port}", time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"storage-proxy exited with {proc.returncode}")
        try:
            open_storage(target, retry_seconds=2).close()
            return proc, target
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.5)


def bench_clients(args, cluster: Cluster) -> None:
    count = pg_connections(cluster.url)
    # The proxy is started first (its own process, before any client is forked) and kept for every N.
    proxy, target = start_proxy(tagged(cluster.url, "bench_proxy"), args.proxy_threads, args.ready_timeout)
    try:
        print(f"{'clients':>8}{'storage':>12}{'trials/s':>10}{'pg conns max':>14}{'mean':>7}", flush=True)
        for n in args.clients:
            for label, url, application in (("postgresql", tagged(cluster.url, f"bench_direct_{n}"),
                                             f"bench_direct_{n}"), ("grpc proxy", target, "bench_proxy")):
                r = run_clients(url, n, args.seconds, args.ready_timeout, lambda a=application: count(a))
                print(f"{n:>8}{label:>12}{r['rate']:>10.1f}{r['max']:>14}{r['mean']:>7.1f}", flush=True)
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proxy.kill()
        count.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=("trials", "clients", "both"), default="both")
    parser.add_argument("--trials", type=int, default=30, help="trials: the study's n_trials")
    parser.add_argument("--batches", type=int, default=6, help="trials: training batches per trial")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64],
                        help="clients: comma-separated numbers of client processes (default 1,8,32,64)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clients: measured seconds per point")
    parser.add_argument("--ready-timeout", type=float, default=300.0,
                        help="clients: seconds allowed for all clients (and the proxy) to connect")
    parser.add_argument("--proxy-threads", type=int, default=10, help="clients: the proxy's server threads")
    args = parser.parse_args()
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients: positive numbers, e.g. 1,8,32,64")
    # Each direct client holds two connections (Optuna's RDBStorage: its session and its schema check).
    cluster = Cluster(max_connections=3 * max(args.clients) + 20).start() if server_bin() else None
    try:
        if args.what in ("trials", "both"):
            bench_trials(args, cluster)
        if args.what in ("clients", "both"):
            if cluster is None:
                print("clients: skipped, no PostgreSQL server binary (apt-get install postgresql)")
            else:
                bench_clients(args, cluster)
    finally:
        if cluster:
            cluster.stop()


if __name__ == "__main__":
    main()
