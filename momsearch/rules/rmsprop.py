"""``rmsprop``: ``adam`` with mu = 0."""

from dataclasses import dataclass

from .base import Rule


@dataclass(frozen=True)
class RMSProp(Rule):
    """RMSProp-style adaptive step: drive = s·g_t / sqrt(m_t + eps), m_t = beta·m + (1-beta)·g².

    Args:
        s: step size, > 0.
        beta: decay in [0, 1).
        eps: > 0, added inside the square root.
    """

    s: float = 0.6
    beta: float = 0.999
    eps: float = 1e-16
    name = "rmsprop"

    @property
    def mu(self) -> float:
        """RMSProp is Adam without momentum."""
        return 0.0
