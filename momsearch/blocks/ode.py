"""Neural-ODE blocks with continuous-time momentum rules, solved by torchdiffeq.

:class:`ODEBlock` maps h0 (B, dim) to h(t1) for static inputs (NODE, HBNODE, GHBNODE, Nesterov,
AdamNODE; ANODE through ``augment``). :class:`ODERNN` serves sequences: it jumps with an RNN cell at each
observation and flows with the ODE between observations. Both count function evaluations:
``nfe_forward`` after a forward pass, ``nfe_backward`` during ``backward()`` (adjoint only, else None).

The blocks themselves live in ``_ode_core`` (pure torch, shared with exported models); the classes here add
the argument checks (constructor arguments against the catalog, the inputs in ``forward``) and the NFE
counter (through their checked :class:`~._ode_flow.Flow`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..catalog.params import Param
from ..errors import ConfigError
from ..rules import ode as ode_rules
from . import _ode_core as core
from ._ode_flow import Flow, check

_SIZE = Param("int", 1, "a size", low=1)


class _NFE:
    """The NFE read-outs shared by both blocks (their ``flow`` holds the counter)."""

    flow: Flow

    @property
    def nfe_forward(self) -> int:
        """Function evaluations of the latest forward pass (all its solves)."""
        return self.flow.counter.forward

    @property
    def nfe_backward(self) -> int | None:
        """Function evaluations of the adjoint solves since the latest forward; None without the adjoint.

        Plain backpropagation replays the solver's graph without calling the field, so its real cost is
        not measured: it is reported as None, never as 0.
        """
        return self.flow.counter.backward if self.flow.adjoint else None


class ODEBlock(_NFE, core.ODEBlock):
    """A neural ODE on static inputs: h(0) = [h0, 0...] (ANODE padding), returns h(t1).

    Args:
        dim: width of h0.
        t1: integration time, > 0.
        augment: extra zero dimensions appended to h0 (ANODE).
        rule: a continuous-time rule (:mod:`momsearch.rules.ode`); None is ``Plain()`` (NODE).
        hidden_size, depth, activation: the MLP vector field f(h) (``depth`` hidden layers).
        solver: any torchdiffeq method; options: its ``options=`` dict (e.g. ``{"step_size": 0.1}``).
        rtol, atol: tolerances, > 0 (the adjoint solve uses the same).
        adjoint: backpropagate with ``odeint_adjoint`` (the only way backward NFE is measured).
        seminorm: with the adjoint, leave parameter adjoints out of error control.
        m0: initial momentum, ``zero`` or ``learned`` (an MLP of h(0) starting at 0); rules without a
            momentum state (plain) have no m0.
        max_nfe: one solve (forward or adjoint backward) using more evaluations raises
            :class:`~momsearch.errors.NFEBudgetExceeded`; 0 means no limit.
        field: a vector field module f: (B, n) -> (B, n) replacing the MLP (n = dim + augment); with an
            attribute ``time_input = True`` it is called as f(h, t), t of shape (B, 1).
        time_input: the MLP field takes the time as one more first-layer input, f(h, t); NesterovNODE
            feeds it tau = 1 + (time since the last restart).
    """

    flow_class = Flow  # the checked flow, counting evaluations

    def __init__(self, dim: int, t1: float = 1.0, augment: int = 0, rule: ode_rules.ODERule | None = None,
                 hidden_size: int = 20, depth: int = 2, activation: str = "tanh", solver: str = "dopri5",
                 options: Mapping[str, Any] | None = None, rtol: float = 1e-3, atol: float = 1e-3,
                 adjoint: bool = True, seminorm: bool = False, m0: str = "zero", max_nfe: int = 10000,
                 field: nn.Module | None = None, time_input: bool = False):
        dim = _SIZE.check("dim", dim)
        t1, augment = check("t1", t1), check("augment", augment)
        super().__init__(dim, t1, augment, rule=ode_rules.Plain() if rule is None else rule,
                         hidden_size=hidden_size, depth=depth, activation=activation, solver=solver,
                         options=options, rtol=rtol, atol=atol, adjoint=adjoint, seminorm=seminorm, m0=m0,
                         max_nfe=max_nfe, field=field, time_input=time_input)

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        """The base class's ``forward`` (same argument and result), checked first and counted.

        Raises:
            ConfigError: ``h0`` is not (B, dim).
        """
        if h0.dim() != 2 or h0.shape[1] != self.dim:
            raise ConfigError(f"h0: expected shape (B, {self.dim}), got {tuple(h0.shape)}")
        with self.flow.counter.forward_pass():
            return super().forward(h0)  # (B, n)


class ODERNN(_NFE, core.ODERNN):
    """ODE-RNN: an RNN cell jumps at each observation, the rule's ODE flows the state in between.

    Jumps, flows and observation times work as the base class describes (one solve per gap for the whole
    batch, over normalised time); this class checks the arguments and inputs and counts evaluations.

    Args:
        input_size: features per step.
        state_size: width of h (and of the output).
        cell: jump cell, ``tanh``, ``lstm`` or ``gru`` (``torch.nn.*Cell``).
        rule, hidden_size, depth, activation, solver, options, rtol, atol, adjoint, seminorm, m0,
            max_nfe, field, time_input: as for :class:`ODEBlock`; the budget applies to each solve (each
            piece between restarts is a solve).
    """

    flow_class = Flow  # the checked flow, counting evaluations

    def __init__(self, input_size: int, state_size: int, cell: str = "gru",
                 rule: ode_rules.ODERule | None = None, hidden_size: int = 20, depth: int = 2,
                 activation: str = "tanh", solver: str = "dopri5", options: Mapping[str, Any] | None = None,
                 rtol: float = 1e-3, atol: float = 1e-3, adjoint: bool = True, seminorm: bool = False,
                 m0: str = "zero", max_nfe: int = 10000, field: nn.Module | None = None,
                 time_input: bool = False):
        input_size = _SIZE.check("input_size", input_size)
        state_size = _SIZE.check("state_size", state_size)
        super().__init__(input_size, state_size, check("cell", cell),
                         rule=ode_rules.Plain() if rule is None else rule, hidden_size=hidden_size, depth=depth,
                         activation=activation, solver=solver, options=options, rtol=rtol, atol=atol,
                         adjoint=adjoint, seminorm=seminorm, m0=m0, max_nfe=max_nfe, field=field,
                         time_input=time_input)

    def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """The base class's ``forward`` (same arguments and result), checked first and counted.

        Raises:
            ConfigError: ``x`` is not (B, T >= 1, input_size), ``times`` is neither (B, T) nor (T,), or
                ``times`` decrease along a sequence.
        """
        if x.dim() != 3 or x.shape[1] < 1 or x.shape[2] != self.input_size:
            raise ConfigError(f"x: expected shape (B, T >= 1, {self.input_size}), got {tuple(x.shape)}")
        if times is not None:
            times = self._check_times(times, x)  # (B, T)
        with self.flow.counter.forward_pass():
            return super().forward(x, times)  # (B, T, S)

    @staticmethod
    def _check_times(times: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``times`` as a detached (B, T) tensor of x's dtype; ConfigError if misshapen or decreasing."""
        B, T, _ = x.shape
        times = torch.as_tensor(times, dtype=x.dtype, device=x.device).detach()
        if times.shape == (T,):
            times = times.expand(B, T)  # (B, T)
        elif times.shape != (B, T):
            raise ConfigError(f"times: expected shape ({B}, {T}) or ({T},) to match x, got {tuple(times.shape)}")
        if bool((times[:, 1:] < times[:, :-1]).any()):
            raise ConfigError("times: must be non-decreasing along each sequence")
        return times  # (B, T)
