"""Create or resume an Optuna study from a study file and run its trials."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``momsearch run``; unset ones come from the study file's ``study:`` section."""
    parser.add_argument("file", help="study file (YAML)")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<study name>/)")
    parser.add_argument("--storage", help="Optuna storage URL (default: $MOMSEARCH_STORAGE, else the file's "
                        "study.storage, else SQLite <out>/study.db)")
    parser.add_argument("--n-trials", type=int, help="the study's target number of trials")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--jobs", type=int, help="local worker processes on the same storage")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default 1)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (auto: one worker per visible GPU)")
    parser.add_argument("--artifacts", type=Path, help="weights store (default <out>/artifacts; share it "
                        "between hosts that join one study)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run the study and print the best trial or the Pareto front."""
    from ..redact import storage_from_env
    from ..search.lookup import default_out
    from ..search.preflight import check_before_run
    from ..search.results import table
    from ..search.study import RunOptions, run, running_elsewhere
    from ..spec import load_study_file
    from ..spec.settings import check_run_flags

    check_run_flags(n_trials=args.n_trials, timeout=args.timeout, jobs=args.jobs, threads=args.threads,
                    device=args.device)  # the same rules as the file's study: section
    study_file = load_study_file(args.file)
    check_before_run(study_file, args.device or study_file.study["device"], args.device is not None)
    options = RunOptions(out=args.out or default_out(study_file.name), storage=storage_from_env(args.storage),
                         n_trials=args.n_trials, timeout=args.timeout, jobs=args.jobs, threads=args.threads,
                         device=args.device, artifacts=args.artifacts, progress=not args.no_progress)
    study = run(study_file, options)
    counts = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    print(f"study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print(table(study))
    running = running_elsewhere(study)
    if running:
        grace = study_file.study["grace_period"]
        print(f"still RUNNING: trial{'s' if len(running) > 1 else ''} {', '.join(map(str, running))}, left by "
              f"other workers (or by dead ones: a later run marks those FAIL once {grace} s pass without a "
              "heartbeat, study.grace_period)")
    return 0
