"""The attention blocks of an exported model: the library's attention kernels without the argument checks.

Linear attention runs the exact chunked parallel form of the rule's recurrence on the numerator state;
softmax attention is ``torch.nn.functional.scaled_dot_product_attention``. The encoder is pre-norm, with
optional momentum on the residual stream across layers (DESIGN §3.3).
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks._attention_adam import adam_attention
from ..blocks._attention_linear import linear_attention
from ..blocks._attention_residual import residual_update
from ..blocks.attention import _softmax, feature_map


class Attention(nn.Module):
    """Multi-head softmax or linear attention with a momentum rule on the linear-attention state.

    Args:
        d_model: model width D.
        heads: attention heads H.
        kind: ``linear`` or ``softmax``.
        rule: the :class:`Rule` (softmax: ``plain``).
        causal: left-to-right (True) or bidirectional attention.
        chunk_size: chunk length of the parallel linear-attention form (does not change the result).
    """

    def __init__(self, d_model: int, heads: int, kind: str, rule, causal: bool, chunk_size: int):
        super().__init__()
        self.d_model, self.heads, self.kind, self.rule = d_model, heads, kind, rule
        self.causal, self.chunk_size = causal, chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
        if self.kind == "softmax":
            y = _softmax(q, k, v, self.causal, None)  # (B, H, T, dh)
        else:
            core = adam_attention if self.rule.name == "adam" else linear_attention
            y = core(feature_map(q), feature_map(k), v, self.rule, self.causal, self.chunk_size)  # (B, H, T, dh)
        return self.out(y.transpose(1, 2).reshape(B, T, self.d_model))  # (B, T, D)


class EncoderLayer(nn.Module):
    """One pre-norm layer; returns its update a = h + FFN(LN(x + h)), h = Dropout(Attention(LN(x)))."""

    def __init__(self, attention: Attention, ffn: int, dropout: float):
        super().__init__()
        d = attention.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attention = attention
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d),
                                 nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.attention(self.norm1(x)))  # (B, T, D)
        return h + self.ffn(self.norm2(x + h))  # (B, T, D)


class TransformerEncoder(nn.Module):
    """Pre-norm encoder whose attention carries the rule, with ``residual`` momentum and a final LayerNorm.

    Args:
        d_model, heads, kind, rule, causal, chunk_size: as for :class:`Attention`.
        layers: number of layers; ffn: feed-forward width; dropout: dropout probability.
        residual: ``plain``, ``heavy_ball`` or ``adaptive``; residual_mu, residual_s: its coefficients.
    """

    def __init__(self, d_model: int, heads: int, layers: int, ffn: int, kind: str, rule, causal: bool,
                 residual: str, residual_mu: float, residual_s: float, dropout: float, chunk_size: int):
        super().__init__()
        self.residual, self.residual_mu, self.residual_s = residual, residual_mu, residual_s
        self.layers = nn.ModuleList(
            EncoderLayer(Attention(d_model, heads, kind, rule, causal, chunk_size), ffn, dropout)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        velocity = update = None
        for layer in self.layers:
            a = layer(x)  # (B, T, D)
            x, velocity = residual_update(self.residual, x, a, velocity, update, self.residual_mu,
                                          self.residual_s)
            update = a
        return self.norm(x)  # (B, T, D)
