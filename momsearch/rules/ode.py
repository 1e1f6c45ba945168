"""Continuous-time update rules for neural-ODE blocks: NODE, HBNODE, GHBNODE, NesterovNODE, AdamNODE.

A rule is a frozen set of hyperparameters, checked against ``catalog.ode.RULES`` at construction.
``rule.dynamics(field)`` is the factory the block calls: it returns the :class:`Dynamics` module that holds
the rule's learnable parameters (gamma, xi, the betas) and evaluates the time derivative of the stacked
solver state ``z`` of shape (B, k, n), with ``k = rule.components``. ``field`` is the learned vector field
f: (B, n) -> (B, n), or f(h, t) when the field module has ``time_input = True`` (then it is called with h
(B, n) and the time (B, 1): t, or Nesterov's tau).

The block carries the *natural* state y = (h, h' or m[, v]) between solves; ``dynamics.enter(t, y)`` and
``dynamics.leave(t, z)`` convert it to and from the solver state (the identity except for NesterovNODE,
whose solver state is (x, m) = (k(tau)·h, x')). ``dynamics.restart_every`` > 0 makes the static block
solve piecewise between restarts, starting each piece at clock 0; the ODE-RNN, whose rows restart at
different times, integrates ``dynamics.natural(t, y)`` (the same system on y) instead.

Reference fidelity (float64, shared weights): NODE, HBNODE and GHBNODE are the HeavyBallNODE code
(Xia et al. 2021, ``base.py``) under m = -m_ref, f = -f_ref; AdamNODE is the AdamNODE code (Cho et al.
2022, ``cifar10/models.py``) under m = -m_ref, f = f_ref; NesterovNODE follows its paper (Nguyen et al.,
NeurIPS 2022), whose equations the authors' code does not implement.
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
    """HBNODE (Xia et al. 2021): h' = m ; m' = -gamma·m + f(h), gamma = sigmoid(theta), theta learnable.

    Args:
        gamma_init: initial damping in (0, 1); theta starts at logit(gamma_init). The default is the
            authors' theta_0 = -3 (gamma = sigmoid(-3) ~ 0.0474).
    """

    gamma_init: float = ode_catalog.GAMMA_INIT
    name = "heavy_ball"
    components = 2

    def dynamics(self, field: nn.Module) -> nn.Module:
        return HeavyBallDynamics(field, self.gamma_init)


@dataclass(frozen=True)
class GeneralizedHeavyBall(ODERule):
    """GHBNODE (Xia et al. 2021): h' = tanh(m) ; m' = -gamma·m + f(h) - xi·h, gamma = sigmoid(theta), xi = softplus(c).

    Args:
        gamma_init: initial damping in (0, 1); default sigmoid(-3) ~ 0.0474 as for HBNODE.
        xi_init: initial restoring coefficient, > 0; c starts at softplus⁻¹(xi_init). The default is the
            authors' MNIST c_0 = 2 (xi = softplus(2) ~ 2.13).
    """

    gamma_init: float = ode_catalog.GAMMA_INIT
    xi_init: float = ode_catalog.XI_INIT
    name = "generalized_heavy_ball"
    components = 2

    def dynamics(self, field: nn.Module) -> nn.Module:
        return GeneralizedHeavyBallDynamics(field, self.gamma_init, self.xi_init)


@dataclass(frozen=True)
class NesterovRestart(ODERule):
    """NesterovNODE (Nguyen et al., NeurIPS 2022, the paper's equations), with momsearch's optional restarts.

    With k(tau) = tau^(3/2)·e^(-tau/2) and tau = 1 + t over block time t:
    x = k(tau)·h ; x' = m ; m' = -m + f(h), started at h(tau = 1) = h0, h'(1) = 0, i.e.
    x(1) = k(1)·h0, m(1) = k'(1)·h0; the read-out is h = x / k(tau). Equivalently
    h'' + (3/tau)·h' + (3/(4·tau²) - 1/4)·h = tau^(-3/2)·e^(tau/2)·f(h).

    ``restart_every`` R > 0 is momsearch's extension (neither the paper nor its code restarts): the clock
    restarts, tau = 1 + (t mod R), with h and h' continuous across the restart, so x and m are re-mapped
    there and :class:`ODEBlock` integrates piecewise between restarts (every solver keeps its full order).
    The ODE-RNN, whose rows restart at different times, integrates the second-order form on (h, h') instead.

    Args:
        restart_every: R >= 0 time units; R = 0 never restarts (tau = 1 + t, the paper).
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
    """AdamNODE (Cho et al. 2022, the authors' code): state (h, m, v), v0 = 0 (m0²  with a learned m0).

    h' = m / (sqrt(n(v)) + eps) ; m' = beta1·(f(h) - m) ; v' = beta2·(f(h)² - v), beta = sigmoid(logit),
    the logits learnable. eps is *outside* the root. The normaliser n bounds the adaptive gain:
    ``sigmoid`` (the authors' CIFAR run, the default: for v >= 0 the gain 1 / (sqrt(n(v)) + eps) stays
    in (1 - eps, sqrt(2)], where sqrt(v + eps) would reach 1/sqrt(eps) at v = 0), ``softplus`` (their MNIST class)
    or ``identity`` (plain Adam; n(v) is floored at the smallest normal number inside the root, since a
    solver stage can undershoot 0).

    Args:
        beta1_init, beta2_init: initial betas in (0, 1); default sigmoid(3) ~ 0.953 (logits 3, the authors').
        eps: >= 0, added to the root; default 1e-8 as the authors'.
        normalizer: n, one of ``sigmoid``, ``softplus``, ``identity``.
    """

    beta1_init: float = ode_catalog.BETA_INIT
    beta2_init: float = ode_catalog.BETA_INIT
    eps: float = 1e-8
    normalizer: str = "sigmoid"
    name = "adam"
    components = 3

    def dynamics(self, field: nn.Module) -> nn.Module:
        return AdamDynamics(field, self.beta1_init, self.beta2_init, self.eps, self.normalizer)


class Dynamics(nn.Module):
    """Base of the dynamics modules: the field call, the state maps and the learnable scalars.

    ``forward(t, z)`` returns dz/dt for the solver state z (B, k, n); ``t`` is a scalar tensor or (B, 1),
    the time since the clock's last restart. ``enter``/``leave`` map the natural state y = (h, h' or m[, v])
    to and from z (the identity here). Learnable scalars are registered with :meth:`scalar`: their exact
    initial value is kept, so a module built in float32 and converted (``.double()``, ``.to(dtype)``) while
    untrained holds the initial value exactly in the new dtype.

    Args:
        field: f, (B, n) -> (B, n); called as ``field(h, t)`` when it has ``time_input = True``.
    """

    restart_every = 0.0  # > 0: the block solves piecewise, the clock starting at 0 after each restart

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self._inits: dict[str, float] = {}

    def scalar(self, name: str, value: float) -> None:
        """Register the learnable scalar ``name`` starting at ``value`` (in the default dtype)."""
        self._inits[name] = value
        self.register_parameter(name, nn.Parameter(torch.tensor(value, dtype=torch.get_default_dtype())))

    def _apply(self, fn, recurse=True):
        before = {name: getattr(self, name).detach().clone() for name in self._inits}
        out = super()._apply(fn, recurse)
        with torch.no_grad():
            for name, value in self._inits.items():
                p, old = getattr(self, name), before[name]
                untouched = bool(old == torch.tensor(value, dtype=old.dtype, device=old.device))
                if untouched and p.dtype != old.dtype and p.is_floating_point():
                    p.fill_(value)  # the exact initial value, not the old dtype's rounding of it
        return out

    def f(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """f(h), or f(h, t) with t as a (B, 1) column when the field takes time: (B, n) -> (B, n)."""
        if getattr(self.field, "time_input", False):
            column = torch.as_tensor(t, dtype=h.dtype, device=h.device).reshape(-1, 1).expand(h.shape[0], 1)
            return self.field(h, column)  # (B, n)
        return self.field(h)  # (B, n)

    def enter(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Solver state z (B, k, n) from the natural state y (B, k, n) at clock time t."""
        return y

    def leave(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Natural state y (B, k, n) from the solver state z (B, k, n) at clock time t."""
        return z


class PlainDynamics(Dynamics):
    """dz/dt of NODE for z = (h,) of shape (B, 1, n): h' = f(h)."""

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.f(z[:, 0], t).unsqueeze(1)  # (B, 1, n)


class HeavyBallDynamics(Dynamics):
    """dz/dt of HBNODE for z = (h, m) of shape (B, 2, n): h' = m ; m' = -sigmoid(theta)·m + f(h)."""

    def __init__(self, field: nn.Module, gamma_init: float):
        super().__init__(field)
        self.scalar("theta", _logit(gamma_init))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h, m = z.unbind(1)  # (B, n) each
        dm = -torch.sigmoid(self.theta) * m + self.f(h, t)  # (B, n)
        return torch.stack((m, dm), 1)  # (B, 2, n)


class GeneralizedHeavyBallDynamics(Dynamics):
    """dz/dt of GHBNODE for z = (h, m) of shape (B, 2, n): h' = tanh(m) ; m' = -gamma·m + f(h) - xi·h."""

    def __init__(self, field: nn.Module, gamma_init: float, xi_init: float):
        super().__init__(field)
        self.scalar("theta", _logit(gamma_init))
        self.scalar("c", _inverse_softplus(xi_init))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h, m = z.unbind(1)  # (B, n) each
        gamma, xi = torch.sigmoid(self.theta), nn.functional.softplus(self.c)
        dm = -gamma * m + self.f(h, t) - xi * h  # (B, n)
        return torch.stack((torch.tanh(m), dm), 1)  # (B, 2, n)


def nesterov_k(tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """k(tau) = tau^(3/2)·e^(-tau/2) and its derivative k'(tau) = k(tau)·(3/(2·tau) - 1/2)."""
    k = tau**1.5 * torch.exp(-0.5 * tau)
    return k, k * (1.5 / tau - 0.5)


class NesterovDynamics(Dynamics):
    """dz/dt of NesterovNODE for z = (x, m) of shape (B, 2, n): x' = m ; m' = -m + f(x / k(tau)), tau = 1 + clock.

    The clock is t mod R (R = ``restart_every`` > 0; t itself for R = 0), a restart taking effect just after
    t = R, 2R, ... (t = kR reads R; times up to 1e-4·R past it too, which absorbs rounding at the end of a
    piece). The block solves piecewise and hands each piece the time since its restart, so the state
    (x, m), which jumps at a restart, is re-mapped between pieces. A field with ``time_input`` sees tau.
    The natural state is y = (h, h'), with x = k·h and m = k'·h + k·h'.
    """

    def __init__(self, field: nn.Module, restart_every: float):
        super().__init__(field)
        self.restart_every = restart_every

    def tau(self, t: torch.Tensor) -> torch.Tensor:
        """tau = 1 + clock(t): () or (B, 1)."""
        R = self.restart_every
        if R > 0:
            t = t - R * torch.clamp(torch.ceil(t / R - 1e-4) - 1, min=0)
        return 1.0 + t

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x, m = z.unbind(1)  # (B, n) each
        tau = self.tau(t)  # () or (B, 1)
        k, _ = nesterov_k(tau)
        dm = -m + self.f(x / k, tau)  # (B, n)
        return torch.stack((m, dm), 1)  # (B, 2, n)

    def natural(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """dy/dt of the same system on y = (h, h') (B, 2, n), the form in which a restart moves nothing:

        h'' = -(3/tau)·h' - (3/(4·tau²) - 1/4)·h + tau^(-3/2)·e^(tau/2)·f(h).
        """
        h, dh = y.unbind(1)  # (B, n) each
        tau = self.tau(t)  # () or (B, 1)
        k, _ = nesterov_k(tau)
        ddh = -(3.0 / tau) * dh - (0.75 / tau**2 - 0.25) * h + self.f(h, tau) / k  # (B, n)
        return torch.stack((dh, ddh), 1)  # (B, 2, n)

    def enter(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(h, h') -> (x, m) = (k·h, k'·h + k·h') at tau(t)."""
        h, dh = y.unbind(1)  # (B, n) each
        k, dk = nesterov_k(self.tau(t))
        return torch.stack((k * h, dk * h + k * dh), 1)  # (B, 2, n)

    def leave(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(x, m) -> (h, h') = (x / k, (m - k'·h) / k) at tau(t)."""
        x, m = z.unbind(1)  # (B, n) each
        k, dk = nesterov_k(self.tau(t))
        h = x / k  # (B, n)
        return torch.stack((h, (m - dk * h) / k), 1)  # (B, 2, n)


NORMALIZERS = {"sigmoid": torch.sigmoid, "softplus": nn.functional.softplus, "identity": lambda v: v}


class AdamDynamics(Dynamics):
    """dz/dt of AdamNODE for z = (h, m, v) of shape (B, 3, n).

    h' = m / (sqrt(n(v)) + eps) ; m' = sigmoid(b1)·(f(h) - m) ; v' = sigmoid(b2)·(f(h)² - v).

    n(v) is floored at the dtype's smallest normal number before the root: the values are the authors'
    wherever n(v) does not underflow, and the root's gradient stays finite where it does (the adjoint's
    backward reconstruction of v can overshoot far below 0, where sigmoid(v) is exactly 0). Reading v as
    max(v, 0) there instead made the adjoint field non-smooth at v0 = 0 and its backward step size collapse.
    """

    def __init__(self, field: nn.Module, beta1_init: float, beta2_init: float, eps: float,
                 normalizer: str = "sigmoid"):
        super().__init__(field)
        self.scalar("beta1_logit", _logit(beta1_init))
        self.scalar("beta2_logit", _logit(beta2_init))
        self.eps, self.normalizer = eps, normalizer

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h, m, v = z.unbind(1)  # (B, n) each
        f = self.f(h, t)  # (B, n)
        gain = torch.sqrt(NORMALIZERS[self.normalizer](v).clamp_min(torch.finfo(v.dtype).tiny))  # (B, n)
        dh = m / (gain + self.eps)  # (B, n)
        dm = torch.sigmoid(self.beta1_logit) * (f - m)  # (B, n)
        dv = torch.sigmoid(self.beta2_logit) * (f * f - v)  # (B, n)
        return torch.stack((dh, dm, dv), 1)  # (B, 3, n)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, normalizer={self.normalizer}"


RULES: dict[str, type[ODERule]] = {
    cls.name: cls for cls in (Plain, HeavyBall, GeneralizedHeavyBall, NesterovRestart, Adam)
}

__all__ = ["ODERule", "Plain", "HeavyBall", "GeneralizedHeavyBall", "NesterovRestart", "Adam", "RULES",
           "Dynamics"]
