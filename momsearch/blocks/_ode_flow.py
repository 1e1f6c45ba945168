"""The checked flow of :class:`ODEBlock` and :class:`ODERNN`: the core's flow plus argument checks and NFE counting."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchdiffeq import odeint

from ..catalog import ode as ode_catalog
from ..catalog.params import unknown
from ..errors import ConfigError
from ..rules import ode as ode_rules
from . import _ode_core as core
from ._ode_nfe import CountedField, NFECounter


def check(name: str, value: Any) -> Any:
    """Check block argument ``name`` against ``catalog.ode.PARAMS``; ConfigError names it and the range."""
    return ode_catalog.PARAMS[name].check(name, value)


def check_options(solver: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``options`` for torchdiffeq method ``solver`` with one tiny trial solve.

    torchdiffeq only warns about option names a method does not take; a misspelt ``step_size`` would
    silently integrate in one step, so that warning becomes a ConfigError here.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"options={options!r}: must be a dict of torchdiffeq solver options")
    options = dict(options)
    if "step_size" in options:
        options["step_size"] = ode_catalog.PARAMS["step_size"].check("options: step_size", options["step_size"])
    y0 = torch.ones(1, dtype=torch.float64)  # (1,)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)  # (2,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            odeint(lambda _, y: -y, y0, t, rtol=1e-3, atol=1e-3, method=solver, options=options)
        except (TypeError, ValueError, RuntimeError, IndexError) as err:
            raise ConfigError(f"options={options!r}: rejected by torchdiffeq method {solver!r}: {err}") from None
    for warning in caught:
        if "Unexpected arguments" in str(warning.message):
            raise ConfigError(f"options={options!r}: not options of torchdiffeq method {solver!r} ({warning.message})")
    return options


class Flow(core.Flow):
    """The core's flow with its arguments checked against the catalog, counting every function evaluation.

    Args:
        size, rule, hidden_size, depth, activation, solver, options, rtol, atol, adjoint, seminorm, m0,
            field, time_input: as for the core's flow; ``rule`` must be a :mod:`momsearch.rules.ode` rule.
        max_nfe: per-solve budget of :class:`NFECounter` (0: none).

    Raises:
        ConfigError: an argument is not a catalog value (the message names it and the valid range).
    """

    def __init__(self, size: int, rule: ode_rules.ODERule, hidden_size: int, depth: int, activation: str,
                 solver: str, options: Mapping[str, Any] | None, rtol: float, atol: float, adjoint: bool,
                 seminorm: bool, m0: str, max_nfe: int, field: nn.Module | None = None, time_input: bool = False):
        if not isinstance(rule, ode_rules.ODERule):
            valid = ", ".join(f"momsearch.rules.ode.{cls.__name__}" for cls in ode_rules.RULES.values())
            raise ConfigError(f"rule={rule!r}: not a continuous-time rule; valid: {valid}")
        if solver not in ode_catalog.SOLVERS:
            raise unknown("solver", solver, ode_catalog.SOLVERS)
        hidden_size, depth = check("hidden_size", hidden_size), check("depth", depth)
        activation, m0 = check("activation", activation), check("m0", m0)
        options = check_options(solver, options)
        rtol, atol = check("rtol", rtol), check("atol", atol)
        adjoint, seminorm = check("adjoint", adjoint), check("seminorm", seminorm)
        time_input = check("time_input", time_input)
        counter = NFECounter(check("max_nfe", max_nfe))
        super().__init__(size, rule, hidden_size, depth, activation, solver, options, rtol, atol, adjoint,
                         seminorm, m0, field, time_input)
        self.counter = counter

    def field(self, start: torch.Tensor | None, gap: torch.Tensor | None,
              dynamics: nn.Module | None = None) -> nn.Module:
        """The core's time-scaled field, counted by this flow's :class:`NFECounter`."""
        return CountedField(self.dynamics if dynamics is None else dynamics, self.counter, start, gap)
