"""The studies a comparison runs, derived from the compare file alone (so a re-run finds the same ones).

* ``<name>.<arm>``: the arm's tuning study: the space with the arm's choices fixed, ``trials_per_arm`` trials,
  the file's sampler and pruner.
* ``<name>.<arm>.confirm``: the arm's best configuration (selected on validation), re-trained once per
  confirmation seed (one queued trial per seed, no pruning).
* ``<name>.<arm>.control``: the same over the same seeds with the momentum removed at the same steady-state
  gain: mu = 0 and s' = s / (1 - mu).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .. import catalog
from ..spec.space import SearchSpace
from ..spec.tree import Choice, Node

CONFIRM_SEED_OFFSET = 500_000  # confirmation seeds start here, far from the tuning trials' seeds
QUEUED = {"name": "RandomSampler", "seed": 0}  # every run is queued; a sampler never draws


def restrict(nodes: tuple[Node, ...], fixed: dict[str, Any]) -> tuple[Node, ...]:
    """The tree with every choice named in ``fixed`` reduced to that one value (and its sub-space)."""
    out = []
    for node in nodes:
        if isinstance(node, Choice):
            if node.name in fixed:
                value = fixed[node.name]
                node = Choice(node.name, (value,), (restrict(node.branch(value), fixed),))
            else:
                node = Choice(node.name, node.values, tuple(restrict(b, fixed) for b in node.branches))
        out.append(node)
    return tuple(out)


def arm_study_file(study_file, arm):
    """The tuning study of ``arm``: its sub-space plus the shared parameters, ``trials_per_arm`` trials."""
    space = study_file.space
    nodes = restrict(space.nodes, dict(arm.fixed))
    return dataclasses.replace(
        study_file, name=f"{study_file.name}.{arm.name}", space=SearchSpace(nodes, space.defaults, space.source),
        study={**study_file.study, "n_trials": study_file.compare.trials_per_arm}, compare=None)


def seeded_study_file(study_file, name: str, config: dict[str, Any], seeds: list[int]):
    """A study that trains ``config`` once per seed: every parameter fixed, ``train.seed`` one of ``seeds``."""
    nodes = tuple(Choice(key, (value,), ((),)) for key, value in config.items() if key != "train.seed")
    nodes += (Choice("train.seed", tuple(seeds), tuple(() for _ in seeds)),)
    # a failed seed is reported in the verdict (fewer seeds), not a reason to stop the others
    study = {**study_file.study, "n_trials": len(seeds), "sampler": dict(QUEUED), "pruner": None,
             "max_fail_fraction": 1.0}
    return dataclasses.replace(study_file, name=name, space=SearchSpace(nodes, (), study_file.space.source),
                               study=study, compare=None)


def confirm_seeds(used: set[int], count: int, study_seed: int) -> list[int]:
    """``count`` training seeds that no tuning trial used, the same for every arm (the runs pair by seed)."""
    seeds, candidate = [], study_seed * 1_000_003 + CONFIRM_SEED_OFFSET
    while len(seeds) < count:
        candidate %= 2**31
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def rule_of(config: dict[str, Any]) -> tuple[str, str, str]:
    """(block kind, the config key holding the rule, the rule) of a complete configuration."""
    kind = config["block"]
    keys = [k for k in config if k.startswith(f"block.{kind}.") and k.endswith(".rule")
            and isinstance(config[k], str)]
    key = min(keys, key=len) if keys else f"block.{kind}.rule"
    return kind, key, config.get(key, "plain")


def control_config(config: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The momentum-free control of a configuration at the same steady-state gain, or why there is none.

    heavy_ball(mu, s) -> heavy_ball(0, s / (1 - mu)) (likewise any rule with mu and s, e.g. nesterov_momentum,
    whose drive mu·v + s·g also has the steady-state gain s / (1 - mu));
    adam(mu, s, beta, eps) -> rmsprop(s / (1 - mu), beta, eps)
    (where the block has no rmsprop rule, as attention, adam(0, s / (1 - mu), beta, eps), which is the same
    update: rmsprop is adam with mu = 0). A drive g fed forever gives v = s g / (1 - mu) under momentum and
    s' g without: the control keeps the gain and drops the memory of past drives.

    Returns:
        (control config, a short description such as ``heavy_ball mu=0 s=1.5``) or (None, the reason).
    """
    kind, key, rule = rule_of(config)
    mu_key, s_key = f"{key}.{rule}.mu", f"{key}.{rule}.s"
    if rule in ("plain", "rmsprop"):
        return None, f"{rule} has no momentum"
    if rule == "nesterov_restart":
        return None, "nesterov_restart has no mu = 0 control (its momentum is a restarted schedule, not a mu)"
    if mu_key not in config or s_key not in config:
        return None, f"{kind} {rule} has no mu and s (its momentum is learned): no mu = 0 control"
    mu, s = float(config[mu_key]), float(config[s_key])
    if mu == 0:
        return None, "its best configuration has mu = 0 already: no momentum to control"
    scaled = s / (1 - mu)
    control = dict(config)
    if rule == "adam" and "rmsprop" in catalog.block(kind)["rules"]:
        adam = {k: v for k, v in config.items() if k.startswith(f"{key}.adam.")}
        for k in adam:
            del control[k]
        control[key] = "rmsprop"
        params = {"s": scaled, **{p: adam[f"{key}.adam.{p}"] for p in catalog.rule_params(kind, "rmsprop")
                                  if p != "s" and f"{key}.adam.{p}" in adam}}
        control.update({f"{key}.rmsprop.{p}": v for p, v in params.items()})
        return control, f"rmsprop s={_fmt(scaled)}"
    control[mu_key], control[s_key] = 0.0, scaled
    return control, f"{rule} mu=0 s={_fmt(scaled)}"


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)
