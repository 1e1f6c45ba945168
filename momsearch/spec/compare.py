"""The ``compare:`` section of a study file: which categorical choice makes the arms, and how to compare them.

An *arm* is one value of a categorical choice of the space (by default the update rule; with several block
kinds, each block/rule pair). It fixes that choice, and the choices on the path to it (``block: attention``,
``kind: linear`` above ``block.attention.kind.linear.rule``), and leaves the rest of the space to be tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..catalog.params import Param, did_you_mean
from ..errors import SpecError
from .checks import check_keys, check_value, mapping
from .tree import Choice, Node, fmt_value

COMPARE = {
    "by": Param("str", None, "the categorical whose values are the arms (default: the update rule; with "
                "several block kinds, each block/rule pair)", nullable=True),
    "trials_per_arm": Param("int", 8, "tuning trials per arm (every arm gets the same budget)", low=1),
    "seeds": Param("int", 5, "fresh training seeds per arm for the confirmation runs", low=2),
    "controls": Param("bool", True, "run a mu = 0, s / (1 - mu) control for every arm with momentum"),
    "baseline": Param("str", "plain", "the arm every other arm is compared with"),
}
TEST_METRIC = {"accuracy": "test_accuracy", "mse": "test_mse", "loss": "test_loss"}


@dataclass(frozen=True)
class Arm:
    """One arm: its name and the choices it fixes (parameter name -> value), outermost first."""

    name: str
    fixed: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class CompareSpec:
    """A validated ``compare:`` section.

    Attributes:
        by: the categorical parameter the arms come from, or None for block/rule pairs.
        arms: the arms, in the space's order.
        baseline: the name of the baseline arm.
        trials_per_arm, seeds, controls: as written (defaults filled).
        metric: the first objective; ``test_metric`` its test value, the number the verdict compares.
    """

    by: str | None
    arms: tuple[Arm, ...]
    baseline: str
    trials_per_arm: int
    seeds: int
    controls: bool
    metric: str
    test_metric: str


def parse_compare_section(data: Any, nodes: tuple[Node, ...], objectives: dict[str, str]) -> CompareSpec:
    """Validate ``compare:`` against the space's tree and the objectives.

    Raises:
        SpecError: an unknown key, ``by`` naming no categorical, a baseline that is not an arm, fewer than 2
            seeds, or a first objective without a test value.
    """
    data = mapping("compare", data, "a mapping of comparison settings")
    check_keys("compare", data, COMPARE)
    if "seeds" in data and isinstance(data["seeds"], int) and not isinstance(data["seeds"], bool) \
            and data["seeds"] < 2:
        raise SpecError(f"compare.seeds: {data['seeds']} is too few; a paired interval needs at least 2 seeds")
    out = {key: check_value(f"compare.{key}", param, data.get(key, param.default))
           for key, param in COMPARE.items()}
    metric = next(iter(objectives))
    if metric not in TEST_METRIC:
        raise SpecError(f"compare: the first objective {metric!r} has no test value; compare needs "
                        f"{', '.join(TEST_METRIC)} first")
    arms = _arms(out["by"], nodes)
    names = [arm.name for arm in arms]
    baseline = out["baseline"]
    if "baseline" not in data and baseline not in names:  # block/rule pairs: the first plain one
        baseline = next((n for n in names if n.split("/")[-1] == "plain"), baseline)
    if baseline not in names:
        raise SpecError(f"compare.baseline: {baseline!r} is not an arm{did_you_mean(baseline, names)}; "
                        f"arms: {', '.join(names)}")
    return CompareSpec(out["by"], tuple(arms), baseline, out["trials_per_arm"], out["seeds"], out["controls"],
                       metric, TEST_METRIC[metric])


def choices(nodes: tuple[Node, ...], path: tuple = ()):
    """Every categorical with at least two values, with the choices on the path to it: (node, path)."""
    for node in nodes:
        if not isinstance(node, Choice):
            continue
        if not node.fixed:
            yield node, path
        for value, branch in zip(node.values, node.branches, strict=True):
            yield from choices(branch, (*path, (node.name, value)))


def _arms(by: str | None, nodes: tuple[Node, ...]) -> list[Arm]:
    found = list(choices(nodes))
    if by is not None:
        match = [(node, path) for node, path in found if node.name == by]
        if not match:
            names = [node.name for node, _ in found]
            raise SpecError(f"compare.by: {by!r} names no categorical of the space{did_you_mean(by, names)}; "
                            f"categoricals: {', '.join(names) or 'none'}")
        node, path = match[0]
        return [Arm(fmt_value(v), (*path, (node.name, v))) for v in node.values]
    return _rule_arms(nodes)


def _rule_arms(nodes: tuple[Node, ...]) -> list[Arm]:
    """The default arms: the rule of the one block kind, or every block/rule pair across kinds."""
    block = next((n for n in nodes if isinstance(n, Choice) and n.name == "block"), None)
    if block is None:
        raise SpecError("compare.by: the space has no block; name the categorical to compare")
    arms = []
    for kind, branch in zip(block.values, block.branches, strict=True):
        rules = [(node, path) for node, path in _rule_choices(branch) if not node.fixed or len(block.values) > 1]
        prefix = (("block", kind),)
        if not rules:  # the kind's rule is not in the space: the catalog default, plain
            arms.append(Arm(f"{kind}/plain", prefix))
            continue
        node, path = rules[0]
        for value in node.values:
            name = fmt_value(value) if block.fixed else f"{kind}/{fmt_value(value)}"
            arms.append(Arm(name, (*prefix, *path, (node.name, value))))
    if len(arms) < 2:
        raise SpecError("compare.by: the space searches no update rule (one arm only); add rules under "
                        "rule: or name another categorical in compare.by")
    return arms


def _rule_choices(nodes: tuple[Node, ...], path: tuple = ()):
    """The ``...rule`` choices (fixed ones too) of a block's sub-space, with the choices on the path."""
    for node in nodes:
        if not isinstance(node, Choice):
            continue
        if node.name.endswith(".rule"):
            yield node, path
            continue
        for value, branch in zip(node.values, node.branches, strict=True):
            if not node.fixed:
                yield from _rule_choices(branch, (*path, (node.name, value)))
            else:
                yield from _rule_choices(branch, path)

