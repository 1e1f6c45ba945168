"""The ``study:`` section of a study file: how many trials, where to store them, sampler, pruner, workers.

Sampler and pruner names cannot be checked without optuna: here they only need to be a name or a mapping
with a ``name``; ``momsearch.search`` checks the names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..catalog.params import Param
from ..errors import SpecError, quote
from .checks import SCALARS, check_keys, check_value, mapping

STUDY = {
    "n_trials": Param("int", 20, "the study's target number of trials", low=1),
    "timeout": Param("float", None, "stop starting trials after this many seconds (null: no limit)",
                     low=0.0, low_open=True, nullable=True),
    "storage": Param("str", None, "Optuna storage URL (null: SQLite file under the output directory)",
                     nullable=True),
    "seed": Param("int", 0, "study seed; per-trial seeds derive from it", low=0, high=2**32 - 1),
    "max_fail_fraction": Param("float", 0.5, "stop when more than this fraction of trials failed",
                               low=0.0, high=1.0),
    "heartbeat_interval": Param("int", 60, "seconds between heartbeats of a running trial (RDB storages)", low=1),
    "grace_period": Param("int", 120, "seconds without heartbeat before a trial counts as failed", low=1),
    "storage_retry_seconds": Param("float", 60.0, "seconds a storage that went away is retried (with backoff) "
                                   "before the run stops", low=0.0),
    "jobs": Param("int", 1, "local worker processes", low=1),
    "threads": Param("int", 1, "torch threads per worker", low=1),
    "device": Param("str", "auto", "auto | cpu | cuda | cuda:N"),
}
EXTRA = {
    "sampler": "an optuna.samplers class name or {name: ..., **kwargs} (default TPESampler, multivariate, group)",
    "pruner": "an optuna.pruners class name or {name: ..., **kwargs}, or none (default MedianPruner)",
    "prune_on": "multi-objective studies: the metric whose per-epoch value drives pruning (default: the first "
                "objective)",
}
DEFAULT_SAMPLER = {"name": "TPESampler", "multivariate": True, "group": True}
DEFAULT_PRUNER = {"name": "MedianPruner"}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def parse_study_section(data: Any) -> dict[str, Any]:
    """Validate the ``study:`` section and fill every default.

    Args:
        data: the parsed mapping (or None).

    Returns:
        A dict with every key of :data:`STUDY` and ``sampler``, ``pruner`` (``None``: no pruning) and
        ``prune_on`` (``None`` until the objectives are known).
    """
    data = mapping("study", data, "a mapping of study settings")
    check_keys("study", data, list(STUDY) + list(EXTRA))
    out = {key: check_value(f"study.{key}", param, data.get(key, param.default)) for key, param in STUDY.items()}
    check_device_form("study.device", out["device"])
    if out["grace_period"] <= out["heartbeat_interval"]:
        raise SpecError(f"study.grace_period: {out['grace_period']} must be greater than study.heartbeat_interval "
                        f"({out['heartbeat_interval']}): a running trial would be failed between two heartbeats")
    out["sampler"] = _named("study.sampler", data.get("sampler", DEFAULT_SAMPLER), none_allowed=False)
    out["pruner"] = _named("study.pruner", data.get("pruner", DEFAULT_PRUNER), none_allowed=True)
    prune_on = data.get("prune_on")
    if prune_on is not None and not isinstance(prune_on, str):
        raise SpecError(f"study.prune_on: expected a metric name, got {quote(prune_on)}")
    out["prune_on"] = prune_on
    return out


def check_device_form(path: str, device: Any) -> str:
    """``device`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; SpecError naming ``path`` otherwise."""
    if not isinstance(device, str) or not DEVICE.fullmatch(device):
        raise SpecError(f"{path}: {quote(device)} is not auto, cpu, cuda or cuda:N")
    return device


def check_run_flags(**flags: Any) -> None:
    """Check command-line overrides of the ``study:`` section (``n_trials``, ``timeout``, ``jobs``,
    ``threads``, ``device``; None: not given) with the same rules as the file's values.

    Raises:
        SpecError: ``--timeout=0: ...`` naming the flag, the value and the valid range.
    """
    for key, value in flags.items():
        if value is None:
            continue
        if key not in STUDY:
            raise SpecError(f"--{key.replace('_', '-')}: not a study setting")
        path = f"--{key.replace('_', '-')}"
        if key == "device":
            check_device_form(path, value)
        else:
            check_value(path, STUDY[key], value)


def _named(path: str, value: Any, none_allowed: bool) -> dict | None:
    """A sampler or pruner: a class name or ``{name: ..., **kwargs}`` -> ``{"name": ..., **kwargs}``."""
    if none_allowed and (value is None or (isinstance(value, str) and value.lower() == "none")):
        return None
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str) or not value["name"]:
        nothing = ", or none" if none_allowed else ""
        raise SpecError(f"{path}: expected a class name or a mapping with a name{nothing}, got {quote(value)}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise SpecError(f"{path}: keyword names must be strings, got {quote(key)}")
        if not isinstance(item, (*SCALARS, list, Mapping)):
            raise SpecError(f"{path}.{key}: expected plain YAML data, got {quote(item)}")
    return dict(value)
