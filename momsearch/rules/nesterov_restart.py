"""``nesterov_restart``: Nesterov momentum c_t = (k_t - 1)/(k_t + 2) with the counter k restarted every R steps."""

from dataclasses import dataclass

from .base import Rule


def nesterov_coefficient(step: int, restart_every: int) -> float:
    """c_t = (k_t - 1)/(k_t + 2), k_t = step mod R + 1 (R = 0: step + 1), for the 0-based global ``step``.

    Module level so an exported block carries this one definition (see ``momsearch.standalone._rule``).
    """
    k = step % restart_every + 1 if restart_every > 0 else step + 1
    return (k - 1) / (k + 2)


@dataclass(frozen=True)
class NesterovRestart(Rule):
    """Nesterov accelerated momentum with restart.

    Args:
        s: step size, > 0.
        restart_every: R >= 0; the counter runs k = 1, 2, ..., R, 1, 2, ... (R = 0: never restart).
    """

    s: float = 0.6
    restart_every: int = 10
    name = "nesterov_restart"

    def counter(self, step: int) -> int:
        """k_t for the 0-based global step index ``step`` (step 0 has k = 1)."""
        return step % self.restart_every + 1 if self.restart_every > 0 else step + 1

    def coefficient(self, step: int) -> float:
        """c_t = (k_t - 1) / (k_t + 2) for the 0-based global step index ``step``."""
        return nesterov_coefficient(step, self.restart_every)
