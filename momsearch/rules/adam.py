"""``adam``: v_t = mu·v + s·g ; m_t = beta·m + (1-beta)·g² ; drive = v_t / sqrt(m_t + eps)."""

from .base import BETA, EPS, MU, Filter, Normaliser, Rule, S


class Adam(Rule):
    """Adam-style adaptive step on the driving term (eps inside the root, no bias correction).

    Args:
        mu: momentum coefficient in [0, 1).
        s: step size, > 0.
        beta: decay of the squared-drive average in [0, 1).
        eps: > 0, added inside the square root.
    """

    name = "adam"
    doc = "adaptive step: heavy-ball momentum divided by sqrt of the squared-drive average"
    position = 3
    PARAMS = {"mu": MU, "s": S, "beta": BETA, "eps": EPS}

    def filter(self, block: str) -> Filter:
        """v_t = mu·v_{t-1} + s·g_t (nothing carried when mu = 0)."""
        return Filter(scale=self.s, decay=self.mu if self.mu > 0 else None)

    def normaliser(self) -> Normaliser:
        """m_t = beta·m_{t-1} + (1-beta)·g_t² ; drive = v_t / sqrt(m_t + eps)."""
        return Normaliser(self.beta, self.eps)
