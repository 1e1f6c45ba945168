"""Write trials.csv, plots and summary.md for a study (from its study file or its name)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``momsearch report``."""
    parser.add_argument("target", metavar="FILE_OR_STUDY", help="study file, or a study name")
    parser.add_argument("--storage", help="Optuna storage URL (default: $MOMSEARCH_STORAGE, else the study file's, "
                        "else SQLite under the output directory)")
    parser.add_argument("--out", type=Path, help="the study's output directory (default: runs/<study name>/)")
    parser.add_argument("--to", type=Path, help="where to write the report (default: <out>/report/)")


def main(args: argparse.Namespace) -> int:
    """Write the report and print where it is."""
    from ..search.lookup import open_study
    from ..search.records import Records, store_for
    from ..search.report import write_report

    study, out_dir = open_study(args.target, args.storage, args.out)
    summary = write_report(study, args.to or out_dir / "report", Records(store_for(study, out_dir)))
    print(f"report written: {summary.parent}/ (summary.md, by_rule.png, cost_vs_*.png, curves_by_rule.png, "
          "trials.csv, plots)")
    return 0
