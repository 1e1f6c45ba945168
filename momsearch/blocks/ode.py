"""Neural-ODE blocks with continuous-time momentum rules (DESIGN §3.2), solved by torchdiffeq.

:class:`ODEBlock` maps h0 (B, dim) to h(t1) for static inputs (NODE, HBNODE, GHBNODE, Nesterov,
AdamNODE; ANODE through ``augment``). :class:`ODERNN` serves sequences: it jumps with an RNN cell at each
observation and flows with the ODE between observations. Both count function evaluations:
``nfe_forward`` after a forward pass, ``nfe_backward`` during ``backward()`` (adjoint only, else None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..catalog.params import Param
from ..errors import ConfigError
from ..rules import ode as ode_rules
from ._ode_flow import Flow, check

_SIZE = Param("int", 1, "a size", low=1)
_CELLS = {"tanh": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


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


class ODEBlock(_NFE, nn.Module):
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
        field: a vector field module f: (B, n) -> (B, n) replacing the MLP (n = dim + augment).
    """

    def __init__(self, dim: int, t1: float = 1.0, augment: int = 0, rule: ode_rules.ODERule | None = None,
                 hidden_size: int = 20, depth: int = 2, activation: str = "tanh", solver: str = "dopri5",
                 options: Mapping[str, Any] | None = None, rtol: float = 1e-3, atol: float = 1e-3,
                 adjoint: bool = True, seminorm: bool = False, m0: str = "zero", max_nfe: int = 10000,
                 field: nn.Module | None = None):
        super().__init__()
        self.dim = _SIZE.check("dim", dim)
        self.t1, self.augment = check("t1", t1), check("augment", augment)
        self.output_size = self.dim + self.augment
        self.flow = Flow(self.output_size, ode_rules.Plain() if rule is None else rule, hidden_size, depth,
                         activation, solver, options, rtol, atol, adjoint, seminorm, m0, max_nfe, field)

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        """Integrate from h0 to time t1.

        Args:
            h0: (B, dim).

        Returns:
            (B, dim + augment): the h part of the state at t1.
        """
        if h0.dim() != 2 or h0.shape[1] != self.dim:
            raise ConfigError(f"h0: expected shape (B, {self.dim}), got {tuple(h0.shape)}")
        h = nn.functional.pad(h0, (0, self.augment))  # (B, n)
        with self.flow.counter.forward_pass():
            z = self.flow.solve(self.flow.initial_state(h), t1=self.t1)  # (B, k, n)
        return z[:, 0]  # (B, n)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, augment={self.augment}, t1={self.t1}, rule={self.flow.rule}"


class ODERNN(_NFE, nn.Module):
    """ODE-RNN: an RNN cell jumps at each observation, the rule's ODE flows the state in between.

    The first observation only jumps (from h = 0); the momentum state then starts at m0 (zero or
    learned from h) and v = 0. Jumps replace h and keep m and v; with an LSTM cell only h flows and
    the cell state c is carried unchanged. Each gap is one solve for the whole batch over normalised
    time s in [0, 1], with the field scaled by each row's gap dt (rows may have different times); so a
    fixed-step ``step_size`` is in units of one gap. The dynamics see the time since the row's first
    observation (Nesterov's clock). Times are data: they are not differentiated.

    Args:
        input_size: features per step.
        state_size: width of h (and of the output).
        cell: jump cell, ``tanh``, ``lstm`` or ``gru`` (``torch.nn.*Cell``).
        rule, hidden_size, depth, activation, solver, options, rtol, atol, adjoint, seminorm, m0,
            max_nfe, field: as for :class:`ODEBlock`; the budget applies to each solve.
    """

    def __init__(self, input_size: int, state_size: int, cell: str = "gru",
                 rule: ode_rules.ODERule | None = None, hidden_size: int = 20, depth: int = 2,
                 activation: str = "tanh", solver: str = "dopri5", options: Mapping[str, Any] | None = None,
                 rtol: float = 1e-3, atol: float = 1e-3, adjoint: bool = True, seminorm: bool = False,
                 m0: str = "zero", max_nfe: int = 10000, field: nn.Module | None = None):
        super().__init__()
        self.input_size = _SIZE.check("input_size", input_size)
        self.state_size = self.output_size = _SIZE.check("state_size", state_size)
        self.cell_kind = check("cell", cell)
        self.cell = _CELLS[self.cell_kind](self.input_size, self.state_size)
        self.flow = Flow(self.state_size, ode_rules.Plain() if rule is None else rule, hidden_size, depth,
                         activation, solver, options, rtol, atol, adjoint, seminorm, m0, max_nfe, field)

    def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Run over a batch of (possibly irregularly sampled) sequences.

        Args:
            x: (B, T, input_size) observations.
            times: (B, T) or (T,) non-decreasing observation times; None means 0, 1, ..., T-1.

        Returns:
            (B, T, state_size): h right after each observation's jump.
        """
        if x.dim() != 3 or x.shape[1] < 1 or x.shape[2] != self.input_size:
            raise ConfigError(f"x: expected shape (B, T >= 1, {self.input_size}), got {tuple(x.shape)}")
        B, T, _ = x.shape
        times = self._times(times, B, T, x)  # (B, T)
        gaps = times[:, 1:] - times[:, :-1]  # (B, T-1)
        if bool((gaps < 0).any()):
            raise ConfigError("times: must be non-decreasing along each sequence")
        elapsed = times - times[:, :1]  # (B, T) time since the first observation
        h = x.new_zeros(B, self.state_size)  # (B, S)
        c = x.new_zeros(B, self.state_size) if self.cell_kind == "lstm" else None  # (B, S)
        outputs = []
        with self.flow.counter.forward_pass():
            h, c = self._jump(x[:, 0], h, c)
            z = self.flow.initial_state(h)  # (B, k, S)
            outputs.append(h)
            for i in range(1, T):
                z = self.flow.solve(z, start=elapsed[:, i - 1:i], gap=gaps[:, i - 1:i])  # (B, k, S)
                h, c = self._jump(x[:, i], z[:, 0], c)
                z = torch.cat((h.unsqueeze(1), z[:, 1:]), 1)  # (B, k, S)
                outputs.append(h)
        return torch.stack(outputs, 1)  # (B, T, S)

    def _jump(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
        if c is None:
            return self.cell(x, h), None  # (B, S)
        return self.cell(x, (h, c))  # (B, S), (B, S)

    @staticmethod
    def _times(times: torch.Tensor | None, B: int, T: int, x: torch.Tensor) -> torch.Tensor:
        if times is None:
            return torch.arange(T, dtype=x.dtype, device=x.device).expand(B, T)  # (B, T)
        times = torch.as_tensor(times, dtype=x.dtype, device=x.device).detach()
        if times.shape == (T,):
            return times.expand(B, T)  # (B, T)
        if times.shape != (B, T):
            raise ConfigError(f"times: expected shape ({B}, {T}) or ({T},) to match x, got {tuple(times.shape)}")
        return times  # (B, T)

    def extra_repr(self) -> str:
        return f"cell={self.cell_kind}, rule={self.flow.rule}"
