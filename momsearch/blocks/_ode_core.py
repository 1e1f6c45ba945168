"""The neural-ODE blocks in pure torch: the one implementation the library and exported models share.

:class:`ODEBlock` maps h0 (B, dim) to h(t1) for static inputs; :class:`ODERNN` jumps with an RNN cell at
each observation and flows with the ODE between observations. Both carry the natural state
y = (h, h' or m[, v]) (B, k, n) and integrate the rule's dynamics with torchdiffeq (``odeint``, or
``odeint_adjoint`` to backpropagate with the adjoint method) on its solver state z = enter(t, y); the
readout uses h. A rule whose clock restarts (NesterovNODE with restart_every R > 0) is integrated
piecewise between restarts, each piece starting at clock 0, so every solver keeps its order there.

Arguments are not checked and evaluations are not counted here: the rule is any object with ``name``,
``components`` and ``dynamics(field)`` (a module with ``forward(t, z)``, ``enter``, ``leave`` and
``restart_every``). ``momsearch.blocks.ode`` adds the checks and the NFE counter (its flow overrides
:meth:`Flow.field`); exported modules embed this code as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

if TYPE_CHECKING:  # annotations only: the rule is read by attribute, exports embed their own ODERule
    from ..rules.ode import ODERule

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU}
# adaptive Runge-Kutta methods: they take ``step_t`` (times no step may cross)
ADAPTIVE_RK_SOLVERS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
JUMP_CELLS = {"tanh": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


def mlp(size: int, hidden_size: int, depth: int, activation: str, inputs: int | None = None) -> nn.Sequential:
    """inputs (default size) -> hidden_size -> ... (``depth`` hidden layers) -> size, ``activation`` after each."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = [nn.Linear(size if inputs is None else inputs, hidden_size), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden_size, hidden_size), act()]
    layers.append(nn.Linear(hidden_size, size))
    return nn.Sequential(*layers)


class TimeInputMLP(nn.Sequential):
    """A field f(h, t) made of layers: the time (B, 1) is one more input of the first layer, [h, t] (B, n + 1).

    :func:`time_mlp` builds it with the layers (and parameter names) of :func:`mlp`.
    """

    time_input = True  # the dynamics call it as field(h, t)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat((h, t), -1))  # (B, n + 1) -> (B, n)


def time_mlp(size: int, hidden_size: int, depth: int, activation: str) -> TimeInputMLP:
    """:func:`mlp` taking [h, t] (B, size + 1) to (B, size), called as f(h, t)."""
    return TimeInputMLP(*mlp(size, hidden_size, depth, activation, inputs=size + 1))


def restarts_inside(start: float, end: float, every: float) -> list[float]:
    """The restart times k·every (k >= 1) strictly inside (start, end); none for every = 0.

    A restart within 1e-9·every of ``start`` or ``end`` counts as on the end point, so rounding never
    makes a piece of zero length.
    """
    if every <= 0:
        return []
    tol = 1e-9 * every
    k = math.floor((start + tol) / every) + 1
    times = []
    while k * every < end - tol:
        times.append(k * every)
        k += 1
    return times


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


class NaturalForm(nn.Module):
    """A restarting rule's dynamics on its natural state y (B, k, n): ``dynamics.natural(t, y)``.

    There a restart only switches the field (y is continuous), so rows restarting at different times
    share one solve; adaptive solvers control the error at each switch, a fixed-grid step that contains
    one is first order there. Created per solve: it registers nothing on the flow.
    """

    def __init__(self, dynamics: nn.Module):
        super().__init__()
        self.dynamics = dynamics

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dynamics.natural(t, y)  # (B, k, n)


class Flow(nn.Module):
    """Integrates a rule's dynamics with torchdiffeq, piecewise between the restarts of its clock.

    Args:
        size: n, width of h.
        rule: the continuous-time rule.
        hidden_size, depth, activation: the MLP vector field (ignored when ``field`` is given).
        solver: torchdiffeq method; options: its ``options=`` dict.
        rtol, atol: tolerances of adaptive methods (also used by the adjoint solve).
        adjoint: backpropagate with ``odeint_adjoint``.
        seminorm: adjoint error control on the state only (``adjoint_options={"norm": "seminorm"}``).
        m0: ``zero`` or ``learned`` (an MLP of h0 whose output layer starts at zero).
        field: a vector field f: (B, n) -> (B, n) to use instead of the MLP (set ``time_input = True`` on it
            to have it called as f(h, t)).
        time_input: the MLP field takes the time as one more input, f(h, t) (tau for NesterovNODE).
    """

    def __init__(self, size: int, rule: ODERule, hidden_size: int, depth: int, activation: str, solver: str,
                 options: Mapping[str, Any] | None, rtol: float, atol: float, adjoint: bool, seminorm: bool,
                 m0: str, field: nn.Module | None = None, time_input: bool = False):
        super().__init__()
        self.rule, self.solver, self.options = rule, solver, dict(options or {})
        self.rtol, self.atol, self.adjoint, self.seminorm = rtol, atol, adjoint, seminorm
        if field is None:
            field = (time_mlp if time_input else mlp)(size, hidden_size, depth, activation)
        self.dynamics = rule.dynamics(field)
        self.m0_net = None
        if m0 == "learned" and rule.components > 1:
            self.m0_net = mlp(size, hidden_size, 1, activation)
            nn.init.zeros_(self.m0_net[-1].weight)
            nn.init.zeros_(self.m0_net[-1].bias)

    def initial_state(self, h: torch.Tensor) -> torch.Tensor:
        """The natural state at the start: (B, n) -> (B, components, n).

        y = (h[, m0[, v0]]) with m0 zero or learned (h'(0) for NesterovNODE) and v0 = m0² (AdamNODE: the
        authors' learned initial velocity squared; 0 when m0 = 0).
        """
        parts = [h]
        if self.rule.components > 1:
            m0 = self.m0_net(h) if self.m0_net is not None else torch.zeros_like(h)  # (B, n)
            parts.append(m0)
            if self.rule.components > 2:
                parts.append(m0 * m0)  # (B, n)
        return torch.stack(parts, 1)  # (B, k, n)

    def field(self, start: torch.Tensor | None, gap: torch.Tensor | None,
              dynamics: nn.Module | None = None) -> nn.Module:
        """The module one solve hands to ``odeint`` (see :class:`TimeScaled`): this flow's dynamics by default."""
        return TimeScaled(self.dynamics if dynamics is None else dynamics, start, gap)

    def solve(self, y0: torch.Tensor, t1: float = 1.0, start: torch.Tensor | None = None,
              gap: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate the natural state y over [0, t1] (or each row's [start, start + gap]); return it at the end.

        The clock restarts every ``dynamics.restart_every`` time units (when > 0): the solve is cut there,
        y is carried across (h and h' continuous) and the next piece starts at clock 0.

        Args:
            y0: (B, k, n) natural state at the start.
            t1: end time of an unscaled solve.
            start: (B, 1) real start times of a normalised solve (see :class:`TimeScaled`).
            gap: (B, 1) interval lengths of a normalised solve.

        Returns:
            (B, k, n) natural state at the end of the interval.
        """
        every = float(getattr(self.dynamics, "restart_every", 0.0))
        if gap is None:
            return self._solve_unscaled(y0, t1, every)
        return self._solve_scaled(y0, start, gap, every)

    def _solve_unscaled(self, y: torch.Tensor, t1: float, every: float) -> torch.Tensor:
        cuts = [0.0, *restarts_inside(0.0, t1, every), t1]
        for a, b in zip(cuts, cuts[1:], strict=False):  # each piece on its own clock [0, b - a]
            z = self.dynamics.enter(y.new_zeros(()), y)  # (B, k, n)
            z = self._odeint(self.field(None, None), z, (0.0, b - a))  # (B, k, n)
            y = self.dynamics.leave(y.new_tensor(b - a), z)  # (B, k, n)
        return y

    def _solve_scaled(self, y: torch.Tensor, start: torch.Tensor, gap: torch.Tensor, every: float) -> torch.Tensor:
        if every > 0:  # rows restart at different s: one solve of the natural form, clocks restarting per row
            return self._odeint(self.field(start, gap, NaturalForm(self.dynamics)), y, (0.0, 1.0))  # (B, k, n)
        z = self._odeint(self.field(start, gap), self.dynamics.enter(start, y), (0.0, 1.0))  # (B, k, n)
        return self.dynamics.leave(start + gap, z)  # (B, k, n)

    def _odeint(self, func: nn.Module, z0: torch.Tensor, span: Sequence[float]) -> torch.Tensor:
        """One torchdiffeq solve of ``func`` from span[0] to span[1]: (B, k, n) -> (B, k, n).

        A clocked rule (NesterovNODE: its field is only defined for tau > 0) has adaptive Runge-Kutta steps
        stopped on the end points (``step_t``): torchdiffeq otherwise steps past the end and interpolates
        back, and the adjoint's backward solve then evaluated the field before the start, at tau <= 0 (NaN;
        its step size underflowed). Forward solves get it only with restarts, where the piece's clock
        would not apply past its end; without restarts the forward solve is torchdiffeq's plain one.
        """
        t = torch.tensor(span, dtype=z0.dtype, device=z0.device)  # (2,)
        options = self.options
        adjoint_options = {k: v for k, v in options.items() if k != "norm"}  # torchdiffeq's own default
        clocked = hasattr(self.dynamics, "tau")
        if clocked and self.solver in ADAPTIVE_RK_SOLVERS and not {"step_t", "jump_t"} & set(options):
            adjoint_options["step_t"] = t
            if float(getattr(self.dynamics, "restart_every", 0.0)) > 0:
                options = {**options, "step_t": t}
        if self.seminorm:
            adjoint_options["norm"] = "seminorm"
        kwargs = {"rtol": self.rtol, "atol": self.atol, "method": self.solver, "options": options}
        if self.adjoint:
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
        y = self.flow.solve(self.flow.initial_state(h), t1=self.t1)  # (B, k, n)
        return y[:, 0]  # (B, n)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, augment={self.augment}, t1={self.t1}, rule={self.flow.rule}"


class ODERNN(nn.Module):
    """ODE-RNN: an RNN cell jumps at each observation, the rule's ODE flows the state in between.

    The first observation only jumps (from h = 0); the momentum state then starts at m0 (zero or
    learned from h) and v = 0. Jumps replace h and keep m and v; with an LSTM cell only h flows and
    the cell state c is carried unchanged. Each gap is one solve for the whole batch over normalised
    time s in [0, 1], with the field scaled by each row's gap dt (rows may have different times); so a
    fixed-step ``step_size`` is in units of one gap. The dynamics see the time since the row's first
    observation (Nesterov's clock); the natural state (h, h') is carried across observations, so
    NesterovNODE re-enters its (x, m) coordinates at each row's own clock. With restarts (restart_every
    > 0) rows restart at different times inside one solve, so each gap is one solve of the equivalent
    second-order form on (h, h') (:class:`NaturalForm`), whose field switches at each row's restart:
    adaptive solvers control the error there, a fixed-grid step containing a restart is first order
    (cutting every row's solve at every other row's restart cost 9.5x the evaluations on irregular
    times). Times are data: they are not differentiated.

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
        y = self.flow.initial_state(h)  # (B, k, S)
        outputs = [h]
        for i in range(1, T):
            y = self.flow.solve(y, start=elapsed[:, i - 1:i], gap=gaps[:, i - 1:i])  # (B, k, S)
            h, c = self._jump(x[:, i], y[:, 0], c)
            y = torch.cat((h.unsqueeze(1), y[:, 1:]), 1)  # (B, k, S)
            outputs.append(h)
        return torch.stack(outputs, 1)  # (B, T, S)

    def _jump(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
        if c is None:
            return self.cell(x, h), None  # (B, S)
        return self.cell(x, (h, c))  # (B, S), (B, S)

    def extra_repr(self) -> str:
        return f"cell={self.cell_kind}, rule={self.flow.rule}"
