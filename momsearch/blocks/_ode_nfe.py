"""NFE accounting: the module ``odeint`` calls counts every call; one scoped place resets the counts.

Each solve gets its own :class:`CountedField` (it also carries that solve's time map, which the adjoint
backward pass must see unchanged); all of a block's fields report to the block's :class:`NFECounter`.
Calls made while a block's forward pass runs are forward evaluations; calls after it returned can only
come from ``odeint_adjoint``'s backward solves and are backward evaluations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import NFEBudgetExceeded
from ._ode_core import TimeScaled


class NFECounter:
    """Counts vector-field evaluations per pass and enforces a per-solve budget.

    Args:
        max_nfe: most evaluations one solve (forward or adjoint backward) may use; 0 means no limit.
    """

    def __init__(self, max_nfe: int = 0):
        self.max_nfe = max_nfe
        self.forward = 0
        self.backward = 0
        self._in_forward = False
        self._solve: object | None = None
        self._solve_calls = 0

    @contextmanager
    def forward_pass(self) -> Iterator[None]:
        """Scope of one forward pass: resets both counts on entry; later calls count as backward."""
        self.forward = self.backward = 0
        self._in_forward, self._solve = True, None
        try:
            yield
        finally:
            self._in_forward, self._solve = False, None

    def tick(self, solve: object) -> None:
        """Count one evaluation made by ``solve``; raise NFEBudgetExceeded when the solve is over budget."""
        if self._in_forward:
            self.forward += 1
        else:
            self.backward += 1
        if solve is not self._solve:
            self._solve, self._solve_calls = solve, 0
        self._solve_calls += 1
        if self.max_nfe and self._solve_calls > self.max_nfe:
            phase = "forward" if self._in_forward else "adjoint backward"
            raise NFEBudgetExceeded(
                f"max_nfe={self.max_nfe}: one {phase} ODE solve needed more than {self.max_nfe} function "
                "evaluations (stiff or exploding dynamics); raise max_nfe or loosen rtol/atol"
            )


class CountedField(TimeScaled):
    """The core's :class:`TimeScaled` field (the module one solve hands to ``odeint``), counting each call.

    Args:
        dynamics, start, gap: as for :class:`TimeScaled`.
        counter: the block's counter.
    """

    def __init__(self, dynamics: nn.Module, counter: NFECounter, start: torch.Tensor | None = None,
                 gap: torch.Tensor | None = None):
        super().__init__(dynamics, start, gap)
        self.counter = counter

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.counter.tick(self)
        return super().forward(t, z)  # (B, k, n)
