"""The ``momsearch`` command: one module per subcommand in ``momsearch.commands``.

Each subcommand module defines ``add_arguments(parser)`` and ``main(args) -> int`` and keeps its heavy
imports (torch, optuna) inside ``main``, so ``momsearch validate`` never imports torch.
Any :class:`~momsearch.errors.MomsearchError` becomes one line on stderr and exit code 2, and so does every
other error that reaches the command line (a bad flag, an unreadable path, input too deep or too large to
read): one line, no traceback, exit 2. Storage passwords are scrubbed from every line printed
(:mod:`momsearch.redact`).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from .errors import MomsearchError
from .redact import ENV_STORAGE, scrub

MAX_LINE = 1000
DEBUG_ENV = "MOMSEARCH_DEBUG"  # set to 1 to see the traceback of an unexpected error

COMMANDS = {
    "validate": "momsearch.commands.validate",
    "list": "momsearch.commands.list_catalog",
    "run": "momsearch.commands.run",
    "report": "momsearch.commands.report",
    "export": "momsearch.commands.export",
    "storage-proxy": "momsearch.commands.storage_proxy",
    "compare": "momsearch.commands.compare",
}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``momsearch run: error: argument --jobs: ...``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {scrub(message, os.environ.get(ENV_STORAGE))}\n")


def _parser(names) -> argparse.ArgumentParser:
    parser = _Parser(prog="momsearch", description="Architecture search over momentum cells.")
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
    try:
        args = _parser(wanted or COMMANDS).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, one line printed by _Parser.error)
        return exc.code if isinstance(exc.code, int) else 2
    urls = (getattr(args, "storage", None), os.environ.get(ENV_STORAGE))

    def fail(message: str) -> int:
        line = " ".join(scrub(str(message), *urls).split()) or "failed"
        if len(line) > MAX_LINE:  # a backstop: messages quote values to ~100 characters already
            line = line[:MAX_LINE] + f"... ({len(line):,} characters)"
        print(f"momsearch {args.command}: error: {line}", file=sys.stderr)
        return 2

    try:
        return import_module(COMMANDS[args.command]).main(args) or 0
    except MomsearchError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print(f"momsearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `momsearch list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except RecursionError:
        return fail("input nested too deeply to process (RecursionError)")
    except MemoryError:
        return fail("out of memory while processing the input (MemoryError); is a file or value far too large?")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - the last resort: one line instead of a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        if _interrupted(exc):  # e.g. a database call that failed because Ctrl-C/SIGTERM cut its commit short
            print(f"momsearch {args.command}: interrupted", file=sys.stderr)
            return 130
        first = (str(exc).strip().splitlines() or [""])[0]
        return fail(f"unexpected {type(exc).__name__}: {first[:300]} (set {DEBUG_ENV}=1 for the traceback)")

def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` happened while handling, or because of, a KeyboardInterrupt (SIGINT/SIGTERM)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
