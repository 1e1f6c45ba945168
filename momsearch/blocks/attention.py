"""Attention blocks: softmax or linear attention with a momentum rule on the state.

Linear attention, per head: φ(x) = elu(x) + 1, U_t = φ(k_t)v_tᵀ, z_t = z_{t−1} + φ(k_t),
y_t = φ(q_t)ᵀS_t / (φ(q_t)ᵀz_t + 1e-6); the rule acts on the numerator state S only, through its properties
(a linear filter of U_t accumulated into S, optionally normalised: see ``_attention_core.choose_attention_path``).
Training runs the exact recurrence in a chunked parallel form; :meth:`Attention.step` runs it one token at
a time. Bidirectional attention: every query reads the final state. Softmax attention is
``torch.nn.functional.scaled_dot_product_attention`` and takes ``plain`` only.

Padding (``padding_mask`` True = padding) is *skipped*: a padded step leaves every state (S, z, the
momentum states, the Nesterov counter) unchanged, so each sequence gives the outputs it would give with
its padding removed, wherever the padding is; bidirectional queries read the state after the last real
step. Outputs at padded positions are zero.

The modules themselves live in ``_attention_core`` (pure torch, shared with exported models); the classes
here add the argument checks: constructor arguments against the catalog, input shapes in ``forward``.
"""

from __future__ import annotations

import torch

from ..catalog.attention import PARAMS, RULES
from ..errors import ConfigError
from ..rules import Plain, Rule
from . import _attention_core as core
from ._attention_recurrent import LinearState, SoftmaxState


class Attention(core.Attention):
    """Multi-head softmax or linear attention with a momentum rule on the linear-attention state.

    Args:
        d_model: model width D.
        heads: number of heads H (must divide ``d_model``).
        kind: ``linear`` or ``softmax``.
        rule: a rule from :mod:`momsearch.rules` allowed for ``kind`` (softmax: ``Plain`` only); default Plain.
        causal: left-to-right (True) or bidirectional attention.
        chunk_size: chunk length of the parallel linear-attention form (does not change the result).
    """

    def __init__(self, d_model: int, heads: int, kind: str = "linear", rule: Rule | None = None,
                 causal: bool = True, chunk_size: int = 64):
        d_model = PARAMS["d_model"].check("d_model", d_model)
        heads = PARAMS["heads"].check("heads", heads)
        if d_model % heads:
            raise ConfigError(f"heads={heads}: must divide d_model={d_model}")
        kind = PARAMS["kind"].check("kind", kind)
        causal = PARAMS["causal"].check("causal", causal)
        chunk_size = PARAMS["chunk_size"].check("chunk_size", chunk_size)
        rule = _check_rule(Plain() if rule is None else rule, kind)
        super().__init__(d_model, heads, kind, rule, causal, chunk_size)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The base class's ``forward`` (same arguments and result: (B, T, d_model)), checked first.

        Raises:
            ConfigError: ``x`` is not (batch, time, d_model) or ``padding_mask`` not a (batch, time) bool tensor.
        """
        _check_sequence(x, self.d_model, padding_mask)
        return super().forward(x, padding_mask)

    def step(self, x: torch.Tensor, state: LinearState | SoftmaxState | None = None,
             padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, LinearState | SoftmaxState]:
        """The base class's ``step`` (one token (B, d_model) of causal attention), checked first.

        Raises:
            ConfigError: the attention is bidirectional, ``x`` is not (batch, d_model) or ``padding_mask``
                not a (batch,) bool tensor.
        """
        if not self.causal:
            raise ConfigError("step: needs a causal attention (causal=True); bidirectional queries read the "
                              "final state")
        if x.dim() != 2 or x.shape[1] != self.d_model:
            raise ConfigError(f"x: expected shape (batch, d_model={self.d_model}), got {tuple(x.shape)}")
        B = x.shape[0]
        if padding_mask is not None and (padding_mask.shape != (B,) or padding_mask.dtype != torch.bool):
            raise ConfigError(f"padding_mask: expected a bool tensor of shape ({B},), got "
                              f"{padding_mask.dtype} {tuple(padding_mask.shape)}")
        return super().step(x, state, padding_mask)


class TransformerEncoder(core.TransformerEncoder):
    """Pre-norm transformer encoder whose attention carries a momentum rule, with optional residual momentum.

    Each layer computes a = h + FFN(LN(x + h)), h = Dropout(Attention(LN(x))), FFN = Linear, GELU, Dropout,
    Linear, Dropout; the stream is updated by ``residual`` (``plain``: x + a; ``heavy_ball``/``adaptive``:
    v_l = mu_r·v_{l-1} + a_l ; x ← x + s_r·v_l, ``adaptive`` with a per-token mu_r). A final LayerNorm closes the stack.

    Args:
        d_model: model width.
        heads: attention heads (must divide ``d_model``).
        layers: number of layers.
        ffn: feed-forward width.
        kind: ``linear`` or ``softmax``.
        rule: rule of every layer's attention (default Plain).
        causal: causal or bidirectional attention.
        residual: ``plain``, ``heavy_ball`` or ``adaptive``.
        residual_mu: mu_r of ``heavy_ball`` residual momentum.
        residual_s: s_r of ``heavy_ball`` and ``adaptive`` residual momentum.
        dropout: dropout probability.
        chunk_size: chunk length of the parallel linear-attention form.
    """

    attention_class = Attention  # every layer's attention checks its arguments

    def __init__(self, d_model: int, heads: int, layers: int = 2, ffn: int = 128, kind: str = "linear",
                 rule: Rule | None = None, causal: bool = True, residual: str = "plain",
                 residual_mu: float = 0.6, residual_s: float = 1.0, dropout: float = 0.0, chunk_size: int = 64):
        layers = PARAMS["layers"].check("layers", layers)
        ffn = PARAMS["ffn"].check("ffn", ffn)
        dropout = PARAMS["dropout"].check("dropout", dropout)
        residual = PARAMS["residual"].check("residual", residual)
        residual_mu = PARAMS["residual_mu"].check("residual_mu", residual_mu)
        residual_s = PARAMS["residual_s"].check("residual_s", residual_s)
        super().__init__(d_model, heads, layers, ffn, kind, rule, causal, residual, residual_mu, residual_s,
                         dropout, chunk_size)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The base class's ``forward`` (same arguments and result: (B, T, d_model)), checked first.

        Raises:
            ConfigError: ``x`` is not (batch, time, d_model) or ``padding_mask`` not a (batch, time) bool tensor.
        """
        _check_sequence(x, self.d_model, padding_mask)
        return super().forward(x, padding_mask)


def _check_rule(rule: Rule, kind: str) -> Rule:
    """``rule`` if it is a rule object offered by the attention block; the core then checks what it does."""
    if not isinstance(rule, Rule):
        raise ConfigError(f"rule={rule!r}: expected a rule object from momsearch.rules (e.g. HeavyBall(mu=0.6))")
    if "attention" not in type(rule).blocks:
        raise ConfigError(f"rule={rule.name!r}: not offered by the attention block (kind={kind!r}); "
                          f"valid: {', '.join(RULES)}")
    return rule


def _check_sequence(x: torch.Tensor, d_model: int, padding_mask: torch.Tensor | None) -> tuple[int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != d_model:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"x: expected shape (batch, time, d_model={d_model}), got {shape}")
    B, T = x.shape[:2]
    if padding_mask is not None and (not isinstance(padding_mask, torch.Tensor)
                                     or padding_mask.shape != (B, T) or padding_mask.dtype != torch.bool):
        got = (f"{padding_mask.dtype} {tuple(padding_mask.shape)}" if isinstance(padding_mask, torch.Tensor)
               else type(padding_mask).__name__)
        raise ConfigError(f"padding_mask: expected a bool tensor of shape (batch={B}, time={T}), got {got}")
    return B, T
