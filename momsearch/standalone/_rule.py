"""The continuous-time rule of an exported ODE block: its name and hyperparameters, read by the block's code.

The library's ODE rule classes (``momsearch.rules.ode``) check their arguments against the catalog; the
exported module carries the one rule the search chose, as plain values, and builds the library's own
dynamics modules. (An exported discrete rule is its own class from ``momsearch.rules``, embedded as written.)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..rules.ode import (
    AdamDynamics,
    GeneralizedHeavyBallDynamics,
    HeavyBallDynamics,
    NesterovDynamics,
    PlainDynamics,
    restart_times,
)

# continuous-time rule -> (dynamics class, stacked state parts k, its hyperparameters in argument order)
ODE_DYNAMICS = {
    "plain": (PlainDynamics, 1, ()),
    "heavy_ball": (HeavyBallDynamics, 2, ("gamma_init",)),
    "generalized_heavy_ball": (GeneralizedHeavyBallDynamics, 2, ("gamma_init", "xi_init")),
    "nesterov_restart": (NesterovDynamics, 2, ("restart_every",)),
    "adam": (AdamDynamics, 3, ("beta1_init", "beta2_init", "eps", "normalizer")),
}


@dataclass(frozen=True)
class ODERule:
    """A continuous-time rule: ``plain``, ``heavy_ball``, ``generalized_heavy_ball``, ``nesterov_restart``, ``adam``.

    Args:
        name: the rule.
        gamma_init: initial damping (``heavy_ball``, ``generalized_heavy_ball``).
        xi_init: initial restoring coefficient (``generalized_heavy_ball``).
        restart_every: restart period R of Nesterov's clock (0: never restart).
        beta1_init, beta2_init: initial betas (``adam``).
        eps: added to the square root (``adam``).
        normalizer: n in h' = m / (sqrt(n(v)) + eps) (``adam``).
    """

    name: str = "plain"
    gamma_init: float = 0.04742587317756678  # sigmoid(-3)
    xi_init: float = 2.1269280110429727  # softplus(2)
    restart_every: float = 1.0
    beta1_init: float = 0.9525741268224334  # sigmoid(3)
    beta2_init: float = 0.9525741268224334
    eps: float = 1e-8
    normalizer: str = "sigmoid"

    @property
    def components(self) -> int:
        """Stacked state parts: 1 (h), 2 (h, m) or 3 (h, m, v)."""
        return ODE_DYNAMICS[self.name][1]

    def discontinuities(self, t1: float) -> tuple[float, ...]:
        """Times in (0, t1) where the dynamics jump in t: Nesterov's restarts."""
        return restart_times(self.restart_every, t1) if self.name == "nesterov_restart" else ()

    def dynamics(self, field: nn.Module) -> nn.Module:
        """The rule's dynamics module ``forward(t, z) -> dz/dt`` around the vector field ``field``."""
        dynamics, _, params = ODE_DYNAMICS[self.name]
        return dynamics(field, *(getattr(self, name) for name in params))
