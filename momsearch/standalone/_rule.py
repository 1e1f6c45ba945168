"""The update rule of an exported discrete block: its name and hyperparameters, read by the block's kernels.

The library's rule classes (``momsearch.rules``) check their arguments against the catalog; the exported
module carries the one rule the search chose, as plain values (DESIGN §3.1, §3.3).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A discrete update rule: ``plain``, ``heavy_ball``, ``nesterov_restart``, ``adam`` or ``rmsprop``.

    Args:
        name: the rule.
        mu: momentum coefficient (``heavy_ball``, ``adam``; 0 for ``rmsprop``).
        s: step size on the driving term.
        beta: decay of the squared-drive average (``adam``, ``rmsprop``).
        eps: added inside the square root (``adam``, ``rmsprop``).
        restart_every: Nesterov restart period R (0: never restart).
    """

    name: str = "plain"
    mu: float = 0.0
    s: float = 1.0
    beta: float = 0.0
    eps: float = 0.0
    restart_every: int = 0

    def coefficient(self, step: int) -> float:
        """Nesterov's c_t = (k_t - 1)/(k_t + 2), k_t = step mod R + 1 (R = 0: step + 1), 0-based ``step``."""
        k = step % self.restart_every + 1 if self.restart_every > 0 else step + 1
        return (k - 1) / (k + 2)
