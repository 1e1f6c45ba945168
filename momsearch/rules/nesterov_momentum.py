"""``nesterov_momentum``: classic Nesterov momentum as ``torch.optim.SGD(nesterov=True)`` applies it.

    v_t = mu·v_{t-1} + s·g_t ;  drive_t = mu·v_t + s·g_t

(SGD's buf = momentum·buf + grad ; step along grad + momentum·buf, with the step size s on the driving term.)
RNN: g_t is the cell's driving term W_ih x_t + b_ih (every cell runs it on the fused kernels, as a filtered
input). Attention: g_t = U_t, S_t = S_{t-1} + mu·p_t + s·U_t with p the momentum of U (exact in the chunked
parallel form, causal and bidirectional). Not offered for ODE blocks (no published continuous form).
"""

from .base import MU, Filter, Rule, S


class NesterovMomentum(Rule):
    """Nesterov momentum with a constant coefficient (the look-ahead of ``torch.optim.SGD(nesterov=True)``).

    Args:
        mu: momentum coefficient in [0, 1).
        s: step size, > 0.
    """

    name = "nesterov_momentum"
    doc = "classic Nesterov momentum (torch.optim.SGD(nesterov=True)): v = mu·v + s·g, drive mu·v + s·g"
    position = 5
    PARAMS = {"mu": MU, "s": S}

    def filter(self, block: str) -> Filter:
        """v_t = mu·v_{t-1} + s·g_t ; out_t = mu·v_t + s·g_t."""
        return Filter(scale=self.s, decay=self.mu, gain=self.mu, direct=self.s)
