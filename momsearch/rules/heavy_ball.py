"""``heavy_ball``: v_t = mu·v_{t-1} + s·g_t ; drive = v_t."""

from dataclasses import dataclass

from .base import Rule


@dataclass(frozen=True)
class HeavyBall(Rule):
    """Heavy-ball momentum on the driving term.

    Args:
        mu: momentum coefficient in [0, 1).
        s: step size, > 0.
    """

    mu: float = 0.6
    s: float = 0.6
    name = "heavy_ball"
