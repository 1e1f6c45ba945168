"""``rmsprop``: ``adam`` with mu = 0."""

from .base import BETA, EPS, Filter, Normaliser, Rule, S


class RMSProp(Rule):
    """RMSProp-style adaptive step: drive = s·g_t / sqrt(m_t + eps), m_t = beta·m + (1-beta)·g².

    Args:
        s: step size, > 0.
        beta: decay in [0, 1).
        eps: > 0, added inside the square root.
    """

    name = "rmsprop"
    doc = "adaptive step without momentum: s·g divided by sqrt of the squared-drive average"
    position = 4
    PARAMS = {"s": S, "beta": BETA, "eps": EPS}
    blocks = ("rnn",)

    @property
    def mu(self) -> float:
        """RMSProp is Adam without momentum."""
        return 0.0

    def filter(self, block: str) -> Filter:
        """v_t = s·g_t (nothing carried)."""
        return Filter(scale=self.s)

    def normaliser(self) -> Normaliser:
        """m_t = beta·m_{t-1} + (1-beta)·g_t² ; drive = s·g_t / sqrt(m_t + eps)."""
        return Normaliser(self.beta, self.eps)
