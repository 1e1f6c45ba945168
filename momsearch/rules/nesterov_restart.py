"""``nesterov_restart``: Nesterov momentum c_t = (k_t - 1)/(k_t + 2) with the counter k restarted every R steps."""

from ..catalog.params import Param
from .base import Filter, Rule, S


def nesterov_coefficient(step, restart_every: int):
    """c_t = (k_t - 1)/(k_t + 2), k_t = step mod R + 1 (R = 0: step + 1), for the 0-based global ``step``.

    ``step`` is an int, or a float tensor of steps (then the result is a tensor).
    """
    k = step % restart_every + 1 if restart_every > 0 else step + 1
    return (k - 1) / (k + 2)


class NesterovRestart(Rule):
    """Nesterov accelerated momentum with restart.

    RNN, GRU and orthogonal cells: v_t = c_t·v_{t-1} + s·g_t ; drive = v_t. LSTM and tanh cells: the whole
    pre-activation carries the momentum, y_t = W_hh h_{t-1} + b_hh − s·g_t ; z_t = y_t + c_t·(y_t − y_{t-1}).
    Attention: G_t = S_{t-1} + s·U_t ; S_t = G_t + c_t·(G_t − G_{t-1}) (G_0 = S_0 = 0), i.e. with
    Δ_t = G_t − G_{t-1}: Δ_t = c_{t-1}·Δ_{t-1} + s·U_t, S_t = G_t + c_t·Δ_t.

    Args:
        s: step size, > 0.
        restart_every: R >= 0; the counter runs k = 1, 2, ..., R, 1, 2, ... (R = 0: never restart).
    """

    name = "nesterov_restart"
    doc = "Nesterov momentum c_t = (k-1)/(k+2), counter k restarted every R steps"
    position = 2
    PARAMS = {"s": S, "restart_every": Param("int", 10, "restart the Nesterov counter every R steps (0: never)",
                                             low=0)}
    preactivation_cells = ("lstm", "tanh")

    def counter(self, step: int) -> int:
        """k_t for the 0-based global step index ``step`` (step 0 has k = 1)."""
        return step % self.restart_every + 1 if self.restart_every > 0 else step + 1

    def coefficient(self, step):
        """c_t = (k_t - 1) / (k_t + 2) for the 0-based global step index ``step`` (int or float tensor)."""
        return nesterov_coefficient(step, self.restart_every)

    def previous_coefficient(self, step):
        """c_{t-1}, and 0 at step 0 (the decay of Δ in the attention form)."""
        return nesterov_coefficient(step - 1, self.restart_every) * (step > 0) + 0.0  # + 0.0: no -0.0 at step 0

    def filter(self, block: str) -> Filter:
        """RNN: decay c_t; attention: decay c_{t-1} with look-ahead c_t."""
        if block == "attention":
            return Filter(scale=self.s, varying=self.previous_coefficient, lookahead=self.coefficient)
        return Filter(scale=self.s, varying=self.coefficient)
