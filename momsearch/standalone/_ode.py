"""The neural-ODE blocks of an exported model: the library's dynamics and solver calls without the checks.

The state z = (h, m[, v]) of the rule's dynamics (B, k, n) is integrated with torchdiffeq (``odeint``, or
``odeint_adjoint`` for training with the adjoint method); the readout uses h. Function evaluations are not
counted here (the library's blocks count them for the search).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from ..blocks._ode_flow import mlp
from ..rules.ode import (
    AdamDynamics,
    GeneralizedHeavyBallDynamics,
    HeavyBallDynamics,
    NesterovDynamics,
    PlainDynamics,
)

# rule -> (dynamics class, stacked state parts k)
DYNAMICS = {
    "plain": (PlainDynamics, 1),
    "heavy_ball": (HeavyBallDynamics, 2),
    "generalized_heavy_ball": (GeneralizedHeavyBallDynamics, 2),
    "nesterov_restart": (NesterovDynamics, 2),
    "adam": (AdamDynamics, 3),
}
ADAPTIVE_RK_SOLVERS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
JUMP_CELLS = {"tanh": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


def restart_times(restart_every: float, t1: float) -> tuple[float, ...]:
    """The Nesterov clock's restart times R, 2R, ... inside (0, t1) (R = 0: none)."""
    R = restart_every
    return tuple(k * R for k in range(1, math.ceil(t1 / R)) if k * R < t1) if R > 0 else ()


class TimeScaled(nn.Module):
    """The field of a normalised solve: dz/ds = gap · F(start + s·gap, z) for s in [0, 1], per row.

    Args:
        dynamics: ``forward(t, z) -> dz/dt``.
        start: (B, 1) real time at s = 0.
        gap: (B, 1) length of each row's interval.
    """

    def __init__(self, dynamics: nn.Module, start: torch.Tensor, gap: torch.Tensor):
        super().__init__()
        self.dynamics, self.start, self.gap = dynamics, start, gap

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        real_t = self.start + t * self.gap  # (B, 1)
        return self.dynamics(real_t, z) * self.gap.unsqueeze(-1)  # (B, k, n)


class Flow(nn.Module):
    """Integrates the stacked state of a rule's dynamics around an MLP vector field.

    Args:
        size: n, width of h.
        rule: ``plain``, ``heavy_ball``, ``generalized_heavy_ball``, ``nesterov_restart`` or ``adam``.
        rule_params: the rule's hyperparameters (initial values of its learnable coefficients).
        hidden_size, depth, activation: the MLP vector field.
        solver, options, rtol, atol: torchdiffeq method, its options and tolerances.
        adjoint: backpropagate with ``odeint_adjoint``; seminorm: its error control on the state only.
        m0: initial momentum, ``zero`` or ``learned`` (an MLP of h0).
    """

    def __init__(self, size: int, rule: str, rule_params: dict, hidden_size: int, depth: int, activation: str,
                 solver: str, options: dict, rtol: float, atol: float, adjoint: bool, seminorm: bool, m0: str):
        super().__init__()
        dynamics, self.components = DYNAMICS[rule]
        self.restart_every = rule_params.get("restart_every", 0.0) if rule == "nesterov_restart" else 0.0
        self.solver, self.options, self.rtol, self.atol = solver, dict(options), rtol, atol
        self.adjoint, self.seminorm = adjoint, seminorm
        self.dynamics = dynamics(mlp(size, hidden_size, depth, activation), **rule_params)
        self.m0_net = None
        if m0 == "learned" and self.components > 1:
            self.m0_net = mlp(size, hidden_size, 1, activation)
            nn.init.zeros_(self.m0_net[-1].weight)
            nn.init.zeros_(self.m0_net[-1].bias)

    def initial_state(self, h: torch.Tensor) -> torch.Tensor:
        """Stack h with the initial momentum (zero or learned) and v = 0: (B, n) -> (B, k, n)."""
        parts = [h]
        if self.components > 1:
            parts.append(self.m0_net(h) if self.m0_net is not None else torch.zeros_like(h))  # (B, n)
        if self.components > 2:
            parts.append(torch.zeros_like(h))  # (B, n)
        return torch.stack(parts, 1)  # (B, k, n)

    def solve(self, z0: torch.Tensor, t1: float = 1.0, start: torch.Tensor | None = None,
              gap: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate z (B, k, n) from 0 to ``t1``, or over each row's [start, start + gap]; the end state."""
        func = self.dynamics if gap is None else TimeScaled(self.dynamics, start, gap)
        t = torch.tensor([0.0, t1 if gap is None else 1.0], dtype=z0.dtype, device=z0.device)  # (2,)
        options = self.options
        jumps = restart_times(self.restart_every, t1) if gap is None else ()
        if jumps and self.solver in ADAPTIVE_RK_SOLVERS and "jump_t" not in options:
            options = {**options, "jump_t": torch.tensor(jumps, dtype=torch.float64, device=z0.device)}
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.solver, options=options)
        if self.adjoint and torch.is_grad_enabled():
            adjoint_options = {**options, "norm": "seminorm"} if self.seminorm else None
            z = odeint_adjoint(func, z0, t, adjoint_params=tuple(self.dynamics.parameters()),
                               adjoint_options=adjoint_options, **kwargs)  # (2, B, k, n)
        else:
            z = odeint(func, z0, t, **kwargs)  # (2, B, k, n)
        return z[-1]  # (B, k, n)


class ODEBlock(nn.Module):
    """A neural ODE on static inputs: h(0) = [h0, 0...] (``augment`` zero dimensions), returns h(t1).

    Args:
        dim: width of h0.
        t1: integration time.
        augment: extra zero dimensions (ANODE).
        **flow: the :class:`Flow` arguments after ``size``.
    """

    def __init__(self, dim: int, t1: float, augment: int, **flow):
        super().__init__()
        self.dim, self.t1, self.augment = dim, t1, augment
        self.output_size = dim + augment
        self.flow = Flow(self.output_size, **flow)

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        """(B, dim) -> (B, dim + augment): the h part of the state at t1."""
        h = nn.functional.pad(h0, (0, self.augment))  # (B, n)
        return self.flow.solve(self.flow.initial_state(h), t1=self.t1)[:, 0]  # (B, n)


class ODERNN(nn.Module):
    """ODE-RNN: an RNN cell jumps at each observation, the rule's ODE flows the state in between.

    Each gap is one solve for the whole batch over normalised time, the field scaled by each row's gap;
    the dynamics see the time since the row's first observation. With an LSTM cell only h flows.

    Args:
        input_size: features per step.
        state_size: width of h (and of the output).
        cell: jump cell, ``tanh``, ``lstm`` or ``gru``.
        **flow: the :class:`Flow` arguments after ``size``.
    """

    def __init__(self, input_size: int, state_size: int, cell: str, **flow):
        super().__init__()
        self.input_size, self.state_size, self.output_size = input_size, state_size, state_size
        self.cell_kind = cell
        self.cell = JUMP_CELLS[cell](input_size, state_size)
        self.flow = Flow(state_size, **flow)

    def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, input_size) observations at ``times`` (B, T) or (T,) (None: 0, 1, ...) -> (B, T, state_size)."""
        B, T, _ = x.shape
        if times is None:
            times = torch.arange(T, dtype=x.dtype, device=x.device).expand(B, T)  # (B, T)
        times = torch.as_tensor(times, dtype=x.dtype, device=x.device).detach().expand(B, T)  # (B, T)
        gaps = times[:, 1:] - times[:, :-1]  # (B, T-1)
        elapsed = times - times[:, :1]  # (B, T) time since the first observation
        h = x.new_zeros(B, self.state_size)  # (B, S)
        c = x.new_zeros(B, self.state_size) if self.cell_kind == "lstm" else None  # (B, S)
        h, c = self._jump(x[:, 0], h, c)
        z = self.flow.initial_state(h)  # (B, k, S)
        outputs = [h]
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
