"""Parameter descriptions: type, default, valid range or choices — plain data shared by every layer.

The DSL validates YAML against these, rule and block constructors validate their arguments with them,
and ``momsearch list`` prints them. Nothing here imports torch or optuna.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, quote

_KINDS = ("int", "float", "bool", "str")


def did_you_mean(name: object, choices) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice to ``name``, or ``""``."""
    if len(str(name)) > 100:  # difflib is quadratic: no suggestion for a huge value
        return ""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(what: str, name: object, choices) -> ConfigError:
    """The error for an unknown name: names it, suggests the closest choice and lists the valid ones."""
    valid = ", ".join(str(c) for c in choices)
    return ConfigError(f"unknown {what} {quote(name)}{did_you_mean(name, choices)}; valid: {valid}")


@dataclass(frozen=True)
class Param:
    """One parameter: its type, documented default and valid values.

    ``low``/``high`` bound numbers (``low_open``/``high_open`` make a bound exclusive); ``choices``
    lists the valid values of a categorical parameter. ``nullable`` accepts ``None``.
    """

    kind: str
    default: Any
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    nullable: bool = False

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"Param kind must be one of {_KINDS}, got {self.kind!r}")

    @property
    def is_choice(self) -> bool:
        """True for a parameter that takes one of a fixed set of values."""
        return self.choices is not None

    def range_text(self) -> str:
        """The valid values as text, e.g. ``[0, 1)`` or ``one of: lstm, gru``."""
        if self.choices is not None:
            return "one of: " + ", ".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.low is None and self.high is None:
            return self.kind
        lo = "-inf" if self.low is None else _num(self.low)
        hi = "inf" if self.high is None else _num(self.high)
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{self.kind} in {left}{lo}, {hi}{right}"

    def describe(self) -> str:
        """One line: valid values, default and documentation."""
        text = f"{self.range_text()}, default {self.default!r}"
        return f"{text} — {self.doc}" if self.doc else text

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (already of the right type) is in the valid range or choices."""
        if value is None:
            return self.nullable
        if self.choices is not None:
            return value in self.choices
        if self.kind in ("int", "float"):
            if isinstance(value, float) and not math.isfinite(value):
                return False
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                return False
            if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
                return False
        return True

    def coerce(self, name: str, value: Any) -> Any:
        """Convert ``value`` to this parameter's type (numeric strings become numbers) or raise ConfigError."""
        if value is None and self.nullable:
            return None
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
        elif self.kind == "int":
            if isinstance(value, str):
                value = _parse_number(value)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif self.kind == "float":
            if isinstance(value, str):
                value = _parse_number(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif isinstance(value, str):
            return value
        raise ConfigError(f"{name}={quote(value)}: expected {self.range_text()}")

    def check(self, name: str, value: Any) -> Any:
        """Coerce and range-check ``value``; return it or raise ConfigError naming ``name`` and the range."""
        value = self.coerce(name, value)
        if not self.contains(value):
            if self.choices is not None:
                raise unknown(name, value, self.choices)
            raise ConfigError(f"{name}={quote(value)}: must be {self.range_text()}")
        return value


def _parse_number(text: str):
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def check_params(where: str, spec: Mapping[str, Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``values`` against ``spec``: unknown keys are errors, missing ones take their defaults.

    Args:
        where: prefix for messages, e.g. ``"rule heavy_ball"``.
        spec: parameter name -> :class:`Param`.
        values: the given values.

    Returns:
        A new dict with every parameter of ``spec``, checked and coerced.
    """
    for key in values:
        if key not in spec:
            raise ConfigError(
                f"{where}: unknown parameter {quote(key)}{did_you_mean(key, spec)}; valid: {', '.join(spec) or 'none'}"
            )
    return {name: p.check(f"{where}: {name}", values.get(name, p.default)) for name, p in spec.items()}
