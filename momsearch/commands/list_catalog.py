"""List blocks, cells, rules, tasks, training settings and metrics with their parameters (no torch import)."""

from __future__ import annotations

import argparse

SECTIONS = ("blocks", "tasks", "train", "metrics", "study")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``momsearch list [SECTION]``."""
    parser.add_argument("section", nargs="?", choices=SECTIONS, help="print only this section")


def _params(params: dict, indent: str) -> list[str]:
    if not params:
        return [f"{indent}(no parameters)"]
    return [f"{indent}{name}: {param.describe()}" for name, param in params.items()]


def lines(section: str | None = None) -> list[str]:
    """The catalog as text lines (every section, or only ``section``)."""
    from .. import catalog
    from ..spec.settings import EXTRA, STUDY

    out = []
    if section in (None, "blocks"):
        out.append("blocks (space.block.<kind>):")
        for kind, entry in catalog.BLOCKS.items():
            out.append(f"  {kind}: {entry['doc']}")
            out += _params(entry["params"], "    ")
            for name, by_value in entry["rule_constraints"].items():
                for value, rules in by_value.items():
                    out.append(f"    ({name}: {value} allows only: {', '.join(rules)})")
            out.append(f"    rules (rule:, default {entry['default_rule']}):")
            for rule, params in entry["rules"].items():
                out.append(f"      {rule}:")
                out += _params(params, "        ")
    if section in (None, "tasks"):
        out.append("tasks (task:):")
        for name, task in catalog.TASKS.items():
            out.append(f"  {name}: {task['doc']} [metric {task['metric']}, input {task['input']}]")
            out += _params(task["params"], "    ")
        for name, doc in catalog.USER_TASKS.items():
            out.append(f"  {name}: {doc}")
    if section in (None, "train"):
        out.append("training settings (train: fixed, space.train: searched):")
        out += _params(catalog.TRAIN, "  ")
    if section in (None, "metrics"):
        out.append("metrics (objectives:):")
        out += [f"  {name}: {direction} — {doc}" for name, (direction, doc) in catalog.METRICS.items()]
    if section in (None, "study"):
        out.append("study settings (study:):")
        out += _params(STUDY, "  ")
        out += [f"  {name}: {doc}" for name, doc in EXTRA.items()]
    return out


def main(args: argparse.Namespace) -> int:
    """Print the catalog."""
    print("\n".join(lines(args.section)))
    return 0
