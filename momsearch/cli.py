"""The ``momsearch`` command: one module per subcommand in ``momsearch.commands``.

Each subcommand module defines ``add_arguments(parser)`` and ``main(args) -> int`` and keeps its heavy
imports (torch, optuna) inside ``main``, so ``momsearch validate`` never imports torch.
Any :class:`~momsearch.errors.MomsearchError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from .errors import MomsearchError

COMMANDS = {
    "validate": "momsearch.commands.validate",
    "list": "momsearch.commands.list_catalog",
    "run": "momsearch.commands.run",
    "report": "momsearch.commands.report",
    "export": "momsearch.commands.export",
    "storage-proxy": "momsearch.commands.storage_proxy",
    "compare": "momsearch.commands.compare",
}


def _parser(names) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momsearch", description="Architecture search over momentum cells.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in names:
        module = import_module(COMMANDS[name])
        doc = (module.__doc__ or "").strip().splitlines()[0]
        module.add_arguments(sub.add_parser(name, help=doc, description=doc))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 2 bad input or a momsearch error)."""
    argv = sys.argv[1:] if argv is None else argv
    wanted = [a for a in argv[:1] if a in COMMANDS]
    # Import only the subcommand asked for (help lists them all).
    args = _parser(wanted or COMMANDS).parse_args(argv)
    try:
        return import_module(COMMANDS[args.command]).main(args) or 0
    except MomsearchError as exc:
        print(f"momsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"momsearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `momsearch list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
