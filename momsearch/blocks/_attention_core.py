"""The attention modules themselves, in pure torch: the one implementation the library and exports share.

Linear attention, per head: φ(x) = elu(x) + 1, U_t = φ(k_t)v_tᵀ, z_t = z_{t−1} + φ(k_t),
y_t = φ(q_t)ᵀS_t / (φ(q_t)ᵀz_t + 1e-6); the rule acts on the numerator state S only, as its properties say
(:func:`choose_attention_path`: a linear filter of U_t accumulated into S, optionally normalised; never its
name). Training runs the exact recurrence in a chunked parallel form; :meth:`Attention.step` runs it one
token at a time. Bidirectional attention: every query reads the final state. Softmax attention is
``torch.nn.functional.scaled_dot_product_attention``.

Padding (``padding_mask`` True = padding) is *skipped*: a padded step leaves every state unchanged, so each
sequence gives the outputs it would give with its padding removed; outputs at padded positions are zero.

Arguments are not checked here beyond what :func:`choose_attention_path` needs; ``momsearch.blocks.attention`` adds
the checks; exported modules embed this code as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._attention_adam import adam_attention
from ._attention_linear import linear_attention
from ._attention_recurrent import LinearState, SoftmaxState, linear_initial, linear_step, softmax_step
from ._attention_residual import residual_update

if TYPE_CHECKING:  # annotations only: the rule is read by attribute, exports embed their own Rule
    from ..rules import Rule


def choose_attention_path(rule: Rule, kind: str) -> str:
    """The path that runs ``rule`` in attention of ``kind``: ``softmax``, ``linear`` or ``normalised``.

    Raises:
        ConfigError: the rule's attention properties are not ones a path runs: softmax takes only the
            identity filter; linear attention needs a linear filter, and a normalised one a constant decay
            with the momentum as output and no look-ahead.
    """
    filt, norm = rule.filter("attention"), rule.normaliser()

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"rule={rule.name!r} cannot run in the attention block (kind={kind!r}): {why}")

    if filt is None:
        raise refuse("it is not a linear filter of the state update (rule.filter('attention') is None)")
    if kind == "softmax":
        if norm is not None or not filt.identity:
            raise refuse("softmax attention has no state for a rule to act on (plain only)")
        return "softmax"
    if norm is not None:
        if not filt.constant or not filt.outputs_momentum:
            raise refuse("a normalised update needs a constant decay, no look-ahead and drive = p_t")
        return "normalised"
    return "linear"


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = elu(x) + 1 (positive features of linear attention)."""
    return F.elu(x).add_(1)


class Attention(nn.Module):
    """Multi-head softmax or linear attention with a momentum rule on the linear-attention state.

    Args:
        d_model: model width D.
        heads: number of heads H (divides ``d_model``).
        kind: ``linear`` or ``softmax``.
        rule: the rule (softmax: ``plain``).
        causal: left-to-right (True) or bidirectional attention.
        chunk_size: chunk length of the parallel linear-attention form (does not change the result).
    """

    def __init__(self, d_model: int, heads: int, kind: str, rule: Rule, causal: bool, chunk_size: int):
        super().__init__()
        self.d_model, self.heads, self.kind, self.rule = d_model, heads, kind, rule
        self.causal, self.chunk_size = causal, chunk_size
        self.path = choose_attention_path(rule, kind)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

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
        B, T, _ = x.shape
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
            return softmax_attention(q, k, v, self.causal, padding_mask)
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
        core = adam_attention if self.path == "normalised" else linear_attention
        y = core(fq, fk, v, self.rule, self.causal, self.chunk_size, lengths)  # (B, H, T, dh)
        if order is None:
            return y
        y = y.masked_fill(~keep[:, None, :, None], 0.0)  # (B, H, T, dh)
        return torch.empty_like(y).scatter(2, order[:, None, :, None].expand_as(y), y)  # original order

    def step(self, x: torch.Tensor, state: LinearState | SoftmaxState | None = None,
             padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, LinearState | SoftmaxState]:
        """One token of causal attention (generation); matches :meth:`forward` step by step (causal only).

        Args:
            x: (B, d_model) the token.
            state: the state returned by the previous call, or None at the start.
            padding_mask: (B,) bool, True where this token is padding (the state passes through unchanged).

        Returns:
            (B, d_model) output and the new state (``LinearState`` or, for softmax, a key/value cache).
        """
        B = x.shape[0]
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
    v_l = mu_r·v_{l-1} + a_l ; x ← x + s_r·v_l, ``adaptive`` with a per-token mu_r). A final LayerNorm closes the stack.

    Args:
        d_model, heads, kind, rule, causal, chunk_size: as for :class:`Attention`.
        layers: number of layers.
        ffn: feed-forward width.
        residual: ``plain``, ``heavy_ball`` or ``adaptive``.
        residual_mu: mu_r of ``heavy_ball`` residual momentum.
        residual_s: s_r of ``heavy_ball`` and ``adaptive`` residual momentum.
        dropout: dropout probability.
    """

    attention_class = Attention  # what each layer's attention is built with

    def __init__(self, d_model: int, heads: int, layers: int, ffn: int, kind: str, rule: Rule, causal: bool,
                 residual: str, residual_mu: float, residual_s: float, dropout: float, chunk_size: int):
        super().__init__()
        self.residual, self.residual_mu, self.residual_s = residual, residual_mu, residual_s
        self.layers = nn.ModuleList(
            EncoderLayer(self.attention_class(d_model, heads, kind, rule, causal, chunk_size), ffn, dropout)
            for _ in range(layers)
        )
        self.d_model = self.layers[0].attention.d_model
        self.norm = nn.LayerNorm(self.d_model)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``x`` (B, T, d_model); ``padding_mask`` (B, T) bool, True at padded steps.

        Returns:
            (B, T, d_model).
        """
        velocity = update = None
        for layer in self.layers:
            a = layer(x, padding_mask)  # (B, T, D)
            x, velocity = residual_update(self.residual, x, a, velocity, update, self.residual_mu,
                                          self.residual_s)
            update = a
        return self.norm(x)  # (B, T, D)


class EncoderLayer(nn.Module):
    """One pre-norm layer; returns its update a (attention branch + feed-forward branch), not x + a."""

    def __init__(self, attention: Attention, ffn: int, dropout: float):
        super().__init__()
        d = attention.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attention = attention
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d),
                                 nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dropout(self.attention(self.norm1(x), padding_mask))  # (B, T, D)
        return h + self.ffn(self.norm2(x + h))  # (B, T, D)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                      padding_mask: torch.Tensor | None) -> torch.Tensor:
    """scaled_dot_product_attention; padded keys are never attended to, padded queries give zero.

    Args:
        q, k, v: (B, H, T, dh).
        causal: left-to-right (True) or bidirectional.
        padding_mask: (B, T) bool, True at padded steps, or None.

    Returns:
        (B, H, T, dh).
    """
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


def _gather_steps(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, f) reordered along time by ``order`` (B, T)."""
    return x.gather(2, order[:, None, :, None].expand_as(x))
