"""Dotted-name configurations -> the block, its rule and the training settings, every default filled.

A configuration is what ``SearchSpace.suggest`` returns, or a hand-written partial one: ``{"block": "rnn"}``
is enough. A name below a choice (``block.rnn.cell.lstm.hidden_size``) counts only when that choice takes
that value (``block.rnn.cell`` is ``lstm``); a parameter may be set by one name only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import catalog
from ..catalog.params import Param, unknown
from ..errors import SpecError, quote
from .checks import check_value, rule_conflict


@dataclass
class _Found:
    """The names a configuration sets, grouped by what they set (parameter -> (name, value))."""

    kind: str
    block: dict[str, tuple[str, Any]] = field(default_factory=dict)
    rule_name: str | None = None
    rule: dict[str, tuple[str, Any]] = field(default_factory=dict)
    train: dict[str, tuple[str, Any]] = field(default_factory=dict)


def resolve(config: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve a configuration: the block kind, all its parameters, the rule with all its parameters, training.

    Args:
        config: dotted names -> values (``SearchSpace.suggest``'s dict, or a partial hand-written one).

    Returns:
        ``{"block": {"kind", "params", "rule": {"name", "params"}}, "train": {...}}`` with every catalog
        parameter present (defaults filled), values checked and coerced.

    Raises:
        SpecError: an unknown or inactive name, a parameter set twice, a bad value, or a rule the block
            does not allow with these parameters.
    """
    found = _collect(config)
    entry = catalog.block(found.kind)
    params = _checked(entry["params"], found.block)
    rule_path = found.rule_name or f"block.{found.kind}.rule"
    rule = config[found.rule_name] if found.rule_name else entry["default_rule"]
    if not isinstance(rule, str) or rule not in entry["rules"]:
        raise SpecError(f"{rule_path}: {unknown(f'rule for block {found.kind}', rule, entry['rules'])}")
    for key in entry["rule_constraints"]:
        why = rule_conflict(found.kind, rule, key, params[key])
        if why:
            raise SpecError(f"{rule_path}: {why}")
    return {
        "block": {"kind": found.kind, "params": params,
                  "rule": {"name": rule, "params": _checked(entry["rules"][rule], found.rule)}},
        "train": _checked(catalog.TRAIN, found.train),
    }


def complete(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` plus the catalog default of every active parameter it leaves unset, under its plain name.

    Args:
        config: dotted names -> values, e.g. what the tree suggested.

    Returns:
        A new dict: block parameters as ``block.<kind>.<param>``, the rule as ``block.<kind>.rule`` (if no
        name sets it), rule parameters under the name that chose the rule, training as ``train.<setting>``.
    """
    found = _collect(config)
    entry = catalog.block(found.kind)
    out = dict(config)
    for key, param in entry["params"].items():
        if key not in found.block:
            out[f"block.{found.kind}.{key}"] = param.default
    rule_name = found.rule_name or f"block.{found.kind}.rule"
    rule = out.setdefault(rule_name, entry["default_rule"])
    for key, param in catalog.rule_params(found.kind, rule).items():
        if key not in found.rule:
            out[f"{rule_name}.{rule}.{key}"] = param.default
    for key, param in catalog.TRAIN.items():
        if key not in found.train:
            out[f"train.{key}"] = param.default
    return out


def _collect(config: Mapping[str, Any]) -> _Found:
    if not isinstance(config, Mapping):
        raise SpecError(f"config: expected a mapping of dotted names to values, got {type(config).__name__}")
    if "block" not in config:
        raise SpecError(f"config: missing 'block' (the block kind: one of {', '.join(catalog.BLOCKS)})")
    kind = config["block"]
    if not isinstance(kind, str) or kind not in catalog.BLOCKS:
        raise SpecError(f"block: {unknown('block kind', kind, catalog.BLOCKS)}")
    found = _Found(kind)
    for name in config:
        if name == "block":
            continue
        if not isinstance(name, str):
            raise SpecError(f"config: names must be strings, got {quote(name)}")
        parts = name.split(".")
        if parts[0] == "train" and len(parts) > 1:
            _walk(config, name, parts, 1, catalog.TRAIN, None, found.train, found)
        elif parts[0] == "block" and len(parts) > 2:
            if parts[1] != kind:
                if parts[1] not in catalog.BLOCKS:
                    raise SpecError(f"{name}: {unknown('block kind', parts[1], catalog.BLOCKS)}")
                raise SpecError(f"{name}: inactive, block is {quote(kind)}")
            _walk(config, name, parts, 2, catalog.block(kind)["params"], kind, found.block, found)
        else:
            raise SpecError(f"{name}: unknown name; names are block, block.<kind>.<parameter>..., "
                            "train.<setting>")
    return found


def _walk(config: Mapping, name: str, parts: list[str], i: int, spec: Mapping[str, Param], kind: str | None,
          into: dict, found: _Found) -> None:
    """Follow ``parts[i:]`` through parameters and the choice values that open their sub-spaces."""
    while True:
        key = parts[i]
        valid = list(spec) + (["rule"] if kind else [])
        if key not in valid:
            raise SpecError(f"{name}: {unknown('parameter', key, valid)}")
        if i == len(parts) - 1:
            break
        head, branch = ".".join(parts[: i + 1]), parts[i + 1]
        if key != "rule" and not spec[key].is_choice:
            raise SpecError(f"{name}: {key} is not a choice parameter, so it has no sub-spaces")
        if head not in config:
            raise SpecError(f"{name}: needs {head} (its value selects this sub-space)")
        if str(config[head]) != branch:
            raise SpecError(f"{name}: inactive, {head} is {quote(config[head])}")
        if key == "rule":
            rules = catalog.block(kind)["rules"]
            if branch not in rules:
                raise SpecError(f"{name}: {unknown(f'rule for block {kind}', branch, rules)}")
            spec, kind, into = rules[branch], None, found.rule
        i += 2
        if i >= len(parts):
            raise SpecError(f"{name}: incomplete name; expected a parameter after {quote(branch)}")
    if key == "rule":
        if found.rule_name is not None:
            raise SpecError(f"{name}: the rule is already set by {found.rule_name}")
        found.rule_name = name
    elif key in into:
        raise SpecError(f"{name}: {key} is already set by {into[key][0]}")
    else:
        into[key] = (name, config[name])


def _checked(spec: Mapping[str, Param], given: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """Every parameter of ``spec``: the given ones checked (errors name their dotted name), others default."""
    return {key: check_value(given[key][0], param, given[key][1]) if key in given else param.default
            for key, param in spec.items()}
