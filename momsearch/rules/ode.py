"""Continuous-time update rules for neural-ODE blocks (DESIGN §3.2).

A rule is a frozen set of hyperparameters, checked against ``catalog.ode.RULES`` at construction.
``rule.dynamics(field)`` is the factory the block calls: it returns the ``nn.Module`` that holds the
rule's learnable parameters (gamma, xi, the betas) and evaluates the time derivative of the stacked
state ``z = (h, m[, v])`` of shape (B, k, n), with ``k = rule.components``. ``field`` is the learned
vector field f: (B, n) -> (B, n); time enters the dynamics only through the rule (Nesterov's clock).
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..catalog import ode as ode_catalog
from ..catalog.params import check_params


def _logit(p: float) -> float:
    """Inverse of the sigmoid."""
    return math.log(p) - math.log1p(-p)


def _inverse_softplus(x: float) -> float:
    """Inverse of softplus, stable for small and large ``x`` > 0."""
    return x + math.log(-math.expm1(-x))


def restart_times(restart_every: float, t1: float) -> tuple[float, ...]:
    """The restart times R, 2R, ... of Nesterov's clock inside (0, t1); none for R = 0."""
    R = restart_every
    return tuple(k * R for k in range(1, math.ceil(t1 / R)) if k * R < t1) if R > 0 else ()


def _scalar(value: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor(value, dtype=torch.get_default_dtype()))


class _CheckedRule(abc.ABCMeta):
    """Makes an unknown keyword a ConfigError listing the rule's parameters (a dataclass raises TypeError)."""

    def __call__(cls, *args, **kwargs):
        if cls.name in ode_catalog.RULES:
            check_params(f"rule {cls.name}", ode_catalog.RULES[cls.name], kwargs)
        return super().__call__(*args, **kwargs)


@dataclass(frozen=True)
class ODERule(metaclass=_CheckedRule):
    """Base of the continuous-time rules: hyperparameters plus a factory for the dynamics module.

    ``components`` is the number of stacked state parts: 1 (h), 2 (h, m) or 3 (h, m, v).
    """

    name = "rule"
    components = 1

    def __post_init__(self):
        checked = check_params(f"rule {self.name}", ode_catalog.RULES[self.name], asdict(self))
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def params(self) -> dict:
        """The hyperparameters as a plain dict (constructor keyword arguments)."""
        return asdict(self)

    def discontinuities(self, t1: float) -> tuple[float, ...]:
        """Times in (0, t1) where the dynamics jump in t (solvers step onto them); none by default."""
        return ()

    @abc.abstractmethod
    def dynamics(self, field: nn.Module) -> nn.Module:
        """Create the dynamics module ``forward(t, z) -> dz/dt`` around the vector field ``field``.

        Args:
            field: f, mapping (B, n) to (B, n).

        Returns:
            A module holding the rule's learnable parameters; ``t`` is a scalar tensor or (B, 1),
            ``z`` and the result are (B, components, n).
        """


@dataclass(frozen=True)
class Plain(ODERule):
    """NODE: h' = f(h)."""

    name = "plain"
    components = 1

    def dynamics(self, field: nn.Module) -> nn.Module:
        return PlainDynamics(field)


@dataclass(frozen=True)
class HeavyBall(ODERule):
    """HBNODE: h' = m ; m' = -gamma·m + f(h), gamma = sigmoid(theta) learnable.

    Args:
        gamma_init: initial damping in (0, 1); theta starts at logit(gamma_init).
    """

    gamma_init: float = 0.05
    name = "heavy_ball"
    components = 2

    def dynamics(self, field: nn.Module) -> nn.Module:
        return HeavyBallDynamics(field, self.gamma_init)


@dataclass(frozen=True)
class GeneralizedHeavyBall(ODERule):
    """GHBNODE: h' = tanh(m) ; m' = -gamma·m + f(h) - xi·h, gamma = sigmoid(theta), xi = softplus(c).

    Args:
        gamma_init: initial damping in (0, 1).
        xi_init: initial restoring coefficient, > 0; c starts at softplus⁻¹(xi_init).
    """

    gamma_init: float = 0.05
    xi_init: float = 0.5
    name = "generalized_heavy_ball"
    components = 2

    def dynamics(self, field: nn.Module) -> nn.Module:
        return GeneralizedHeavyBallDynamics(field, self.gamma_init, self.xi_init)


@dataclass(frozen=True)
class NesterovRestart(ODERule):
    """Nesterov's ODE with a restarted clock: h' = m ; m' = -(3/tau)·m + f(h), tau = 1 + (t mod R).

    The clock restarts just after t = R, 2R, ... (at t = kR it reads R), so an integration that ends
    on a restart sees no jump at its end point.

    Args:
        restart_every: R >= 0 time units; R = 0 never restarts (tau = 1 + t).
    """

    restart_every: float = 1.0
    name = "nesterov_restart"
    components = 2

    def discontinuities(self, t1: float) -> tuple[float, ...]:
        """The restart times R, 2R, ... inside (0, t1)."""
        return restart_times(self.restart_every, t1)

    def dynamics(self, field: nn.Module) -> nn.Module:
        return NesterovDynamics(field, self.restart_every)


@dataclass(frozen=True)
class Adam(ODERule):
    """AdamNODE: h' = m / sqrt(v + eps) ; m' = beta1·(f - m) ; v' = beta2·(f² - v), betas = sigmoid(.).

    v starts at 0 and stays >= 0 along the exact flow; inside the root it is clamped at 0 because a
    solver's intermediate stages can undershoot it.

    Args:
        beta1_init: initial beta1 in (0, 1).
        beta2_init: initial beta2 in (0, 1).
        eps: > 0, added inside the square root.
    """

    beta1_init: float = 0.5
    beta2_init: float = 0.5
    eps: float = 1e-6
    name = "adam"
    components = 3

    def dynamics(self, field: nn.Module) -> nn.Module:
        return AdamDynamics(field, self.beta1_init, self.beta2_init, self.eps)


class PlainDynamics(nn.Module):
    """dz/dt of NODE for z = (h,) of shape (B, 1, n)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.field(z[:, 0]).unsqueeze(1)  # (B, 1, n)


class HeavyBallDynamics(nn.Module):
    """dz/dt of HBNODE for z = (h, m) of shape (B, 2, n)."""

    def __init__(self, field: nn.Module, gamma_init: float):
        super().__init__()
        self.field = field
        self.theta = _scalar(_logit(gamma_init))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h, m = z.unbind(1)  # (B, n) each
        dm = -torch.sigmoid(self.theta) * m + self.field(h)  # (B, n)
        return torch.stack((m, dm), 1)  # (B, 2, n)


class GeneralizedHeavyBallDynamics(nn.Module):
    """dz/dt of GHBNODE for z = (h, m) of shape (B, 2, n)."""

    def __init__(self, field: nn.Module, gamma_init: float, xi_init: float):
        super().__init__()
        self.field = field
        self.theta = _scalar(_logit(gamma_init))
        self.c = _scalar(_inverse_softplus(xi_init))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h, m = z.unbind(1)  # (B, n) each
        gamma, xi = torch.sigmoid(self.theta), nn.functional.softplus(self.c)
        dm = -gamma * m + self.field(h) - xi * h  # (B, n)
        return torch.stack((torch.tanh(m), dm), 1)  # (B, 2, n)


class NesterovDynamics(nn.Module):
    """dz/dt of Nesterov's ODE with a restarted clock for z = (h, m) of shape (B, 2, n)."""

    def __init__(self, field: nn.Module, restart_every: float):
        super().__init__()
        self.field = field
        self.restart_every = restart_every

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h, m = z.unbind(1)  # (B, n) each
        clock = t  # () or (B, 1)
        if self.restart_every > 0:  # restarts take effect just after t = R, 2R, ...: clock in (0, R]
            clock = t - self.restart_every * torch.clamp(torch.ceil(t / self.restart_every) - 1, min=0)
        dm = -(3.0 / (1.0 + clock)) * m + self.field(h)  # (B, n)
        return torch.stack((m, dm), 1)  # (B, 2, n)


class AdamDynamics(nn.Module):
    """dz/dt of AdamNODE for z = (h, m, v) of shape (B, 3, n)."""

    def __init__(self, field: nn.Module, beta1_init: float, beta2_init: float, eps: float):
        super().__init__()
        self.field = field
        self.beta1_logit = _scalar(_logit(beta1_init))
        self.beta2_logit = _scalar(_logit(beta2_init))
        self.eps = eps

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h, m, v = z.unbind(1)  # (B, n) each
        f = self.field(h)  # (B, n)
        dh = m / torch.sqrt(v.clamp_min(0.0) + self.eps)  # (B, n)
        dm = torch.sigmoid(self.beta1_logit) * (f - m)  # (B, n)
        dv = torch.sigmoid(self.beta2_logit) * (f * f - v)  # (B, n)
        return torch.stack((dh, dm, dv), 1)  # (B, 3, n)


RULES: dict[str, type[ODERule]] = {
    cls.name: cls for cls in (Plain, HeavyBall, GeneralizedHeavyBall, NesterovRestart, Adam)
}

__all__ = ["ODERule", "Plain", "HeavyBall", "GeneralizedHeavyBall", "NesterovRestart", "Adam", "RULES"]
