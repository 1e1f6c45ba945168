"""The error hierarchy: every error momsearch raises on purpose derives from :class:`MomsearchError`.

The CLI turns any ``MomsearchError`` into one line on stderr and exit code 2. Messages quote values read from
files through :func:`quote`, so a huge value never becomes a huge message.
"""

QUOTE_LIMIT = 100


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters (``...`` and the full length when cut), for messages
    that quote a value from a file: a 4 MB list must not become a 4 MB error line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


class MomsearchError(Exception):
    """Root of every error raised on purpose by momsearch."""


class ConfigError(MomsearchError, ValueError):
    """A bad argument or configuration value; the message names the argument, the value and the valid range."""


class SpecError(ConfigError):
    """A malformed search-space or study file; the message starts with the offending key path."""


class NotAvailableError(MomsearchError):
    """A catalog entry (block kind, cell, rule, task) exists but cannot be built in this installation."""


class NFEBudgetExceeded(MomsearchError):
    """One ODE solve used more function evaluations than the block's ``max_nfe`` budget."""


class TaskError(ConfigError):
    """A task (built-in or user-supplied) returned data of the wrong signature, shape or dtype."""


class StudyError(MomsearchError):
    """A study cannot be created, loaded or read as asked (unknown study, no completed trial, ...)."""


class ExportError(MomsearchError):
    """Exporting a trial failed, including a failed round-trip verification."""
