"""Custom recurrences for the paths without a fused kernel: a step loop with one ``W_hh h`` GEMM per step.

``recur`` runs a cell on a precomputed drive (adam/rmsprop, and every rule of the orthogonal cell);
``recur_nesterov`` runs LSTM/tanh ``nesterov_restart``, whose momentum acts on the whole pre-activation
and only needs the previous step's ``y_{t-1}`` (DESIGN §3.1). The sequences are split with ``unbind``
so that autograd gathers their gradients in one stack (indexing ``x[t]`` would allocate T full-size
gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def recur(cell: str, drive: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, w_hh: torch.Tensor,
          b_hh: torch.Tensor | None, bias: torch.Tensor | None = None):
    """Run ``cell`` over a precomputed drive: pre-activation = drive_t + W_hh h_{t-1} + b_hh.

    GRU follows torch: r, z = sigmoid(drive + W_hh h + b_hh) on the first 2H rows and
    n = tanh(drive_n + r·(W_hn h + b_hn)), h = (1 − z)·n + z·h.

    Args:
        cell: ``lstm``, ``gru``, ``tanh`` or ``orthogonal``.
        drive: (T, B, G) the driving term of every step.
        h: (B, H) initial hidden state.
        c: (B, H) initial LSTM cell state, else None.
        w_hh: (G, H) recurrent weight.
        b_hh: (G,) recurrent bias, None for the orthogonal cell.
        bias: (H,) modReLU bias of the orthogonal cell.

    Returns:
        ``(out, h, c)``: outputs (T, B, H), final hidden state (B, H), final LSTM cell state or None.
    """
    w = w_hh.t()  # (H, G)
    outs = []
    if cell == "gru":
        H = h.shape[-1]
        rz_in = drive[..., : 2 * H] + b_hh[: 2 * H]  # (T, B, 2H)
        for rz_t, n_t in zip(rz_in.unbind(0), drive[..., 2 * H:].unbind(0), strict=True):
            hh = h @ w  # (B, 3H)
            r, z = torch.sigmoid(rz_t + hh[:, : 2 * H]).chunk(2, dim=1)  # (B, H) each
            n = torch.tanh(torch.addcmul(n_t, r, hh[:, 2 * H:] + b_hh[2 * H:]))  # (B, H)
            h = torch.addcmul(n, z, h - n)  # (B, H)
            outs.append(h)
        return torch.stack(outs), h, c
    pre = drive if b_hh is None else drive + b_hh  # (T, B, G)
    for p in pre.unbind(0):
        h, c = activate(cell, torch.addmm(p, h, w), c, bias)  # (B, H)
        outs.append(h)
    return torch.stack(outs), h, c


def recur_nesterov(cell: str, u: torch.Tensor, coeff: Sequence[float], h: torch.Tensor,
                   c: torch.Tensor | None, y: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor):
    """LSTM/tanh ``nesterov_restart``: y_t = W_hh h_{t-1} + b_hh + u_t ; z_t = y_t + c_t·(y_t − y_{t-1}).

    Args:
        cell: ``lstm`` or ``tanh``.
        u: (T, B, G) u_t = −s·g_t.
        coeff: the T Nesterov coefficients c_t.
        h: (B, H) initial hidden state.
        c: (B, H) initial LSTM cell state, else None.
        y: (B, G) the previous pre-activation y_{t-1} (zeros at the start of a sequence).
        w_hh: (G, H) recurrent weight.
        b_hh: (G,) recurrent bias.

    Returns:
        ``(out, h, c, y)``: outputs (T, B, H), final h, final LSTM cell state or None, final y (B, G).
    """
    w = w_hh.t()  # (H, G)
    outs = []
    for p, ct in zip((u + b_hh).unbind(0), coeff, strict=True):
        y_new = torch.addmm(p, h, w)  # (B, G)
        z = torch.add(y_new, y_new - y, alpha=ct) if ct else y_new  # (B, G)
        h, c = activate(cell, z, c, None)  # (B, H)
        y = y_new
        outs.append(h)
    return torch.stack(outs), h, c, y
