"""The catalog: every block kind, cell, rule, task and training setting as plain data (no torch, no optuna).

``build`` turns these names into classes; the DSL validates YAML against them; ``momsearch list`` prints them.
"""

from . import attention, ode, rnn
from .params import Param, check_params, did_you_mean, unknown
from .tasks import TASKS, USER_TASKS
from .train import METRICS, TRAIN

BLOCKS = {"rnn": rnn.BLOCK, "ode": ode.BLOCK, "attention": attention.BLOCK}


def block(kind: str) -> dict:
    """The catalog entry of block ``kind``; ConfigError listing the kinds if unknown."""
    if kind not in BLOCKS:
        raise unknown("block kind", kind, BLOCKS)
    return BLOCKS[kind]


def rule_params(kind: str, rule: str) -> dict[str, Param]:
    """The parameters of ``rule`` under block ``kind``; ConfigError listing the rules if unknown."""
    rules = block(kind)["rules"]
    if rule not in rules:
        raise unknown(f"rule for block {kind}", rule, rules)
    return rules[rule]


def allowed_rules(kind: str, params: dict) -> tuple[str, ...]:
    """The rules block ``kind`` accepts with the given block parameter values (e.g. softmax: plain only)."""
    entry = block(kind)
    allowed = tuple(entry["rules"])
    for name, by_value in entry["rule_constraints"].items():
        value = params.get(name, entry["params"][name].default)
        if value in by_value:
            allowed = tuple(r for r in allowed if r in by_value[value])
    return allowed


__all__ = [
    "BLOCKS", "TASKS", "USER_TASKS", "TRAIN", "METRICS", "Param",
    "block", "rule_params", "allowed_rules", "check_params", "did_you_mean", "unknown",
]
