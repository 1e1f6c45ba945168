"""Check a study file's sampler and pruner the way ``run`` builds them, for ``momsearch validate``.

Imports optuna (its sampler and pruner classes), never torch: names are looked up among Optuna's classes,
keyword arguments checked against each class's signature (with a did-you-mean), then the object is built
once, so a value Optuna's constructor refuses (a negative ``n_startup_trials``, say) is caught too.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

from ..catalog.params import did_you_mean
from ..errors import SpecError, quote


def check_named(path: str, spec: str | Mapping[str, Any] | None, kind: str) -> None:
    """Check one ``study.sampler`` (``kind="sampler"``) or ``study.pruner`` spec; SpecError naming the key.

    Args:
        path: the key path for messages (``study.sampler``).
        spec: ``{"name": ..., **kwargs}`` as :func:`momsearch.spec.settings.parse_study_section` returns it,
            or None (no pruning / the default sampler).
        kind: ``sampler`` or ``pruner``.
    """
    import optuna

    from . import samplers

    if spec is None:
        return
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name, kwargs = spec.pop("name", None), spec
    if kind == "pruner" and str(name).lower() in ("none", "nop", "nopruner"):
        return
    module, base = ((optuna.samplers, optuna.samplers.BaseSampler) if kind == "sampler"
                    else (optuna.pruners, optuna.pruners.BasePruner))
    classes = samplers._classes(module, base)
    if name not in classes:
        raise SpecError(f"{path}: unknown {kind} {quote(name)}{did_you_mean(name, classes)}; valid: "
                        f"{', '.join(sorted(classes))}")
    parameters = inspect.signature(classes[name]).parameters
    accepts_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    named = [k for k, p in parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in kwargs:
        if key not in named and not accepts_any:
            raise SpecError(f"{path}.{key}: {name} has no argument {quote(key)}{did_you_mean(key, named)}; "
                            f"valid: {', '.join(named) or 'none'}")
    try:
        with warnings.catch_warnings():  # Optuna's ExperimentalWarning (group=True, ...) is not the user's problem
            warnings.simplefilter("ignore")
            if kind == "sampler":
                samplers.make_sampler({"name": name, **kwargs}, seed=0)
            else:
                samplers.make_pruner({"name": name, **kwargs})
    except Exception as exc:  # noqa: BLE001 - whatever the constructor refuses, run would refuse too
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(first[:300] if first.startswith(path) else f"{path}: {first[:300]}") from None


def check_study_settings(study: Mapping[str, Any]) -> None:
    """Check the ``sampler`` and ``pruner`` of a parsed ``study:`` section (what run would build)."""
    check_named("study.sampler", study.get("sampler"), "sampler")
    check_named("study.pruner", study.get("pruner"), "pruner")
