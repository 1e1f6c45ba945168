"""The search-space language (DESIGN §4) -> the parameter tree, validated against the catalog.

A scalar is fixed, a list is a categorical choice, ``{low, high, log?, step?}`` is a range, and a mapping
whose keys are alternatives (block kinds, rules, values of a choice parameter) is a choice whose values
carry their own sub-spaces. Names are dotted paths (``block.rnn.rule.heavy_ball.mu``), so one name never
has two distributions; a parameter may be set once on any path through the tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .. import catalog
from ..catalog.params import Param, unknown
from ..errors import SpecError, quote
from .checks import SCALARS, check_keys, check_value, join, mapping, rule_conflict
from .tree import Choice, Node, Range

RANGE_KEYS = ("low", "high", "log", "step")

# param -> the values it may take somewhere in a sub-space (None: a range)
Written = dict[str, "set | None"]


def parse_space(data: Any, root: str = "space", fixed_train: Mapping[str, Any] | None = None
                ) -> tuple[tuple[Node, ...], tuple[tuple[str, dict], ...]]:
    """Parse and validate a space (``{block: ..., train: ...}``).

    Args:
        data: the parsed YAML mapping.
        root: prefix of every error path (``space``).
        fixed_train: checked fixed training settings of a study file (its top-level ``train``); they join the
            tree as fixed values and must not also be searched under ``train``.

    Returns:
        The tree's top-level nodes and, per scope (``block.rnn``, ``block.rnn.rule.adam``, ``train``), the
        catalog defaults of the parameters the space leaves unset.

    Raises:
        SpecError: anything malformed, with the key path.
    """
    return _Parser(root).space(data, dict(fixed_train or {}))


class _Parser:
    def __init__(self, root: str):
        self.root = root
        self.defaults: list[tuple[str, dict]] = []

    def path(self, name: str) -> str:
        return join(self.root, name)

    def space(self, data: Any, fixed_train: dict) -> tuple[tuple[Node, ...], tuple[tuple[str, dict], ...]]:
        data = mapping(self.root, data, "a mapping with block (and optional train)")
        check_keys(self.root, data, ("block", "train"))
        if "block" not in data:
            kinds = ", ".join(catalog.BLOCKS)
            raise SpecError(f"{self.root}: missing key 'block' (the block kinds to search: {kinds})")
        nodes = [self.block(data["block"])]
        written: Written = {}
        if "train" in data:
            train_nodes, written = self.scope(data["train"], "train", catalog.TRAIN, None, {}, {})
            nodes += train_nodes
        for key, value in fixed_train.items():
            if key in written:
                raise SpecError(f"train.{key}: also searched under {self.path('train')}; a setting is either "
                                "fixed (train) or searched (space.train), not both")
            nodes.append(Choice(f"train.{key}", (value,), ((),)))
        unset = {k: p.default for k, p in catalog.TRAIN.items() if k not in written and k not in fixed_train}
        self.defaults.append(("train", unset))
        return tuple(nodes), tuple(self.defaults)

    def block(self, value: Any) -> Choice:
        path = self.path("block")
        kinds, contents = self.alternatives(path, value, "block kind", "block kinds")
        for kind in kinds:
            if not isinstance(kind, str) or kind not in catalog.BLOCKS:
                raise SpecError(f"{path}: {unknown('block kind', kind, catalog.BLOCKS)}")
        branches = tuple(self.kind_scope(kind, content) for kind, content in zip(kinds, contents, strict=True))
        return Choice("block", tuple(kinds), branches)

    def kind_scope(self, kind: str, content: Any) -> tuple[Node, ...]:
        entry = catalog.block(kind)
        name = f"block.{kind}"
        slot = len(self.defaults)
        self.defaults.append((name, {}))  # listed before the defaults of its rules
        nodes, written = self.scope(content, name, entry["params"], kind, {}, {}, top=True)
        unset = {k: p.default for k, p in entry["params"].items() if k not in written}
        if "rule" not in written:
            unset["rule"] = entry["default_rule"]
        self.defaults[slot] = (name, unset)
        return nodes

    def alternatives(self, path: str, value: Any, what: str, plural: str) -> tuple[list, list]:
        """Names and sub-space contents of a name, a list of names or a mapping name -> sub-space."""
        if isinstance(value, str):
            return [value], [None]
        if isinstance(value, list):
            if not value:
                raise SpecError(f"{path}: empty list of {plural}")
            for item in value:
                if not isinstance(item, str):
                    raise SpecError(f"{path}: expected {what} names in the list, got {quote(item)}; to give "
                                    f"parameters write a mapping {what} -> parameters")
            if len(set(value)) < len(value):
                raise SpecError(f"{path}: duplicate {what} in {value}")
            return list(value), [None] * len(value)
        if isinstance(value, Mapping):
            if not value:
                raise SpecError(f"{path}: empty mapping of {plural}")
            return list(value), list(value.values())
        raise SpecError(f"{path}: expected a {what}, a list of {plural} or a mapping {what} -> parameters, "
                        f"got {quote(value)}")

    def scope(self, content: Any, name: str, spec: Mapping[str, Param], kind: str | None,
              outer: dict[str, str], context: dict[str, tuple], top: bool = False
              ) -> tuple[tuple[Node, ...], Written]:
        """Parse one scope: parameters of ``spec`` (and ``rule`` when ``kind`` is given).

        ``outer`` maps parameters set by enclosing scopes to their names; ``context`` holds the values the
        block's rule-constraining parameters take around this scope.
        """
        path = self.path(name)
        data = mapping(path, content, "a mapping of parameters")
        valid = list(spec) + (["rule"] if kind else [])
        check_keys(path, data, valid)
        for key in data:
            if key in outer:
                raise SpecError(f"{self.path(join(name, key))}: already set by {self.path(outer[key])}")
        inner = {**outer, **{key: join(name, key) for key in data}}
        context = {**context, **self.constraint_values(name, spec, kind, data)}
        nodes: dict[str, Node] = {}
        written: Written = {}
        branched: list[tuple[str, Written]] = []
        for key, value in data.items():
            if key == "rule":
                continue
            node, deep = self.param(join(name, key), key, spec[key], value, spec, kind, inner, context)
            nodes[key] = node
            for other, other_deep in branched:
                common = sorted(set(deep) & set(other_deep))
                if common:
                    raise SpecError(f"{self.path(join(name, key))}: {common[0]} is also set under "
                                    f"{self.path(join(name, other))}; set it in one place")
            branched.append((key, deep))
            _merge(written, {key: _values(node)})
            _merge(written, deep)
        if "rule" in data:
            nodes["rule"] = self.rule(join(name, "rule"), data["rule"], kind, self.reach(kind, context, written))
            _merge(written, {"rule": set(nodes["rule"].values)})
        elif top and "rule" not in written:
            default = catalog.block(kind)["default_rule"]
            self.check_rules(self.path(join(name, "rule")), kind, [default], self.reach(kind, context, written))
        return tuple(nodes[key] for key in data), written

    def constraint_values(self, name: str, spec, kind: str | None, data: Mapping) -> dict[str, tuple]:
        """Values of the rule-constraining parameters written directly in this scope."""
        if kind is None:
            return {}
        found = {}
        for key in catalog.block(kind)["rule_constraints"]:
            if key in data and spec[key].is_choice:
                raw = data[key]
                items = list(raw) if isinstance(raw, (Mapping, list)) else [raw]
                path = self.path(join(name, key))
                found[key] = tuple(check_value(path, spec[key], item) for item in items)
        return found

    def reach(self, kind: str, context: dict[str, tuple], written: Written) -> dict[str, tuple]:
        """The values each rule-constraining parameter can take together with a rule in this scope."""
        entry = catalog.block(kind)
        reach = {}
        for key in entry["rule_constraints"]:
            default = entry["params"][key].default
            if key in context:
                reach[key] = context[key]
            elif key in written and written[key] is not None:
                reach[key] = tuple(sorted(written[key] | {default}, key=str))
            elif key not in written:
                reach[key] = (default,)
        return reach

    def check_rules(self, path: str, kind: str, rules, reach: dict[str, tuple]) -> None:
        for key, values in reach.items():
            for rule in rules:
                for value in values:
                    why = rule_conflict(kind, rule, key, value)
                    if why is None:
                        continue
                    message = f"{path}: {why}"
                    if len(values) > 1:
                        other = next(v for v in values if v != value)
                        ok = catalog.allowed_rules(kind, {key: value})[0]
                        message += (f"; {key} takes several values here ({', '.join(map(str, values))}): nest "
                                    f"the rules under the {key} mapping instead, e.g. {key}: "
                                    f"{{{value}: {{rule: {ok}}}, {other}: {{rule: [{', '.join(rules)}]}}}}")
                    raise SpecError(message)

    def rule(self, name: str, value: Any, kind: str, reach: dict[str, tuple]) -> Choice:
        path = self.path(name)
        rules = catalog.block(kind)["rules"]
        names, contents = self.alternatives(path, value, "rule", "rules")
        for rule in names:
            if not isinstance(rule, str) or rule not in rules:
                raise SpecError(f"{path}: {unknown(f'rule for block {kind}', rule, rules)}")
        self.check_rules(path, kind, names, reach)
        branches = []
        for rule, content in zip(names, contents, strict=True):
            sub = join(name, rule)
            slot = len(self.defaults)
            self.defaults.append((sub, {}))
            nodes, written = self.scope(content, sub, rules[rule], None, {}, {})
            self.defaults[slot] = (sub, {k: p.default for k, p in rules[rule].items() if k not in written})
            branches.append(nodes)
        return Choice(name, tuple(names), tuple(branches))

    def param(self, name: str, key: str, param: Param, value: Any, spec, kind, outer, context
              ) -> tuple[Node, Written]:
        path = self.path(name)
        if isinstance(value, Mapping):
            if param.is_choice:
                return self.branches(name, key, param, value, spec, kind, outer, context)
            if param.kind in ("int", "float"):
                return parse_range(path, name, param, value), {}
            raise SpecError(f"{path}: a {param.kind} parameter takes a value or a list of values, not a mapping")
        if isinstance(value, list):
            if not value:
                raise SpecError(f"{path}: empty list of choices")
            values = tuple(check_value(f"{path}[{i}]", param, item) for i, item in enumerate(value))
            if len(set(values)) < len(values):
                raise SpecError(f"{path}: duplicate choices in {list(values)}")
            return Choice(name, values, ((),) * len(values)), {}
        if not isinstance(value, SCALARS):
            raise SpecError(f"{path}: expected {param.range_text()}, got {quote(value)}")
        return Choice(name, (check_value(path, param, value),), ((),)), {}

    def branches(self, name, key, param, value, spec, kind, outer, context) -> tuple[Choice, Written]:
        """A choice parameter written as a mapping: each value carries its own sub-space."""
        path = self.path(name)
        if not value:
            raise SpecError(f"{path}: empty mapping of choices")
        values, branches, deep = [], [], {}
        for raw, content in value.items():
            choice = check_value(f"{path}.{raw}", param, raw)
            nodes, written = self.scope(content, join(name, str(choice)), spec, kind, outer,
                                        {**context, key: (choice,)})
            values.append(choice)
            branches.append(nodes)
            _merge(deep, written)
        return Choice(name, tuple(values), tuple(branches)), deep


def parse_range(path: str, name: str, param: Param, data: Mapping) -> Range:
    """``{low, high, log?, step?}`` for an int or float parameter, inside the parameter's valid range.

    Args:
        path: the key path for messages.
        name: the dotted parameter name.
        param: the catalog parameter (its type decides int or float).
        data: the range mapping.

    Returns:
        A :class:`Range`.
    """
    check_keys(path, data, RANGE_KEYS)
    if "low" not in data or "high" not in data:
        raise SpecError(f"{path}: a range needs both low and high")
    low = check_value(f"{path}.low", param, data["low"])
    high = check_value(f"{path}.high", param, data["high"])
    if low >= high:
        raise SpecError(f"{path}: low must be < high (got low={low}, high={high})")
    log = data.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(f"{path}.log: expected true or false, got {quote(log)}")
    if log and low <= 0:
        raise SpecError(f"{path}.log: a log range needs low > 0 (got low={low})")
    step = data.get("step")
    if step is not None:
        if log:
            raise SpecError(f"{path}: step and log cannot be combined")
        step = check_value(f"{path}.step", Param(param.kind, None, low=0, low_open=True), step)
        span = Decimal(str(high)) - Decimal(str(low))
        if span % Decimal(str(step)) != 0:
            raise SpecError(f"{path}.step: step={step} does not divide high - low = {span}")
    return Range(name, low, high, integer=param.kind == "int", log=log, step=step)


def _values(node: Node) -> set | None:
    return set(node.values) if isinstance(node, Choice) else None


def _merge(into: Written, written: Written) -> None:
    for key, values in written.items():
        if key in into:
            into[key] = None if into[key] is None or values is None else into[key] | values
        else:
            into[key] = None if values is None else set(values)
