"""The fused torch LSTM/GRU/RNN kernels called with given weights, through the public ``torch.func`` API.

A *kernel* is a parameter-less single-layer ``nn.LSTM``/``nn.GRU``/``nn.RNN`` on the meta device;
``torch.func.functional_call`` runs it with the caller's tensors, so gradients flow to them.
"""

from __future__ import annotations

import torch
from torch import nn

FUSED_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "tanh": nn.RNN}


def kernel(cell: str, input_size: int, hidden_size: int) -> nn.Module:
    """A weightless single-layer, time-major torch module for ``cell`` (``lstm``, ``gru`` or ``tanh``).

    Args:
        cell: the cell name, a key of :data:`FUSED_CELLS`.
        input_size: features per step.
        hidden_size: hidden units.

    Returns:
        The module on the meta device (its own parameters are never used).
    """
    return FUSED_CELLS[cell](input_size, hidden_size, device="meta")


def run(module: nn.Module, x: torch.Tensor, hx, w_ih: torch.Tensor, w_hh: torch.Tensor,
        b_ih: torch.Tensor, b_hh: torch.Tensor):
    """Run a :func:`kernel` on ``x`` with the given weights.

    Args:
        module: from :func:`kernel`.
        x: (T, B, I) time-major input.
        hx: (1, B, H) initial hidden state, or the ``(h, c)`` pair for LSTM.
        w_ih, w_hh, b_ih, b_hh: (G, I), (G, H), (G,), (G,) weights in torch's layout.

    Returns:
        The module's ``(output (T, B, H), h_n)`` (``h_n`` is ``(h, c)`` for LSTM).
    """
    weights = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
    return torch.func.functional_call(module, weights, (x, hx))
