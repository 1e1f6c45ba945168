"""Tasks: data splits, loss and metric. Built-in tasks generate their data; users bring a function or an .npz.

``load(spec)`` takes the normalised task spec of a study file::

    load({"name": "seq_digits", "params": {"permuted": True, "seed": 0}})
    load({"module": "pkg.mod:fn", "params": {...}})      # see momsearch.tasks.user
    load({"npz": "path/to/data.npz"})

Nothing is downloaded: every built-in task is generated (``seq_digits`` reads scikit-learn's bundled digits).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from .. import catalog
from ..errors import ConfigError
from .arrays import from_arrays
from .base import IGNORE, Task
from .user import from_module, from_npz


def _generator(name: str) -> Callable[..., dict]:
    """The function that generates built-in task ``name``: ``catalog.TASKS[name]["make"]`` in this package."""
    module, function = catalog.TASKS[name]["make"].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


# built-in task -> its generating function, all read from the one registry, catalog.TASKS
BUILTIN: dict[str, Callable[..., dict]] = {name: _generator(name) for name in catalog.TASKS}
SOURCES = ("name", "module", "npz")


def load(spec: Mapping[str, Any]) -> Task:
    """Load the task a spec names.

    Args:
        spec: exactly one of ``name`` (a built-in task), ``module`` (``"pkg.mod:fn"``) or ``npz`` (a path),
            with ``params`` (a dict; a built-in task's missing params take the catalog defaults). The flat
            form ``{"name": "copy", "delay": 20}`` is accepted too.

    Returns:
        The :class:`Task`.

    Raises:
        ConfigError: an unknown task or parameter, or a parameter out of range.
        TaskError: a user task with the wrong signature, shape or dtype.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"task={spec!r}: expected a mapping with one of {', '.join(SOURCES)}")
    sources = [key for key in SOURCES if key in spec]
    if len(sources) != 1:
        raise ConfigError(f"task={dict(spec)!r}: give exactly one of {', '.join(SOURCES)}")
    source = sources[0]
    params = _params(spec, source)
    if source == "module":
        return from_module(spec["module"], params)
    if source == "npz":
        if params:
            raise ConfigError(f"task npz: unknown parameter(s) {', '.join(params)}; an .npz task takes none")
        return from_npz(spec["npz"])
    return load_builtin(spec["name"], params)


def load_builtin(name: str, params: Mapping[str, Any] | None = None) -> Task:
    """Generate the built-in task ``name`` with ``params`` checked against ``catalog.TASKS[name]``.

    Returns:
        The :class:`Task`, with the catalog's metric, input and target.
    """
    if name not in catalog.TASKS:
        raise catalog.unknown("task", name, catalog.TASKS)
    entry = catalog.TASKS[name]
    params = catalog.check_params(f"task {name}", entry["params"], params or {})
    data = BUILTIN[name](**params)
    meta = {key: entry[key] for key in ("metric", "input", "target")}
    return from_arrays(name, {**data, **meta}, params)


def _params(spec: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat = {key: value for key, value in spec.items() if key not in (source, "params")}
    nested = spec.get("params") or {}
    if not isinstance(nested, Mapping):
        raise ConfigError(f"task params={nested!r}: expected a mapping")
    if flat and nested:
        raise ConfigError(f"task: give parameters under 'params' or inline, not both (inline: {', '.join(flat)})")
    return dict(nested or flat)


__all__ = ["Task", "IGNORE", "BUILTIN", "load", "load_builtin", "from_arrays", "from_module", "from_npz"]
