"""The neural-ODE blocks in pure torch: the one implementation the library and exported models share (DESIGN §3.2).

:class:`ODEBlock` maps h0 (B, dim) to h(t1) for static inputs; :class:`ODERNN` jumps with an RNN cell at
each observation and flows with the ODE between observations. Both integrate the stacked state
z = (h, m[, v]) (B, k, n) of the rule's dynamics with torchdiffeq (``odeint``, or ``odeint_adjoint`` to
backpropagate with the adjoint method); the readout uses h.

Arguments are not checked and evaluations are not counted here: the rule is any object with ``name``,
``components``, ``dynamics(field)`` and ``discontinuities(t1)``. ``momsearch.blocks.ode`` adds the checks
and the NFE counter (its flow overrides :meth:`Flow.field`); exported modules embed this code as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

if TYPE_CHECKING:  # annotations only: the rule is read by attribute, exports embed their own ODERule
    from ..rules.ode import ODERule

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU}
# adaptive Runge-Kutta methods: they take ``jump_t`` (times where the dynamics are discontinuous)
ADAPTIVE_RK_SOLVERS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
JUMP_CELLS = {"tanh": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


def mlp(size: int, hidden_size: int, depth: int, activation: str) -> nn.Sequential:
    """size -> hidden_size -> ... (``depth`` hidden layers) -> size, with ``activation`` after each hidden layer."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = [nn.Linear(size, hidden_size), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden_size, hidden_size), act()]
    layers.append(nn.Linear(hidden_size, size))
    return nn.Sequential(*layers)


class TimeScaled(nn.Module):
    """The module one solve hands to ``odeint``: the dynamics, on normalised time when given an interval.

    With ``start`` and ``gap`` the solve runs over s in [0, 1] and the dynamics see the real time
    ``start + s·gap``: dz/ds = gap · F(start + s·gap, z), one solve for rows with different gaps.

    Args:
        dynamics: ``forward(t, z) -> dz/dt`` (a rule's dynamics module).
        start: (B, 1) real time at s = 0, or None for an unscaled solve.
        gap: (B, 1) length of each row's interval, or None for an unscaled solve.
    """

    def __init__(self, dynamics: nn.Module, start: torch.Tensor | None = None, gap: torch.Tensor | None = None):
        super().__init__()
        self.dynamics = dynamics
        self.start, self.gap = start, gap

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.gap is None:
            return self.dynamics(t, z)  # (B, k, n)
        real_t = self.start + t * self.gap  # (B, 1)
        return self.dynamics(real_t, z) * self.gap.unsqueeze(-1)  # (B, k, n)


class Flow(nn.Module):
    """Integrates the stacked state z = (h, m[, v]) of a rule's dynamics with torchdiffeq.

    Adaptive Runge-Kutta methods are told where the rule's dynamics jump in time (Nesterov restarts,
    ``jump_t``) on unscaled solves, so they step onto the jump instead of grinding through it.

    Args:
        size: n, width of h.
        rule: the continuous-time rule.
        hidden_size, depth, activation: the MLP vector field (ignored when ``field`` is given).
        solver: torchdiffeq method; options: its ``options=`` dict.
        rtol, atol: tolerances of adaptive methods (also used by the adjoint solve).
        adjoint: backpropagate with ``odeint_adjoint``.
        seminorm: adjoint error control on the state only (``adjoint_options={"norm": "seminorm"}``).
        m0: ``zero`` or ``learned`` (an MLP of h0 whose output layer starts at zero).
        field: a vector field f: (B, n) -> (B, n) to use instead of the MLP.
    """

    def __init__(self, size: int, rule: ODERule, hidden_size: int, depth: int, activation: str, solver: str,
                 options: Mapping[str, Any] | None, rtol: float, atol: float, adjoint: bool, seminorm: bool,
                 m0: str, field: nn.Module | None = None):
        super().__init__()
        self.rule, self.solver, self.options = rule, solver, dict(options or {})
        self.rtol, self.atol, self.adjoint, self.seminorm = rtol, atol, adjoint, seminorm
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

    def field(self, start: torch.Tensor | None, gap: torch.Tensor | None) -> nn.Module:
        """The module one solve hands to ``odeint`` (see :class:`TimeScaled`)."""
        return TimeScaled(self.dynamics, start, gap)

    def solve(self, z0: torch.Tensor, t1: float = 1.0, start: torch.Tensor | None = None,
              gap: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate z from time 0 to ``t1`` (or over each row's [start, start + gap]); return z at the end.

        Args:
            z0: (B, k, n) initial state.
            t1: end time of an unscaled solve.
            start: (B, 1) real start times of a normalised solve (see :class:`TimeScaled`).
            gap: (B, 1) interval lengths of a normalised solve.

        Returns:
            (B, k, n) state at the end of the interval.
        """
        func = self.field(start, gap)
        t = torch.tensor([0.0, t1 if gap is None else 1.0], dtype=z0.dtype, device=z0.device)  # (2,)
        options = self.options
        jumps = self.rule.discontinuities(t1) if gap is None else ()
        if jumps and self.solver in ADAPTIVE_RK_SOLVERS and "jump_t" not in options:
            options = {**options, "jump_t": torch.tensor(jumps, dtype=torch.float64, device=z0.device)}
        kwargs = {"rtol": self.rtol, "atol": self.atol, "method": self.solver, "options": options}
        if self.adjoint:
            adjoint_options = {**options, "norm": "seminorm"} if self.seminorm else None
            z = odeint_adjoint(func, z0, t, adjoint_params=tuple(self.dynamics.parameters()),
                               adjoint_options=adjoint_options, **kwargs)  # (2, B, k, n)
        else:
            z = odeint(func, z0, t, **kwargs)  # (2, B, k, n)
        return z[-1]  # (B, k, n)


class ODEBlock(nn.Module):
    """A neural ODE on static inputs: h(0) = [h0, 0...] (``augment`` zero dimensions, ANODE), returns h(t1).

    Args:
        dim: width of h0.
        t1: integration time.
        augment: extra zero dimensions appended to h0.
        **flow: the :class:`Flow` arguments after ``size``.
    """

    flow_class = Flow  # what the flow is built with

    def __init__(self, dim: int, t1: float, augment: int, **flow: Any):
        super().__init__()
        self.dim, self.t1, self.augment = dim, t1, augment
        self.output_size = dim + augment
        self.flow = self.flow_class(self.output_size, **flow)

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        """Integrate from h0 to time t1.

        Args:
            h0: (B, dim).

        Returns:
            (B, dim + augment): the h part of the state at t1.
        """
        h = nn.functional.pad(h0, (0, self.augment))  # (B, n)
        z = self.flow.solve(self.flow.initial_state(h), t1=self.t1)  # (B, k, n)
        return z[:, 0]  # (B, n)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, augment={self.augment}, t1={self.t1}, rule={self.flow.rule}"


class ODERNN(nn.Module):
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
        **flow: the :class:`Flow` arguments after ``size``.
    """

    flow_class = Flow  # what the flow is built with

    def __init__(self, input_size: int, state_size: int, cell: str, **flow: Any):
        super().__init__()
        self.input_size, self.state_size, self.output_size = input_size, state_size, state_size
        self.cell_kind = cell
        self.cell = JUMP_CELLS[cell](input_size, state_size)
        self.flow = self.flow_class(state_size, **flow)

    def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Run over a batch of (possibly irregularly sampled) sequences.

        Args:
            x: (B, T, input_size) observations.
            times: (B, T) or (T,) non-decreasing observation times; None means 0, 1, ..., T-1.

        Returns:
            (B, T, state_size): h right after each observation's jump.
        """
        B, T, _ = x.shape
        if times is None:
            times = torch.arange(T, dtype=x.dtype, device=x.device)  # (T,)
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

    def extra_repr(self) -> str:
        return f"cell={self.cell_kind}, rule={self.flow.rule}"
