"""Attention blocks: softmax or linear attention with a momentum rule on the state (DESIGN §3.3).

Linear attention, per head: φ(x) = elu(x) + 1, U_t = φ(k_t)v_tᵀ, z_t = z_{t−1} + φ(k_t),
y_t = φ(q_t)ᵀS_t / (φ(q_t)ᵀz_t + 1e-6); the rule (``plain``, ``heavy_ball``, ``nesterov_restart``, ``adam``)
acts on the numerator state S only (``nesterov_restart`` starts from G_0 = S_0 = 0). Training runs the
exact recurrence in a chunked parallel form; :meth:`Attention.step` runs it one token at a time.
Bidirectional attention: every query reads the final state. Softmax attention is
``torch.nn.functional.scaled_dot_product_attention`` and takes ``plain`` only.

Padding (``padding_mask`` True = padding) is *skipped*: a padded step leaves every state (S, z, the
momentum states, the Nesterov counter) unchanged, so each sequence gives the outputs it would give with
its padding removed, wherever the padding is; bidirectional queries read the state after the last real
step. Outputs at padded positions are zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..catalog import allowed_rules
from ..catalog.attention import PARAMS
from ..errors import ConfigError
from ..rules import Plain, Rule
from ._attention_adam import adam_attention
from ._attention_linear import linear_attention
from ._attention_recurrent import LinearState, SoftmaxState, linear_initial, linear_step, softmax_step
from ._attention_residual import residual_update


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = elu(x) + 1 (positive features of linear attention)."""
    return F.elu(x).add_(1)


class Attention(nn.Module):
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
        super().__init__()
        self.d_model = PARAMS["d_model"].check("d_model", d_model)
        self.heads = PARAMS["heads"].check("heads", heads)
        if self.d_model % self.heads:
            raise ConfigError(f"heads={heads}: must divide d_model={d_model}")
        self.kind = PARAMS["kind"].check("kind", kind)
        self.causal = PARAMS["causal"].check("causal", causal)
        self.chunk_size = PARAMS["chunk_size"].check("chunk_size", chunk_size)
        self.rule = _check_rule(Plain() if rule is None else rule, self.kind)
        self.qkv = nn.Linear(self.d_model, 3 * self.d_model)
        self.out = nn.Linear(self.d_model, self.d_model)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, heads={self.heads}, rule={self.rule}, causal={self.causal}"

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over a batch of sequences.

        Args:
            x: (B, T, d_model).
            padding_mask: (B, T) bool, True at padded steps; None: no padding.

        Returns:
            (B, T, d_model); zero at padded steps.
        """
        B, T = _check_sequence(x, self.d_model, padding_mask)
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
        y = self.attend(q, k, v, padding_mask)  # (B, H, T, dh)
        y = self.out(y.transpose(1, 2).reshape(B, T, self.d_model))  # (B, T, D)
        return y if padding_mask is None else y.masked_fill(padding_mask[..., None], 0.0)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention itself, on per-head projections (no input or output projection).

        Args:
            q, k, v: (B, H, T, dh).
            padding_mask: (B, T) bool, True at padded steps, or None.

        Returns:
            (B, H, T, dh); zero at padded steps.
        """
        if self.kind == "softmax":
            return _softmax(q, k, v, self.causal, padding_mask)
        order = None
        keep = None
        if padding_mask is not None:
            # real steps first, in order: skipping padded steps == running on the compacted sequence
            order = torch.argsort(padding_mask.to(torch.uint8), dim=1, stable=True)  # (B, T)
            keep = ~padding_mask.gather(1, order)  # (B, T)
            q, k, v = (_gather_steps(x, order) for x in (q, k, v))  # (B, H, T, dh)
        fq, fk = feature_map(q), feature_map(k)  # (B, H, T, dh)
        lengths = None
        if keep is not None:
            fk = fk * keep[:, None, :, None]  # (B, H, T, dh) padded keys contribute nothing
            lengths = keep.sum(dim=1)  # (B,)
        core = adam_attention if self.rule.name == "adam" else linear_attention
        y = core(fq, fk, v, self.rule, self.causal, self.chunk_size, lengths)  # (B, H, T, dh)
        if order is None:
            return y
        y = y.masked_fill(~keep[:, None, :, None], 0.0)  # (B, H, T, dh)
        return torch.empty_like(y).scatter(2, order[:, None, :, None].expand_as(y), y)  # original order

    def step(self, x: torch.Tensor, state: LinearState | SoftmaxState | None = None,
             padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, LinearState | SoftmaxState]:
        """One token of causal attention (generation); matches :meth:`forward` step by step.

        Args:
            x: (B, d_model) the token.
            state: the state returned by the previous call, or None at the start.
            padding_mask: (B,) bool, True where this token is padding (the state passes through unchanged).

        Returns:
            (B, d_model) output and the new state (``LinearState`` or, for softmax, a key/value cache).
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
        keep = torch.ones(B, dtype=torch.bool, device=x.device) if padding_mask is None else ~padding_mask
        q, k, v = self.qkv(x).view(B, 3, self.heads, -1).unbind(1)  # 3 x (B, H, dh)
        if self.kind == "softmax":
            y, state = softmax_step(q, k, v, keep, state)  # (B, H, dh)
        else:
            fq, fk = feature_map(q), feature_map(k) * keep[:, None, None]  # (B, H, dh)
            if state is None:
                state = linear_initial(self.rule, fq, v)
            y, state = linear_step(self.rule, fq, fk, v, keep, state)  # (B, H, dh)
        y = self.out(y.reshape(B, self.d_model))  # (B, D)
        return y.masked_fill(~keep[:, None], 0.0), state


class TransformerEncoder(nn.Module):
    """Pre-norm transformer encoder whose attention carries a momentum rule, with optional residual momentum.

    Each layer computes a = h + FFN(LN(x + h)), h = Dropout(Attention(LN(x))), FFN = Linear, GELU, Dropout,
    Linear, Dropout; the stream is updated by ``residual`` (``plain``: x + a; ``heavy_ball``/``adaptive``:
    see DESIGN §3.3). A final LayerNorm closes the stack.

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

    def __init__(self, d_model: int, heads: int, layers: int = 2, ffn: int = 128, kind: str = "linear",
                 rule: Rule | None = None, causal: bool = True, residual: str = "plain",
                 residual_mu: float = 0.6, residual_s: float = 1.0, dropout: float = 0.0, chunk_size: int = 64):
        super().__init__()
        n_layers = PARAMS["layers"].check("layers", layers)
        ffn = PARAMS["ffn"].check("ffn", ffn)
        dropout = PARAMS["dropout"].check("dropout", dropout)
        self.residual = PARAMS["residual"].check("residual", residual)
        self.residual_mu = PARAMS["residual_mu"].check("residual_mu", residual_mu)
        self.residual_s = PARAMS["residual_s"].check("residual_s", residual_s)
        self.layers = nn.ModuleList(
            _EncoderLayer(Attention(d_model, heads, kind, rule, causal, chunk_size), ffn, dropout)
            for _ in range(n_layers)
        )
        self.d_model = self.layers[0].attention.d_model
        self.norm = nn.LayerNorm(self.d_model)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``x`` (B, T, d_model); ``padding_mask`` (B, T) bool, True at padded steps.

        Returns:
            (B, T, d_model).
        """
        _check_sequence(x, self.d_model, padding_mask)
        velocity = update = None
        for layer in self.layers:
            a = layer(x, padding_mask)  # (B, T, D)
            x, velocity = residual_update(self.residual, x, a, velocity, update, self.residual_mu,
                                          self.residual_s)
            update = a
        return self.norm(x)  # (B, T, D)


class _EncoderLayer(nn.Module):
    """One pre-norm layer; returns its update a (attention branch + feed-forward branch), not x + a."""

    def __init__(self, attention: Attention, ffn: int, dropout: float):
        super().__init__()
        d = attention.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attention = attention
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d),
                                 nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.dropout(self.attention(self.norm1(x), padding_mask))  # (B, T, D)
        return h + self.ffn(self.norm2(x + h))  # (B, T, D)


def _check_rule(rule: Rule, kind: str) -> Rule:
    if not isinstance(rule, Rule):
        raise ConfigError(f"rule={rule!r}: expected a rule object from momsearch.rules (e.g. HeavyBall(mu=0.6))")
    allowed = allowed_rules("attention", {"kind": kind})
    if rule.name not in allowed:
        only = " (softmax attention takes rule plain only)" if kind == "softmax" else ""
        raise ConfigError(f"rule={rule.name!r}: not allowed with kind={kind!r}{only}; valid: {', '.join(allowed)}")
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


def _gather_steps(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, f) reordered along time by ``order`` (B, T)."""
    return x.gather(2, order[:, None, :, None].expand_as(x))


def _softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
             padding_mask: torch.Tensor | None) -> torch.Tensor:
    """scaled_dot_product_attention; padded keys are never attended to, padded queries give zero."""
    if padding_mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, dh)
    T = q.shape[2]
    eye = torch.eye(T, dtype=torch.bool, device=q.device)  # (T, T)
    visible = ~padding_mask[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        visible = visible & torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # (B, 1, T, T)
    visible = visible | eye  # a padded query sees itself, so no row is empty (its output is zeroed)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)  # (B, H, T, dh)
    return y.masked_fill(padding_mask[:, None, :, None], 0.0)
