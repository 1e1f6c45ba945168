"""Resume is a contract: a study records what its trials were run on, and a run whose file differs is refused.

The record holds the task, the objectives (names, directions, order), the fixed training settings and the
parameter space (every parameter with its choices, range or fixed value, and the catalog defaults of the
parameters left unset). A study file resumes a study only if all of these are the same, with one
exception: a numeric range may be *widened* (lower ``low``, higher ``high``, same type, scale and step),
because every trial already run still lies in the widened range and Optuna's samplers accept a changed
numeric range. Anything else would mix trials that do not compare: another objective (validation and test
values ranked together), other training settings (1- and 2-epoch runs), a narrowed range (old trials outside
it), a changed categorical choice (Optuna refuses: "CategoricalDistribution does not support dynamic value
space"), or a parameter added or removed (the old trials never chose it).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import StudyError
from ..spec import tree


def record(study_file) -> dict:
    """What a study stores about its study file, so resume can check it and report and export work from the
    storage alone."""
    return _plain({"task": study_file.task, "objectives": dict(study_file.objectives),
                   "train": dict(study_file.train), "seed": study_file.study["seed"],
                   "space": space_record(study_file.space)})


def space_record(space) -> list[list]:
    """The parameter space as ``[name, description]`` pairs, parents before their sub-spaces.

    A description is ``{"choices": [...]}``, ``{"value": v}`` (a fixed setting or a catalog default: either
    way what the trials trained with), or ``{"range": [low, high], "int": bool, "log": bool, "step": s}``.
    """
    pairs = []
    for node in tree.walk(space.nodes):
        if isinstance(node, tree.Range):
            pairs.append([node.name, {"range": [node.low, node.high], "int": node.integer, "log": node.log,
                                      "step": node.step}])
        elif node.fixed:
            pairs.append([node.name, {"value": node.values[0]}])
        else:
            pairs.append([node.name, {"choices": list(node.values)}])
    named = {name for name, _ in pairs}
    for scope, values in space.defaults:
        for key, value in values.items():
            if f"{scope}.{key}" not in named:
                pairs.append([f"{scope}.{key}", {"value": value}])
    return _plain(pairs)


def check(recorded: dict, study_file) -> dict | None:
    """Compare the study's record with a study file that wants to resume it.

    Args:
        recorded: the study's ``momsearch`` user attribute.
        study_file: the validated study file of this run.

    Returns:
        None if the file matches; the record to store instead if the only differences are widened ranges
        (or the record predates a field this version records).

    Raises:
        StudyError: one line naming the first difference and the way out.
    """
    mine = record(study_file)
    name = study_file.name
    for key in ("task", "objectives"):
        if key in recorded and list(recorded[key].items()) != list(mine[key].items()):  # order: value order
            refuse(name, *_first_difference(key, recorded[key], mine[key]))
    if "space" not in recorded:  # a study from before the space was recorded: the fixed settings only
        if recorded.get("train") != mine["train"]:
            refuse(name, *_first_difference("train", recorded.get("train") or {}, mine["train"]))
        return {**recorded, **{k: v for k, v in mine.items() if k not in recorded}}
    theirs, ours = dict(recorded["space"]), dict(mine["space"])
    widened = False
    for param, spec in mine["space"]:
        old = theirs.get(param)
        if old is None:
            refuse(name, param, "not in the study", _text(spec), added=True)
        if old != spec:
            if not _widens(old, spec):
                refuse(name, param, _text(old), _text(spec))
            widened = True
    for param, spec in recorded["space"]:
        if param not in ours:
            refuse(name, param, _text(spec), "not in this file")
    if recorded.get("train") != mine["train"]:  # every fixed setting is in the space too: only its form differs
        widened = True
    return {**recorded, "space": mine["space"], "train": mine["train"]} if widened else None


def _first_difference(path: str, theirs: Any, ours: Any) -> tuple[str, Any, Any]:
    """The first place two records differ: ``("task.permuted", False, True)``. Mappings with the same keys in
    the same order are compared key by key (a task's ``params`` are named as the study file writes them)."""
    if isinstance(theirs, dict) and isinstance(ours, dict) and list(theirs) == list(ours):
        for key in ours:
            if theirs[key] != ours[key]:
                inner = path if key == "params" else f"{path}.{key}"
                return _first_difference(inner, theirs[key], ours[key])
    return path, theirs, ours


def _widens(old: dict, new: dict) -> bool:
    if "range" not in old or "range" not in new:
        return False
    same_kind = all(old[k] == new[k] for k in ("int", "log", "step"))
    return same_kind and new["range"][0] <= old["range"][0] and new["range"][1] >= old["range"][1]


def refuse(name: str, what: str, theirs: Any, ours: Any, added: bool = False) -> None:
    """Raise the one-line StudyError for a file that differs from the study's record in ``what``."""
    if added:
        detail = f"{what}: {ours} in this file, not in the study"
    else:
        detail = f"{what}: {_text(theirs)} in the study, {_text(ours)} in this file"
    raise StudyError(f"study {name!r} was run with another study file ({detail}); its trials would not compare "
                     "with new ones: give this file a new `name`, or run it with --out/--storage elsewhere")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"value"}:
        return tree.fmt_value(value["value"])
    if isinstance(value, dict) and set(value) == {"choices"}:
        return "one of " + ", ".join(tree.fmt_value(v) for v in value["choices"])
    if isinstance(value, dict) and "range" in value:
        kind = "int" if value["int"] else "float"
        extra = " (log)" if value["log"] else f" step {value['step']}" if value["step"] is not None else ""
        return f"{kind} in [{tree.fmt_value(value['range'][0])}, {tree.fmt_value(value['range'][1])}]{extra}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return tree.fmt_value(value)


def _plain(value: Any) -> Any:
    """As the storage gives it back (JSON): tuples become lists."""
    return json.loads(json.dumps(value, default=str))
