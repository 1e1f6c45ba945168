"""The ODE part shared by :class:`ODEBlock` and :class:`ODERNN`: field, rule dynamics, m0, solver, NFE."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from ..catalog import ode as ode_catalog
from ..catalog.params import unknown
from ..errors import ConfigError
from ..rules import ode as ode_rules
from ._ode_nfe import CountedField, NFECounter

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU}


def check(name: str, value: Any) -> Any:
    """Check block argument ``name`` against ``catalog.ode.PARAMS``; ConfigError names it and the range."""
    return ode_catalog.PARAMS[name].check(name, value)


def mlp(size: int, hidden_size: int, depth: int, activation: str) -> nn.Sequential:
    """size -> hidden_size -> ... (``depth`` hidden layers) -> size, with ``activation`` after each hidden layer."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = [nn.Linear(size, hidden_size), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden_size, hidden_size), act()]
    layers.append(nn.Linear(hidden_size, size))
    return nn.Sequential(*layers)


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


class Flow(nn.Module):
    """Integrates the stacked state z = (h, m[, v]) of a rule's dynamics with torchdiffeq, counting NFE.

    Adaptive Runge-Kutta methods are told where the rule's dynamics jump in time (Nesterov restarts,
    ``jump_t``) on unscaled solves, so they step onto the jump instead of grinding through it.

    Args:
        size: n, width of h.
        rule: a continuous-time rule from :mod:`momsearch.rules.ode`.
        hidden_size, depth, activation: the MLP vector field (ignored when ``field`` is given).
        solver: torchdiffeq method; options: its ``options=`` dict.
        rtol, atol: tolerances of adaptive methods (also used by the adjoint solve).
        adjoint: backpropagate with ``odeint_adjoint`` (backward NFE is measured only then).
        seminorm: adjoint error control on the state only (``adjoint_options=dict(norm="seminorm")``).
        m0: ``zero`` or ``learned`` (an MLP of h0 whose output layer starts at zero).
        max_nfe: per-solve budget (0: none).
        field: a vector field f: (B, n) -> (B, n) to use instead of the MLP.
    """

    def __init__(self, size: int, rule: ode_rules.ODERule, hidden_size: int, depth: int, activation: str,
                 solver: str, options: Mapping[str, Any] | None, rtol: float, atol: float, adjoint: bool,
                 seminorm: bool, m0: str, max_nfe: int, field: nn.Module | None = None):
        super().__init__()
        if not isinstance(rule, ode_rules.ODERule):
            valid = ", ".join(f"momsearch.rules.ode.{cls.__name__}" for cls in ode_rules.RULES.values())
            raise ConfigError(f"rule={rule!r}: not a continuous-time rule; valid: {valid}")
        if solver not in ode_catalog.SOLVERS:
            raise unknown("solver", solver, ode_catalog.SOLVERS)
        hidden_size, depth = check("hidden_size", hidden_size), check("depth", depth)
        activation, m0 = check("activation", activation), check("m0", m0)
        self.rule = rule
        self.solver = solver
        self.options = check_options(solver, options)
        self.rtol, self.atol = check("rtol", rtol), check("atol", atol)
        self.adjoint, self.seminorm = check("adjoint", adjoint), check("seminorm", seminorm)
        self.counter = NFECounter(check("max_nfe", max_nfe))
        self.dynamics = rule.dynamics(field if field is not None else mlp(size, hidden_size, depth, activation))
        self.m0_net = None
        if m0 == "learned" and rule.components > 1:
            self.m0_net = mlp(size, hidden_size, 1, activation)
            nn.init.zeros_(self.m0_net[-1].weight)
            nn.init.zeros_(self.m0_net[-1].bias)

    def initial_state(self, h: torch.Tensor) -> torch.Tensor:
        """Stack h with the initial momentum (zero or learned) and v = 0: (B, n) -> (B, components, n)."""
        parts = [h]
        if self.rule.components > 1:
            parts.append(self.m0_net(h) if self.m0_net is not None else torch.zeros_like(h))  # (B, n)
        if self.rule.components > 2:
            parts.append(torch.zeros_like(h))  # (B, n)
        return torch.stack(parts, 1)  # (B, k, n)

    def solve(self, z0: torch.Tensor, t1: float = 1.0, start: torch.Tensor | None = None,
              gap: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate z from time 0 to ``t1`` (or over each row's [start, start + gap]); return z at the end.

        Args:
            z0: (B, k, n) initial state.
            t1: end time of an unscaled solve.
            start: (B, 1) real start times of a normalised solve (see :class:`CountedField`).
            gap: (B, 1) interval lengths of a normalised solve.

        Returns:
            (B, k, n) state at the end of the interval.
        """
        func = CountedField(self.dynamics, self.counter, start, gap)
        t = torch.tensor([0.0, t1 if gap is None else 1.0], dtype=z0.dtype, device=z0.device)  # (2,)
        options = self.options
        jumps = self.rule.discontinuities(t1) if gap is None else ()
        if jumps and self.solver in ode_catalog.ADAPTIVE_RK_SOLVERS and "jump_t" not in options:
            options = {**options, "jump_t": torch.tensor(jumps, dtype=torch.float64, device=z0.device)}
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.solver, options=options)
        if self.adjoint:
            adjoint_options = {**options, "norm": "seminorm"} if self.seminorm else None
            z = odeint_adjoint(func, z0, t, adjoint_params=tuple(self.dynamics.parameters()),
                               adjoint_options=adjoint_options, **kwargs)  # (2, B, k, n)
        else:
            z = odeint(func, z0, t, **kwargs)  # (2, B, k, n)
        return z[-1]  # (B, k, n)
