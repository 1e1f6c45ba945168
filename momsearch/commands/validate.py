"""Check a space file or a study file and print its parameter tree (never imports torch)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``momsearch validate FILE``."""
    parser.add_argument("file", help="space file (block:, train:) or study file (name:, task:, space:, ...)")


def main(args: argparse.Namespace) -> int:
    """Validate ``args.file``; print the tree, the number of parameters and the space size.

    A study file is checked for everything ``run`` refuses before training; a sampler or pruner other than
    the defaults is built once with optuna (torch is never imported).

    Returns:
        0 when valid (errors raise SpecError, which the CLI prints as one line with exit code 2).
    """
    from ..spec.load import read_mapping
    from ..spec.parse import parse_space
    from ..spec.settings import DEFAULT_PRUNER, DEFAULT_SAMPLER
    from ..spec.space import SearchSpace
    from ..spec.study_file import is_study_file, parse_study_file

    data, path = read_mapping(args.file)
    if is_study_file(data):
        study = parse_study_file(data, path)
        if study.study["sampler"] != DEFAULT_SAMPLER or study.study["pruner"] != DEFAULT_PRUNER:
            from ..search.settings_check import check_study_settings  # imports optuna (not torch)

            check_study_settings(study.study)
        space = study.space
        task = study.task.get("name") or study.task.get("module") or study.task.get("npz")
        objectives = ", ".join(f"{metric} ({direction})" for metric, direction in study.objectives.items())
        print(f"{args.file}: valid study file {study.name!r}")
        print(f"task: {task}; objectives: {objectives}; n_trials: {study.study['n_trials']}")
        if study.compare is not None:
            c = study.compare
            print(f"compare: arms {', '.join(arm.name for arm in c.arms)} (baseline {c.baseline}); "
                  f"{c.trials_per_arm} trials per arm, {c.seeds} seeds, controls {'on' if c.controls else 'off'}")
    else:
        space = SearchSpace(*parse_space(data), source=path)
        print(f"{args.file}: valid space file")
    print(space.describe())
    searched, total = len(space.names(searched=True)), len(space.names())
    size = space.size()
    size_text = f"{size:,} configurations" if size is not None else "continuous (a range has no step)"
    print(f"{total} parameters ({searched} searched, {total - searched} fixed); space size: {size_text}")
    return 0
