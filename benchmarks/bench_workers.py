"""Trials finished per minute with 1, 2 and 3 local workers, on SQLite and on PostgreSQL.

Starts a throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package, as the tests do) and runs
the same study of tiny trials (see bench_search.py) on fresh storages.

    python benchmarks/bench_workers.py [--trials 30] [--batches 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from bench_search import study_file

from momsearch.search.study import RunOptions, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pg_server import Cluster, server_bin  # noqa: E402


def trials_per_minute(trials: int, batches: int, jobs: int, storage: str | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        sf = dataclasses.replace(study_file(Path(tmp), trials, batches), name=f"bench-{jobs}-{time.monotonic_ns()}")
        start = time.perf_counter()
        run(sf, RunOptions(out=Path(tmp) / "out", jobs=jobs, storage=storage, progress=False))
        return 60 * trials / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    storages = {"sqlite": None}
    cluster = Cluster().start() if server_bin() else None
    if cluster:
        storages["postgresql"] = cluster.url
    try:
        print(f"{'storage':<12}{'jobs':>6}{'trials/min':>12}{'vs 1 job':>10}")
        for name, url in storages.items():
            base = None
            for jobs in (1, 2, 3):
                rate = trials_per_minute(args.trials, args.batches, jobs, url)
                base = base or rate
                print(f"{name:<12}{jobs:>6}{rate:>12.1f}{rate / base:>9.2f}x", flush=True)
    finally:
        if cluster:
            cluster.stop()


if __name__ == "__main__":
    main()
