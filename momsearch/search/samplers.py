"""Samplers and pruners by name: anything in ``optuna.samplers`` / ``optuna.pruners`` with keyword arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from ..catalog.params import unknown
from ..errors import ConfigError


def _classes(module, base) -> dict[str, type]:
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, type) and issubclass(obj, base) and not name.startswith("Base")}


def _name_and_kwargs(spec: str | Mapping[str, Any] | None, what: str) -> tuple[str | None, dict]:
    if spec is None or isinstance(spec, str):
        return spec, {}
    kwargs = dict(spec)
    return kwargs.pop("name", None), kwargs


def make_sampler(spec: str | Mapping[str, Any] | None, seed: int, shared: bool = True) -> optuna.samplers.BaseSampler:
    """Build a sampler; the default suits conditional spaces: ``TPESampler(multivariate=True, group=True)``.

    Args:
        spec: a class name of ``optuna.samplers``, or ``{name: ..., **kwargs}``, or None for the default.
        seed: the study seed, used unless ``kwargs`` set their own ``seed``.
        shared: whether other workers may sample the study at the same time. ``TPESampler`` takes Optuna's
            constant liar (running trials count as bad ones) only then, unless ``kwargs`` set
            ``constant_liar``: a sole worker's samples are the same without it, and with it every trial
            re-reads the trial list from the storage and writes one more attribute.
    """
    name, kwargs = _name_and_kwargs(spec, "sampler")
    if name is None:
        name, kwargs = "TPESampler", {"multivariate": True, "group": True, **kwargs}
    classes = _classes(optuna.samplers, optuna.samplers.BaseSampler)
    if name not in classes:
        raise unknown("study.sampler", name, sorted(classes))
    cls = classes[name]
    if "seed" in _parameters(cls) and "seed" not in kwargs:
        kwargs["seed"] = seed
    if cls is optuna.samplers.TPESampler:
        kwargs.setdefault("constant_liar", shared)
    return _construct("study.sampler", cls, kwargs)


def base_seed(spec: str | Mapping[str, Any] | None, study_seed: int) -> int:
    """The seed the user asked for: the sampler's own ``seed`` keyword if given, else ``study.seed``."""
    seed = _name_and_kwargs(spec, "sampler")[1].get("seed")
    return study_seed if seed is None else int(seed)


def worker_seed(base: int, run: int, index: int) -> int:
    """The sampler seed of worker ``index`` of run ``run`` of a study, from the user's seed ``base``.

    Every worker of every run draws its own stream: ``numpy.random.SeedSequence([base, run, index])``, where
    ``run`` is a number the storage gives each run of the study (or a random 64-bit id where it cannot), so
    two workers, two hosts or two runs never share a seed. The first worker of a study's first run uses
    ``base`` itself: a sole worker on a fresh study samples exactly what ``Sampler(seed=base)`` samples.
    """
    import numpy as np

    if run == 0 and index == 0:
        return base
    return int(np.random.SeedSequence([base, run, index]).generate_state(1)[0])


def seeded(spec: str | Mapping[str, Any] | None, seed: int) -> dict:
    """The sampler spec with its ``seed`` keyword set to ``seed`` (unchanged for a sampler without one)."""
    name, kwargs = _name_and_kwargs(spec, "sampler")
    if name is None:
        name, kwargs = "TPESampler", {"multivariate": True, "group": True, **kwargs}
    cls = _classes(optuna.samplers, optuna.samplers.BaseSampler).get(name)
    if cls is not None and "seed" in _parameters(cls):
        kwargs["seed"] = seed
    return {"name": name, **kwargs}


def make_pruner(spec: str | Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """Build a pruner from a class name of ``optuna.pruners`` or ``{name: ..., **kwargs}``; ``none``: no pruning."""
    name, kwargs = _name_and_kwargs(spec, "pruner")
    if name is None or str(name).lower() in ("none", "nop", "nopruner"):
        return optuna.pruners.NopPruner()
    classes = _classes(optuna.pruners, optuna.pruners.BasePruner)
    if name not in classes:
        raise unknown("study.pruner", name, sorted(classes))
    return _construct("study.pruner", classes[name], kwargs)


def pruner_settings(spec: str | Mapping[str, Any] | None) -> dict:
    """The keyword arguments given to the pruner (the multi-objective rule reads its warm-up settings)."""
    return _name_and_kwargs(spec, "pruner")[1]


def _parameters(cls) -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(cls).parameters)


def _construct(where: str, cls, kwargs: dict):
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} {cls.__name__}: {exc}") from None
    except ImportError as exc:
        raise ConfigError(f"{where} {cls.__name__} needs a package that is not installed: {exc}") from None
