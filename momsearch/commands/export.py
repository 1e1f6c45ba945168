"""Export the best trial (or a chosen one, or the Pareto front) as a standalone cell.py + weights + spec."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``momsearch export``."""
    parser.add_argument("target", metavar="FILE_OR_STUDY", help="study file, or a study name")
    parser.add_argument("--storage", help="Optuna storage URL (default: $MOMSEARCH_STORAGE, else the study file's, "
                        "else SQLite under the study's --runs directory)")
    parser.add_argument("--runs", type=Path, metavar="DIR",
                        help="the study's output directory, what run/report call --out (default: runs/<study name>/)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, metavar="N", help="export trial number N")
    which.add_argument("--best", action="store_true", help="export the best trial (the default; multi-objective: "
                       "the Pareto trial best on the first objective)")
    which.add_argument("--pareto", type=int, metavar="K", help="export the K best Pareto-optimal trials (single "
                       "objective: the K best trials), one subdirectory trial_<N>/ each")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="destination of cell.py, weights.pt, spec.yaml (must be empty unless --force)")
    parser.add_argument("--force", action="store_true", help="replace --out if it is a previous export (nothing else "
                        "is ever replaced)")
    parser.add_argument("--artifacts", type=Path, metavar="DIR", help="the study's weights store (default: the one "
                        "it recorded, else <runs>/artifacts)")
    parser.add_argument("--format", choices=("py", "pt2"), default="py",
                        help="pt2: also write cell.pt2 with torch.export (rnn and attention blocks)")


def main(args: argparse.Namespace) -> int:
    """Export, verify in an isolated interpreter, and print where the files are."""
    from ..search.exporting import export

    written = export(args.target, trial=args.trial, out=args.out, pareto=args.pareto, storage=args.storage,
                     runs=args.runs, force=args.force, format=args.format, artifacts=args.artifacts)
    for directory in written:
        print(f"exported: {directory}/ (cell.py, weights.pt, spec.yaml"
              + (", cell.pt2" if args.format == "pt2" else "") + "); verified without momsearch")
    return 0
