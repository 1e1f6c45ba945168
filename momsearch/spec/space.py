"""SearchSpace: a validated parameter tree that suggests complete configurations through an Optuna trial."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tree
from .resolve import complete
from .tree import Node, Range


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (build it with :func:`momsearch.spec.load_space`).

    Attributes:
        nodes: the top-level nodes of the parameter tree (``block``, then ``train.*``).
        defaults: per scope (``block.rnn``, ``block.rnn.rule.adam``, ``train``), the catalog defaults of the
            parameters the space leaves unset.
        source: the file it was read from, if any.
    """

    nodes: tuple[Node, ...]
    defaults: tuple[tuple[str, dict], ...] = ()
    source: Path | None = None

    def suggest(self, trial) -> dict[str, Any]:
        """Sample one configuration with ``trial.suggest_categorical/int/float``.

        Args:
            trial: an ``optuna.Trial`` (or anything with the same ``suggest_*`` methods).

        Returns:
            Dotted names -> values: the suggested, fixed and default values of every active parameter, so
            the dict alone rebuilds the model (``momsearch.build(config, ...)``, ``resolve(config)``).
        """
        from ..search.space import suggest

        return complete(suggest(self.nodes, trial))

    def size(self) -> int | None:
        """Number of distinct configurations, or None if any range is continuous."""
        return tree.size(self.nodes)

    def names(self, searched: bool = False) -> list[str]:
        """Every parameter name in the tree (``searched``: only those a trial suggests, not fixed ones)."""
        return [node.name for node in tree.walk(self.nodes)
                if not searched or isinstance(node, Range) or not node.fixed]

    def describe(self) -> str:
        """The parameter tree as indented text, followed by the defaults of the parameters left unset."""
        lines = tree.describe(self.nodes)
        shown = [(scope, values) for scope, values in self.defaults if values]
        if shown:
            lines.append("defaults (catalog values of the parameters the space does not set):")
            for scope, values in shown:
                text = ", ".join(f"{key}={tree.fmt_value(value)}" for key, value in values.items())
                lines.append(f"  {scope}: {text}")
        return "\n".join(lines)

