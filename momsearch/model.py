"""The searched model: input head -> block -> output head, with the readout the task needs.

A task says what its input is (``sequence`` (B, T, I) floats, ``tokens`` (B, T) ids, ``static`` (B, I))
and what it predicts (``last``: one output per sequence, ``every``: one per step, ``static``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ConfigError

INPUTS = ("sequence", "tokens", "static")
TARGETS = ("last", "every", "static")


class SinusoidalPositions(nn.Module):
    """Adds the fixed sinusoidal position code of "Attention is all you need" (no parameters, any length)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, d = x.shape[1], self.d_model
        pos = torch.arange(T, device=x.device, dtype=x.dtype)[:, None]  # (T, 1)
        freq = torch.exp(torch.arange(0, d, 2, device=x.device, dtype=x.dtype) * (-math.log(10000.0) / d))
        angle = pos * freq  # (T, ceil(d/2))
        code = torch.zeros(T, d, device=x.device, dtype=x.dtype)  # (T, d)
        code[:, 0::2] = torch.sin(angle)
        code[:, 1::2] = torch.cos(angle[:, : d // 2])
        return x + code  # (B, T, d)


class Model(nn.Module):
    """A block between an input head and a linear output head.

    Args:
        block: the searched block; ``block(x)`` maps (B, T, block_input) or (B, block_input) to features.
        input_head: module from the task's input to the block's input (``nn.Identity`` when sizes agree).
        output_size: outputs per prediction (classes, or regression targets).
        features: feature size the block produces.
        input: ``sequence``, ``tokens`` or ``static``.
        target: ``last``, ``every`` or ``static``.
        sequence_block: whether the block consumes sequences (static inputs become length-1 sequences).
        uses_times: whether the block takes observation times (``block(x, times)``).
    """

    def __init__(self, block: nn.Module, input_head: nn.Module, output_size: int, features: int,
                 input: str = "sequence", target: str = "last", sequence_block: bool = True,
                 uses_times: bool = False):
        super().__init__()
        if input not in INPUTS:
            raise ConfigError(f"input={input!r}: must be one of {', '.join(INPUTS)}")
        if target not in TARGETS:
            raise ConfigError(f"target={target!r}: must be one of {', '.join(TARGETS)}")
        self.input_head = input_head
        self.block = block
        self.output_head = nn.Linear(features, output_size)
        self.input, self.target = input, target
        self.sequence_block, self.uses_times = sequence_block, uses_times

    def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Predict from ``x``: (B, T, I) / (B, T) tokens / (B, I); ``times`` (B, T) for irregular sequences.

        Returns:
            (B, O) for ``last``/``static`` targets, (B, T, O) for ``every``.
        """
        h = self.input_head(x)  # (B, T, E) or (B, E)
        static_input = h.dim() == 2
        if self.sequence_block and static_input:
            h = h.unsqueeze(1)  # (B, 1, E)
        if self.uses_times:
            h = self.block(h, times)
        else:
            h = self.block(h)
        if isinstance(h, tuple):
            h = h[0]  # (output, state) of recurrent blocks
        if self.target == "every":
            return self.output_head(h)  # (B, T, O)
        if h.dim() == 3:
            h = h[:, -1]  # (B, F) last step
        return self.output_head(h)  # (B, O)
