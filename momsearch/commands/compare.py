"""Compare the arms of a categorical choice fairly: equal tuning budgets, fresh seeds, controls, a verdict."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``momsearch compare``; unset ones come from the study file's ``study:`` section."""
    parser.add_argument("file", help="study file (YAML) with a compare: section")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<study name>/); the verdict "
                        "goes to <out>/compare/")
    parser.add_argument("--storage", help="Optuna storage URL (default: SQLite <out>/study.db)")
    parser.add_argument("--jobs", type=int, help="local worker processes per study")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default 1)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (auto: one worker per visible GPU)")
    parser.add_argument("--artifacts", type=Path, help="weights store (default <out>/artifacts)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    """Run (or continue) the three phases and print the verdict table last."""
    from ..errors import ConfigError
    from ..spec import load_study_file

    for flag in ("jobs", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag}={value}: must be >= 1")
    study_file = load_study_file(args.file)
    if study_file.compare is None:
        raise ConfigError(f"{args.file}: no compare: section (momsearch run runs a plain study)")

    from ..search.compare import run_compare
    from ..search.compare_report import write_verdict
    from ..search.lookup import default_out
    from ..search.study import RunOptions

    out = args.out or default_out(study_file.name)
    options = RunOptions(out=out, storage=args.storage, jobs=args.jobs, threads=args.threads, device=args.device,
                         artifacts=args.artifacts, progress=not args.no_progress)
    results, seeds = run_compare(study_file, options)
    table = write_verdict(Path(out) / "compare", study_file, results, seeds)
    print(f"verdict: {Path(out) / 'compare' / 'verdict.md'}")
    print(table)
    return 0
