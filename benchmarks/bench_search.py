"""Framework overhead of a study and the speed-up of local workers.

Runs a study of tiny trials (seq_digits, GRU with 8 units, a few batches each) and prints:
- the one-off start-up of a worker (imports, task data) before its first trial;
- per-trial framework overhead in the steady state: wall time per trial from the first trial's end to the
  last's, minus the mean time inside ``train.fit`` (what remains is sampling, building the model, storage
  writes, the weights artifact), absolute and as a share of the trial;
- trials per minute of whole ``momsearch run --jobs 1`` and ``--jobs 2`` commands on fresh SQLite storages:
  in the steady state (from the moment every worker has finished its first trial to the last trial's end,
  read from the trials' completion times in the storage) and over the whole command (interpreter start-up,
  imports and task data included), with their ratios.

    python benchmarks/bench_search.py [--trials 30] [--batches 6]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from momsearch.search import objective as objective_module
from momsearch.search.storage import default_url
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
    """The benchmark study, written under ``tmp`` and loaded."""
    path = tmp / "bench.yaml"
    path.write_text(STUDY.format(trials=trials, batches=batches))
    return load_study_file(path)


def run_once(trials: int, batches: int, jobs: int) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as tmp:
        sf = study_file(Path(tmp), trials, batches)
        start = time.perf_counter()
        study = run(sf, RunOptions(out=Path(tmp) / "out", jobs=jobs, progress=False))
        return time.perf_counter() - start, study.trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)

    fit_times: list[float] = []
    objective_module.fit = timed_fit(fit_times)
    wall1, trials = run_once(args.trials, args.batches, jobs=1)
    first, last = trials[0].datetime_complete, trials[-1].datetime_complete
    per_trial = (last - first).total_seconds() / (len(trials) - 1)
    fit_mean = statistics.mean(fit_times[1:])
    overhead = per_trial - fit_mean
    print(f"{args.trials} trials, jobs=1: {wall1:.1f} s wall; worker start-up (imports, task data) before the "
          f"first trial's end: {wall1 - per_trial * (len(trials) - 1):.1f} s")
    print(f"  steady state: {per_trial * 1e3:.0f} ms per trial, {fit_mean * 1e3:.0f} ms of it inside train.fit")
    print(f"  framework overhead per trial: {overhead * 1e3:.0f} ms = {100 * overhead / per_trial:.1f}% of the trial")
    (steady1, whole1), (steady2, whole2) = (cli_rates(args.trials, args.batches, jobs) for jobs in (1, 2))
    print("trials per minute of `momsearch run`:")
    print(f"  steady state:  jobs=1 {steady1:.1f}, jobs=2 {steady2:.1f}, ratio {steady2 / steady1:.2f}x")
    print(f"  whole command: jobs=1 {whole1:.1f}, jobs=2 {whole2:.1f}, ratio {whole2 / whole1:.2f}x "
          "(start-up included)")


def cli_rates(trials: int, batches: int, jobs: int) -> tuple[float, float]:
    """Trials per minute of a ``momsearch run --jobs N`` command: steady state and whole command.

    The steady state runs from the N-th trial's end (every worker has finished its first trial, so one-off
    start-up is behind them all) to the last trial's end.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(STUDY.format(trials=trials, batches=batches))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "momsearch", "run", str(path), "--out", str(Path(tmp) / "out"),
                        "--jobs", str(jobs), "--no-progress"], check=True, capture_output=True)
        whole = time.perf_counter() - start
        study = optuna.load_study(study_name="bench", storage=default_url(Path(tmp) / "out"))
        ends = sorted(t.datetime_complete for t in study.trials)
        steady = (ends[-1] - ends[jobs - 1]).total_seconds()
        return 60 * (len(ends) - jobs) / steady, 60 * trials / whole


if __name__ == "__main__":
    main()
