"""Value checks shared by the parser and ``resolve``: every message starts with the key path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import catalog
from ..catalog.params import Param, did_you_mean, unknown
from ..errors import ConfigError, SpecError, quote

SCALARS = (str, int, float, bool, type(None))


def check_value(path: str, param: Param, value: Any) -> Any:
    """Coerce ``value`` to ``param``'s type (numeric strings become numbers) and check its range.

    Args:
        path: the key path, e.g. ``space.block.rnn.rule.heavy_ball.mu``.
        param: the catalog parameter.
        value: the value as read from YAML or given by hand.

    Returns:
        The coerced value.

    Raises:
        SpecError: wrong type, out of range, or not one of the choices (with a did-you-mean).
    """
    try:
        coerced = param.coerce(path, value)
    except ConfigError:
        raise SpecError(f"{path}: expected {param.range_text()}, got {quote(value)}") from None
    if not param.contains(coerced):
        if param.choices is not None:
            raise SpecError(f"{path}: {unknown('value', coerced, param.choices)}")
        raise SpecError(f"{path}: {quote(coerced)} is outside the valid range {param.range_text()}")
    return coerced


def check_keys(path: str, data: Mapping, valid) -> None:
    """Raise SpecError for the first key of ``data`` not in ``valid`` (did-you-mean and the valid keys)."""
    for key in data:
        if not isinstance(key, str):
            raise SpecError(f"{path}: keys must be strings, got {quote(key)}")
        if key not in valid:
            key = key if len(key) <= 100 else quote(key)
            raise SpecError(f"{join(path, key)}: unknown key{did_you_mean(key, valid)}; valid: {', '.join(valid)}")


def mapping(path: str, value: Any, what: str) -> Mapping:
    """``value`` as a mapping (``None`` is an empty one); SpecError naming ``what`` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}: expected {what}, got {type(value).__name__} {quote(value)}")
    return value


def rule_conflict(kind: str, rule: str, name: str, value: Any) -> str | None:
    """Why ``rule`` is not allowed in block ``kind`` when parameter ``name`` is ``value``, or None."""
    allowed = catalog.allowed_rules(kind, {name: value})
    if rule in allowed:
        return None
    return f"rule {quote(rule)} is not allowed with {name}={quote(value)} (allowed: {', '.join(allowed)})"


def join(path: str, key: str) -> str:
    """``path.key`` (or ``key`` at the top level)."""
    return f"{path}.{key}" if path else key
