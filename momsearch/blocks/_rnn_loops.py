"""Custom recurrences for the paths without a fused kernel: a step loop with one ``W_hh h`` GEMM per step.

``recur`` runs a cell on the input term g_t = W_ih x_t + b_ih of one GEMM over all steps, turned into
the drive step by step (every rule of the orthogonal cell, adam's normalised drive included). The sequences
are split with ``unbind``
so that autograd gathers their gradients in one stack (indexing ``x[t]`` would allocate T full-size
gradients).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def modrelu(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """modReLU(z) = sign(z)·relu(|z| + b).

    Args:
        z: (B, H) pre-activation.
        bias: (H,) the modReLU bias.

    Returns:
        (B, H).
    """
    return torch.sign(z) * torch.relu(z.abs() + bias)  # (B, H)


def activate(cell: str, z: torch.Tensor, c: torch.Tensor | None, bias: torch.Tensor | None):
    """One step of ``lstm``, ``tanh`` or ``orthogonal`` from its full pre-activation.

    Args:
        cell: the cell name.
        z: (B, G) pre-activation (G = 4H for LSTM in gate order i, f, g, o; H otherwise).
        c: (B, H) LSTM cell state, else None.
        bias: (H,) modReLU bias of the orthogonal cell, else None.

    Returns:
        ``(h, c)``: the new hidden state (B, H) and LSTM cell state (None for the other cells).
    """
    if cell == "lstm":
        i, f, g, o = z.chunk(4, dim=1)  # (B, H) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "orthogonal":
        return modrelu(z, bias), None
    return torch.tanh(z), None


class AdamDrive:
    """The per-step ``adam``/``rmsprop`` drive: v = mu·v + s·g ; m = beta·m + (1-beta)·g² ; v/sqrt(m + eps).

    Computed step by step inside the recurrence, each step one autograd node with a hand-written backward
    (:class:`_AdamStep`): on (B, G) slices that stay in cache this is several times faster here than
    whole-sequence elementwise passes over (T, B, G), and about twice as fast as the same step left to
    autograd op by op.

    Args:
        mu, s: the filter's constant decay (0 when nothing is carried) and input scale.
        beta, eps: the normaliser's decay and the constant inside the square root.
        v: (B, G) momentum before the first step, None when mu = 0 (nothing to carry).
        m: (B, G) squared-drive average before the first step.
    """

    def __init__(self, mu: float, s: float, beta: float, eps: float, v: torch.Tensor | None, m: torch.Tensor):
        self.hyper = (mu, s, beta, eps)
        self.v, self.m = v, m

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """The drive (B, G) of a step with input term ``g`` (B, G); updates ``v`` and ``m``."""
        d, v, self.m = _AdamStep.apply(g, self.v, self.m, *self.hyper)  # (B, G) each
        if self.v is not None:
            self.v = v
        return d


class _AdamStep(torch.autograd.Function):
    """One adam step (g, v, m) -> (drive, v', m') with its backward written out (v None: mu = 0)."""

    @staticmethod
    def forward(ctx, g, v, m, mu, s, beta, eps):
        v_new = g * s if v is None else torch.add(v * mu, g, alpha=s)  # (B, G)
        m_new = torch.addcmul(m * beta, g, g, value=1.0 - beta)  # (B, G)
        m_eps = m_new + eps  # (B, G)
        d = v_new / m_eps.sqrt()  # (B, G)
        ctx.save_for_backward(g, d, m_eps)
        ctx.hyper, ctx.has_v = (mu, s, beta), v is not None
        return d, v_new, m_new

    @staticmethod
    def backward(ctx, dd, dv_out, dm_out):
        g, d, m_eps = ctx.saved_tensors
        mu, s, beta = ctx.hyper
        dd = torch.zeros_like(g) if dd is None else dd
        dv = dd / m_eps.sqrt() if dv_out is None else torch.add(dv_out, dd / m_eps.sqrt())  # (B, G) dL/dv'
        dm = dd * d / m_eps * -0.5  # (B, G) dL/dm' through the drive
        dm = dm if dm_out is None else dm + dm_out
        dg = torch.addcmul(dv * s, g, dm, value=2.0 * (1.0 - beta))  # (B, G)
        return dg, dv * mu if ctx.has_v else None, dm * beta, None, None, None, None


def recur(cell: str, g: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, w_hh: torch.Tensor,
          b_hh: torch.Tensor | None, bias: torch.Tensor | None = None, drive: Callable | None = None):
    """Run ``cell`` with pre-activation drive_t + W_hh h_{t-1} + b_hh, drive_t = ``drive(g_t)``.

    GRU follows torch: r, z = sigmoid(drive + W_hh h + b_hh) on the first 2H rows and
    n = tanh(drive_n + r·(W_hn h + b_hn)), h = (1 − z)·n + z·h.

    Args:
        cell: ``lstm``, ``gru``, ``tanh`` or ``orthogonal``.
        g: (T, B, G) the input term of every step (W_ih x_t + b_ih).
        h: (B, H) initial hidden state.
        c: (B, H) initial LSTM cell state, else None.
        w_hh: (G, H) recurrent weight.
        b_hh: (G,) recurrent bias, None for the orthogonal cell.
        bias: (H,) modReLU bias of the orthogonal cell.
        drive: per-step map g_t -> drive_t (e.g. :class:`AdamDrive`); None: drive_t = g_t.

    Returns:
        ``(out, h, c)``: outputs (T, B, H), final hidden state (B, H), final LSTM cell state or None.
    """
    w = w_hh.t()  # (H, G)
    outs = []
    H = h.shape[-1]
    for g_t in g.unbind(0):
        d = g_t if drive is None else drive(g_t)  # (B, G)
        if cell == "gru":
            hh = torch.addmm(b_hh, h, w)  # (B, 3H)
            r, z = torch.sigmoid(d[:, : 2 * H] + hh[:, : 2 * H]).chunk(2, dim=1)  # (B, H) each
            n = torch.tanh(torch.addcmul(d[:, 2 * H:], r, hh[:, 2 * H:]))  # (B, H)
            h = torch.addcmul(n, z, h - n)  # (B, H)
        else:
            pre = torch.addmm(d, h, w) if b_hh is None else torch.addmm(d + b_hh, h, w)  # (B, G)
            h, c = activate(cell, pre, c, bias)  # (B, H)
        outs.append(h)
    return torch.stack(outs), h, c
