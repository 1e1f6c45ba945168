"""Framework overhead of a study and the speed-up of local workers.

Runs a study of tiny trials (seq_digits, GRU with 8 units, a few batches each) and prints:
- per-trial framework overhead: mean trial wall time minus mean time inside ``train.fit`` (sampling, build,
  storage writes, artifact upload), absolute and as a share of the trial;
- trials per minute with ``--jobs 1`` and ``--jobs 2`` on fresh SQLite storages, and their ratio.

    python benchmarks/bench_search.py [--trials 30] [--batches 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from momsearch.search import objective as objective_module
from momsearch.search.study import RunOptions, run
from momsearch.spec import load_study_file

STUDY = """
name: bench
task: seq_digits
objectives: {{accuracy: maximize}}
space:
  block:
    rnn:
      cell: gru
      hidden_size: 8
      rule:
        plain: {{}}
        heavy_ball: {{mu: {{low: 0.0, high: 0.9}}, s: {{low: 0.2, high: 1.0}}}}
train: {{epochs: 1, batch_size: 64, max_batches: {batches}}}
study: {{n_trials: {trials}, pruner: none}}
"""


def timed_fit(times: list[float]):
    real_fit = objective_module.fit

    def fit(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real_fit(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    return fit


def study_file(tmp: Path, trials: int, batches: int):
    path = tmp / "bench.yaml"
    path.write_text(STUDY.format(trials=trials, batches=batches))
    return load_study_file(path)


def run_once(trials: int, batches: int, jobs: int) -> tuple[float, object]:
    with tempfile.TemporaryDirectory() as tmp:
        sf = study_file(Path(tmp), trials, batches)
        start = time.perf_counter()
        study = run(sf, RunOptions(out=Path(tmp) / "out", jobs=jobs, progress=False))
        wall = time.perf_counter() - start
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials]
        return wall, durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)

    fit_times: list[float] = []
    objective_module.fit = timed_fit(fit_times)
    wall1, durations = run_once(args.trials, args.batches, jobs=1)
    trial_mean, fit_mean = statistics.mean(durations), statistics.mean(fit_times)
    per_trial_wall = wall1 / args.trials
    overhead = per_trial_wall - fit_mean
    print(f"{args.trials} trials, jobs=1: {wall1:.1f} s wall, {per_trial_wall * 1e3:.0f} ms per trial")
    print(f"  inside train.fit: {fit_mean * 1e3:.0f} ms; trial (Optuna start->complete): {trial_mean * 1e3:.0f} ms")
    print(f"  framework overhead per trial (wall per trial - fit): {overhead * 1e3:.0f} ms "
          f"= {100 * overhead / per_trial_wall:.1f}% of the trial")
    wall2, _ = run_once(args.trials, args.batches, jobs=2)
    rate1, rate2 = 60 * args.trials / wall1, 60 * args.trials / wall2
    print(f"trials per minute: jobs=1 {rate1:.1f}, jobs=2 {rate2:.1f}, ratio {rate2 / rate1:.2f}x")


if __name__ == "__main__":
    main()
