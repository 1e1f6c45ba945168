"""``heavy_ball``: v_t = mu·v_{t-1} + s·g_t ; drive = v_t."""

from .base import MU, Filter, Rule, S


class HeavyBall(Rule):
    """Heavy-ball momentum on the driving term.

    Args:
        mu: momentum coefficient in [0, 1).
        s: step size, > 0.
    """

    name = "heavy_ball"
    doc = "heavy-ball momentum: v = mu·v + s·g, drive v"
    position = 1
    PARAMS = {"mu": MU, "s": S}

    def filter(self, block: str) -> Filter:
        """v_t = mu·v_{t-1} + s·g_t ; out_t = v_t (attention: S_t = S_{t-1} + p_t)."""
        return Filter(scale=self.s, decay=self.mu)
