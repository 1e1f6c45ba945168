"""``adam``: v_t = mu·v + s·g ; m_t = beta·m + (1-beta)·g² ; drive = v_t / sqrt(m_t + eps)."""

from dataclasses import dataclass

from .base import Rule


@dataclass(frozen=True)
class Adam(Rule):
    """Adam-style adaptive step on the driving term (eps inside the root, no bias correction).

    Args:
        mu: momentum coefficient in [0, 1).
        s: step size, > 0.
        beta: decay of the squared-drive average in [0, 1).
        eps: > 0, added inside the square root.
    """

    mu: float = 0.6
    s: float = 0.6
    beta: float = 0.999
    eps: float = 1e-16
    name = "adam"
