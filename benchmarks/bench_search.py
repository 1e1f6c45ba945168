"""Framework overhead of a study and the speed-up of local workers.

Runs a study of tiny trials (seq_digits, GRU with 8 units, a few batches each) and prints:
- the one-off start-up of a worker (imports, task data) before its first trial;
- per-trial framework overhead in the steady state: wall time per trial from the first trial's end to the
  last's, minus the mean time inside ``train.fit`` (what remains is sampling, building the model, storage
  writes, the weights artifact), absolute and as a share of the trial;
- the part of it that is Optuna's own machinery: the same study (storage with heartbeats, sampler, space)
  run by ``study.optimize`` with an objective that only suggests the configuration;
- trials per minute of whole ``momsearch run --jobs 1`` and ``--jobs 2`` commands on fresh SQLite storages:
  in the steady state (from the moment every worker has finished its first trial to the last trial's end,
  read from the trials' completion times in the storage) and over the whole command (interpreter start-up,
  imports and task data included), with their ratios. On a shared 2-core virtual machine the speed of a core
  drifts by tens of percent from one minute to the next, so each ratio brackets the jobs=2 command between two
  jobs=1 commands (against their mean), ``--repeats`` times, and the median is reported;
- the ceiling for that ratio: the benchmark's ``train.fit`` alone (no Optuna, no storage) in two concurrent
  processes vs one, i.e. how far the machine's two cores scale on this work.

    python benchmarks/bench_search.py [--trials 30] [--batches 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from momsearch.builder import build
from momsearch.search import objective as objective_module
from momsearch.search.samplers import make_sampler
from momsearch.search.storage import default_url
from momsearch.search.study import RunOptions, run, storage_for
from momsearch.spec import load_study_file, resolve
from momsearch.tasks import load as load_task
from momsearch.train import fit

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


def optuna_alone(trials: int, batches: int) -> float:
    """Seconds per steady-state trial of Optuna's machinery alone on the benchmark study: same storage
    settings, sampler and space, an objective that suggests the configuration and returns a constant."""
    with tempfile.TemporaryDirectory() as tmp:
        sf = study_file(Path(tmp), trials, batches)
        options = RunOptions(out=Path(tmp) / "out").resolved(sf)
        options.out.mkdir()
        storage = storage_for(sf, options)  # as `momsearch run` opens it: SQLite, the file's heartbeats
        study = optuna.create_study(storage=storage, direction="maximize",
                                    sampler=make_sampler(sf.study.get("sampler"), sf.study["seed"], shared=False))

        def suggest_only(trial: optuna.Trial) -> float:
            sf.space.suggest(trial)
            return 0.5

        study.optimize(suggest_only, n_trials=trials)
        ends = [t.datetime_complete for t in study.trials]
        return (ends[-1] - ends[0]).total_seconds() / (trials - 1)


def train_once(config: dict, task, seed: int) -> None:
    """Build and train the benchmark's model once."""
    model = build(config, task.input_size, task.output_size, input=task.input, target=task.target)
    fit(model, task, resolve(config)["train"], device="cpu", seed=seed, progress=False)


def fit_rate(config: dict, task, fits: int, barrier, rates) -> None:
    """Fits per second of the benchmark's model trained ``fits`` times in this process (after ``barrier``)."""
    torch.set_num_threads(1)
    barrier.wait()
    start = time.perf_counter()
    for seed in range(fits):
        train_once(config, task, seed)
    rates.put(fits / (time.perf_counter() - start))


def fit_scaling(fits: int, batches: int) -> float:
    """Fits per second of ``fits`` trainings in two concurrent processes over one (forked after a first fit
    in this process, so imports are done; one process before and after the two, against their mean)."""
    with tempfile.TemporaryDirectory() as tmp:
        sf = study_file(Path(tmp), fits, batches)
    config = sf.space.suggest(optuna.trial.FixedTrial({"block.rnn.rule": "plain"}))
    task = load_task(sf.task)
    train_once(config, task, 0)  # torch.optim imports its compiler stack on first use
    ctx = multiprocessing.get_context("fork")
    totals = []
    for processes in (1, 2, 1):
        barrier, rates = ctx.Barrier(processes), ctx.Queue()
        procs = [ctx.Process(target=fit_rate, args=(config, task, fits, barrier, rates)) for _ in range(processes)]
        for proc in procs:
            proc.start()
        totals.append(sum(rates.get() for _ in procs))
        for proc in procs:
            proc.join()
    return totals[1] / statistics.mean(totals[0::2])


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
    parser.add_argument("--repeats", type=int, default=3, help="jobs=1, jobs=2, jobs=1 command triples")
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
    floor = optuna_alone(args.trials, args.batches)
    print(f"  of which Optuna's machinery alone (ask, sample, tell, heartbeat, same storage and sampler): "
          f"{floor * 1e3:.0f} ms; momsearch's part: {(overhead - floor) * 1e3:.0f} ms")
    print("trials per minute of `momsearch run` (jobs=1 / jobs=2, ratio), steady state and whole command; "
          "ceiling: train.fit alone in 2 processes / 1:")
    steady, whole, ceiling = [], [], []
    for repeat in range(args.repeats):
        (steady1, whole1), (steady2, whole2), (steady1b, whole1b) = (
            cli_rates(args.trials, args.batches, jobs) for jobs in (1, 2, 1))
        steady1, whole1 = (steady1 + steady1b) / 2, (whole1 + whole1b) / 2
        steady.append(steady2 / steady1)
        whole.append(whole2 / whole1)
        ceiling.append(fit_scaling(args.trials, args.batches))
        print(f"  run {repeat + 1}: steady {steady1:.0f} / {steady2:.0f} = {steady[-1]:.2f}x, "
              f"whole {whole1:.0f} / {whole2:.0f} = {whole[-1]:.2f}x, ceiling {ceiling[-1]:.2f}x")
    print(f"  median ratio: steady state {statistics.median(steady):.2f}x, whole command "
          f"{statistics.median(whole):.2f}x (start-up included), ceiling {statistics.median(ceiling):.2f}x")


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
