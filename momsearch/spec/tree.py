"""The parameter tree: choices whose values may carry sub-spaces, and numeric ranges.

Every node has a dotted ``name`` (``block.rnn.rule.heavy_ball.mu``), the Optuna parameter name.
A choice with one value is a fixed setting (never suggested); its sub-space is still active.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Choice:
    """A parameter taking one of ``values``; ``branches[i]`` is the sub-space active with ``values[i]``."""

    name: str
    values: tuple
    branches: tuple[tuple[Node, ...], ...]

    @property
    def fixed(self) -> bool:
        """True for a single value: recorded in the configuration, never suggested."""
        return len(self.values) == 1

    def branch(self, value: Any) -> tuple[Node, ...]:
        """The sub-space active when this parameter takes ``value``."""
        return self.branches[self.values.index(value)]


@dataclass(frozen=True)
class Range:
    """A numeric range ``[low, high]``; ``integer`` for int parameters, ``step`` for a grid, ``log`` scale."""

    name: str
    low: float
    high: float
    integer: bool
    log: bool = False
    step: float | None = None

    def count(self) -> int | None:
        """Number of distinct values, or None for a continuous range."""
        if self.integer:
            return (self.high - self.low) // (self.step or 1) + 1
        if self.step is None:
            return None
        return int((Decimal(str(self.high)) - Decimal(str(self.low))) / Decimal(str(self.step))) + 1

    def text(self) -> str:
        """The range as text, e.g. ``float in [0.05, 2] (log)``."""
        kind = "int" if self.integer else "float"
        extra = " (log)" if self.log else f" step {fmt_value(self.step)}" if self.step is not None else ""
        return f"{kind} in [{fmt_value(self.low)}, {fmt_value(self.high)}]{extra}"


Node = Choice | Range


def walk(nodes: tuple[Node, ...]):
    """Every node of the tree, parents before their sub-spaces."""
    for node in nodes:
        yield node
        if isinstance(node, Choice):
            for branch in node.branches:
                yield from walk(branch)


def size(nodes: tuple[Node, ...]) -> int | None:
    """Number of distinct configurations of a (sub-)space, or None if a range is continuous."""
    total = 1
    for node in nodes:
        if isinstance(node, Range):
            count = node.count()
        else:
            counts = [size(branch) for branch in node.branches]
            count = None if None in counts else sum(counts)
        if count is None:
            return None
        total *= count
    return total


def describe(nodes: tuple[Node, ...], indent: int = 0) -> list[str]:
    """The tree as indented lines: ``name = value``, ``name: one of a, b`` or ``name: float in [lo, hi]``."""
    pad = "  " * indent
    lines = []
    for node in nodes:
        if isinstance(node, Range):
            lines.append(f"{pad}{node.name}: {node.text()}")
            continue
        if node.fixed:
            lines.append(f"{pad}{node.name} = {fmt_value(node.values[0])}")
            lines += describe(node.branches[0], indent + 1)
            continue
        lines.append(f"{pad}{node.name}: one of {', '.join(fmt_value(v) for v in node.values)}")
        for value, branch in zip(node.values, node.branches, strict=True):
            if branch:
                lines.append(f"{pad}  {fmt_value(value)}:")
                lines += describe(branch, indent + 2)
    return lines


def fmt_value(value: Any) -> str:
    """A value as YAML would write it (``true``, ``null``, ``0.5``, ``lstm``)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)
