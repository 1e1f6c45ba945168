"""Study files: name, task, objectives, the search space (inline or a file), fixed training, study settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import catalog
from ..catalog.params import unknown
from ..errors import SpecError, quote
from .checks import SCALARS, check_keys, check_value, mapping
from .compare import parse_compare_section
from .parse import parse_space
from .settings import parse_study_section
from .space import SearchSpace
from .yaml_io import read_yaml

KEYS = ("name", "task", "objectives", "space", "train", "study", "compare")
REQUIRED = ("name", "task", "objectives", "space")
NAME = re.compile(r"[A-Za-z0-9_.-]+")
MAX_NAME = 100  # runs/<name>/ must be a valid folder name everywhere (255 bytes), with room for suffixes
MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
DIRECTIONS = ("maximize", "minimize")
# metrics that exist for one kind of task only (accuracy for classification, mse for regression)
TASK_METRICS = {task["metric"] for task in catalog.TASKS.values()}


@dataclass(frozen=True)
class StudyFile:
    """A validated study file.

    Attributes:
        name: the study name.
        task: ``{"name", "params"}`` (built-in, every parameter filled), ``{"module", "params"}`` or ``{"npz"}``.
        objectives: metric -> ``maximize``/``minimize``, in the file's order.
        space: the search space, including the fixed training settings.
        train: the fixed training settings written in the file (the top-level ``train``).
        study: the ``study:`` section with every default filled.
        path: the file, if read from one.
        compare: the ``compare:`` section (``momsearch.spec.compare.CompareSpec``), or None.
    """

    name: str
    task: dict
    objectives: dict[str, str]
    space: SearchSpace
    train: dict[str, Any]
    study: dict[str, Any]
    path: Path | None = None
    compare: Any = None


def is_study_file(data: Any) -> bool:
    """Whether parsed YAML looks like a study file rather than a space file (``block``/``train`` only)."""
    return isinstance(data, Mapping) and any(key in data for key in KEYS if key != "train")


def parse_study_file(data: Any, path: Path | None = None) -> StudyFile:
    """Validate a parsed study file.

    Args:
        data: the parsed YAML mapping.
        path: the file it came from; relative ``space`` and ``npz`` paths are relative to its folder.

    Returns:
        A :class:`StudyFile`.

    Raises:
        SpecError: anything malformed, with the key path.
    """
    data = mapping("study file", data, "a mapping")
    check_keys("", data, KEYS)
    for key in REQUIRED:
        if key not in data:
            raise SpecError(f"{key}: missing (a study file needs {', '.join(REQUIRED)})")
    name = data["name"]
    check_name(name)
    base = path.parent if path is not None else Path.cwd()
    task = _task(data["task"], base)
    objectives = _objectives(data["objectives"], task)
    train = _fixed_train(data.get("train"))
    space = _space(data["space"], path, base, train)
    study = parse_study_section(data.get("study"))
    if study["prune_on"] is None:
        study["prune_on"] = next(iter(objectives))
    else:
        _metric("study.prune_on", study["prune_on"], task)
    compare = None
    if "compare" in data:
        compare = parse_compare_section(data["compare"], space.nodes, objectives)
    return StudyFile(name, task, objectives, space, train, study, path, compare)


def check_name(name: Any) -> str:
    """A study name: 1 to :data:`MAX_NAME` letters, digits, ``_``, ``.`` or ``-``, starting with a letter, digit
    or ``_`` (it names the folder ``runs/<name>/``: no path separators, no ``.``/``..``, no hidden folder)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SpecError(f"name: {quote(name)} must be letters, digits, '_', '.' or '-' (no path separators)")
    if len(name) > MAX_NAME:
        raise SpecError(f"name: {quote(name)} is {len(name)} characters long; at most {MAX_NAME}")
    if name.startswith(".") or name.startswith("-"):
        raise SpecError(f"name: {quote(name)} must start with a letter, a digit or '_' (it names the folder "
                        "runs/<name>/; '.' and '..' are this folder and its parent)")
    return name


def _task(value: Any, base: Path) -> dict:
    if isinstance(value, str):
        value = {"name": value}
    data = mapping("task", value, "a task name or a mapping with name, module or npz")
    given = [key for key in ("name", "module", "npz") if key in data]
    if len(given) != 1:
        raise SpecError("task: give exactly one of name (built-in), module ('pkg.mod:fn') or npz (a file)")
    key = given[0]
    rest = {k: v for k, v in data.items() if k != key}
    if key == "name":
        task = data["name"]
        if not isinstance(task, str) or task not in catalog.TASKS:
            raise SpecError(f"task.name: {unknown('task', task, catalog.TASKS)}")
        spec = catalog.TASKS[task]["params"]
        check_keys("task", rest, spec)
        return {"name": task, "params": {k: check_value(f"task.{k}", p, rest.get(k, p.default))
                                         for k, p in spec.items()}}
    if key == "module":
        module = data["module"]
        if not isinstance(module, str) or not MODULE.fullmatch(module):
            raise SpecError(f"task.module: expected 'package.module:function', got {quote(module)}")
        for k, v in rest.items():
            if not isinstance(k, str) or not isinstance(v, (*SCALARS, list, Mapping)):
                raise SpecError(f"task.{k}: expected plain YAML data, got {quote(v)}")
        return {"module": module, "params": dict(rest)}
    check_keys("task", rest, ())
    file = data["npz"]
    if not isinstance(file, str):
        raise SpecError(f"task.npz: expected a file path, got {quote(file)}")
    resolved = (base / file).resolve()
    if not resolved.is_file():
        raise SpecError(f"task.npz: {resolved}: file not found")
    return {"npz": str(resolved)}


def _metric(path: str, name: Any, task: dict) -> None:
    """Check a metric name exists and fits the task (no ``accuracy`` on a regression task)."""
    if not isinstance(name, str) or name not in catalog.METRICS:
        raise SpecError(f"{path}: {unknown('metric', name, catalog.METRICS)}")
    own = catalog.TASKS[task["name"]]["metric"] if "name" in task else None
    base = name.removeprefix("test_")
    if own is not None and base in TASK_METRICS and base != own:
        raise SpecError(f"{path}: task {task['name']} reports {own}, not {base}")


def _objectives(value: Any, task: dict) -> dict[str, str]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if len(set(map(str, value))) < len(value):
            raise SpecError(f"objectives: duplicate metric in {value}")
        for i, item in enumerate(value):
            _metric(f"objectives[{i}]", item, task)
        value = {item: catalog.METRICS[item][0] for item in value}
    data = mapping("objectives", value, "a mapping metric -> maximize|minimize or a list of metrics")
    if not data:
        raise SpecError("objectives: empty; name at least one metric")
    for metric, direction in data.items():
        _metric(f"objectives.{metric}", metric, task)
        if direction not in DIRECTIONS:
            raise SpecError(f"objectives.{metric}: {unknown('direction', direction, DIRECTIONS)}")
    return dict(data)


def _fixed_train(value: Any) -> dict[str, Any]:
    data = mapping("train", value, "a mapping of fixed training settings")
    check_keys("train", data, catalog.TRAIN)
    for key, item in data.items():
        if isinstance(item, (list, Mapping)):
            raise SpecError(f"train.{key}: fixed settings only here; search it under space.train")
    return {key: check_value(f"train.{key}", catalog.TRAIN[key], item) for key, item in data.items()}


def _space(value: Any, path: Path | None, base: Path, train: dict) -> SearchSpace:
    source = None
    if isinstance(value, str):
        source = (base / value).resolve()
        if path is not None and source == path.resolve():
            raise SpecError(f"space: {quote(value)} refers to the study file itself; point to a space file "
                            "(block:, train:) or write the space inline")
        value = read_yaml(source, "space")
        if is_study_file(value):
            raise SpecError(f"space: {source} is a study file; point to a space file (block:, train:)")
    nodes, defaults = parse_space(value, "space", train)
    return SearchSpace(nodes, defaults, source or path)
