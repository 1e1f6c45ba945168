"""The one adapter from the parameter tree to Optuna: ``trial.suggest_categorical/int/float``."""

from __future__ import annotations

from typing import Any

from ..spec.tree import Node, Range


def suggest(nodes: tuple[Node, ...], trial) -> dict[str, Any]:
    """Walk the tree with ``trial``: suggest every searched parameter on the active path, record fixed ones.

    Args:
        nodes: the tree's top-level nodes (``SearchSpace.nodes``).
        trial: an ``optuna.Trial`` (any object with Optuna's ``suggest_*`` methods).

    Returns:
        Dotted names -> values of every active node (catalog defaults are not added here).
    """
    config: dict[str, Any] = {}
    for node in nodes:
        _suggest(node, trial, config)
    return config


def _suggest(node: Node, trial, config: dict[str, Any]) -> None:
    if isinstance(node, Range):
        if node.integer:
            value = trial.suggest_int(node.name, node.low, node.high, step=node.step or 1, log=node.log)
        else:
            value = trial.suggest_float(node.name, node.low, node.high, step=node.step, log=node.log)
        config[node.name] = value
        return
    value = node.values[0] if node.fixed else trial.suggest_categorical(node.name, list(node.values))
    config[node.name] = value
    for child in node.branch(value):
        _suggest(child, trial, config)
