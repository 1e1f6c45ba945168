"""One step of each attention kind, for causal generation: the recurrences written directly.

The parallel forms in ``_attention_linear`` / ``_attention_adam`` must reproduce these token by token.
A padded step (``keep`` False) leaves every state unchanged, the Nesterov counter included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F

from ._attention_linear import DENOMINATOR_EPS

if TYPE_CHECKING:  # annotations only: kernels read the rule by attribute, exports embed their own Rule
    from ..rules import Rule


class LinearState(NamedTuple):
    """Recurrent state of linear attention.

    Attributes:
        S: (B, H, d, m) numerator state.
        z: (B, H, d) normaliser (plain cumulative sum of φ(k)).
        memory: the rule's extra states, each (B, H, d, m): () for the identity filter or one that carries
            nothing, (Δ,) for a filter with momentum Δ, (Δ, G) for one with a look-ahead (S = G + c·Δ),
            (p, m) for a normalised one (heavy_ball: (p,), nesterov_restart: (Δ, G), adam: (p, m)).
        steps: (B,) real steps consumed so far (the Nesterov counter's clock).
    """

    S: torch.Tensor
    z: torch.Tensor
    memory: tuple[torch.Tensor, ...]
    steps: torch.Tensor


class SoftmaxState(NamedTuple):
    """Key/value cache of softmax attention: keys, values (B, H, t, d) and keep (B, t), True = real step."""

    keys: torch.Tensor
    values: torch.Tensor
    keep: torch.Tensor


def memory_size(rule: Rule) -> int:
    """How many (B, H, d, m) states ``rule`` carries besides S (see :class:`LinearState`)."""
    filt = rule.filter("attention")
    if rule.normaliser() is not None or filt.lookahead is not None:
        return 2
    return 1 if filt.carries else 0


def linear_initial(rule: Rule, q: torch.Tensor, v: torch.Tensor) -> LinearState:
    """Zero state for queries ``q`` (B, H, d) and values ``v`` (B, H, m)."""
    B, H, d = q.shape
    zero = q.new_zeros(B, H, d, v.shape[-1])  # (B, H, d, m)
    return LinearState(zero, q.new_zeros(B, H, d), (zero,) * memory_size(rule),
                       torch.zeros(B, dtype=torch.long, device=q.device))


def linear_step(rule: Rule, fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, keep: torch.Tensor,
                state: LinearState) -> tuple[torch.Tensor, LinearState]:
    """One step of linear attention with ``rule`` on the numerator state.

    With the rule's attention filter (decay a_t, scale s, gain, direct, look-ahead c_t) and optional normaliser:
    Δ = a_t·Δ + s·U ; then S += Δ / sqrt(m + eps) with m = beta·m + (1-beta)·U² (normalised), or
    G += gain·Δ + direct·U, S = G + c_t·Δ (look-ahead), or S += gain·Δ + direct·U.

    Args:
        rule: the rule.
        fq, fk: (B, H, d) feature-mapped query and key.
        v: (B, H, m) value.
        keep: (B,) bool, False where this step is padding.
        state: the state after the previous step.

    Returns:
        (B, H, m) output and the new state.
    """
    u = fk[..., :, None] * v[..., None, :]  # (B, H, d, m)
    S = state.S
    filt, norm = rule.filter("attention"), rule.normaliser()
    if filt.varying is not None:
        a = filt.varying(state.steps.to(S.dtype))[:, None, None, None]  # (B, 1, 1, 1)
    else:
        a = filt.decay_at(0)
    if norm is not None:
        p = a * state.memory[0] + filt.scale * u  # (B, H, d, m)
        sq = norm.beta * state.memory[1] + (1 - norm.beta) * u * u  # (B, H, d, m)
        S, memory = S + p / torch.sqrt(sq + norm.eps), (p, sq)
    elif filt.identity:
        S, memory = S + u, ()
    else:
        delta = a * state.memory[0] + filt.scale * u if filt.carries else filt.scale * u  # (B, H, d, m)
        out = delta if filt.outputs_momentum else filt.gain * delta + filt.direct * u  # (B, H, d, m)
        if filt.lookahead is not None:
            c = filt.lookahead(state.steps.to(S.dtype))[:, None, None, None]  # (B, 1, 1, 1)
            g = state.memory[1] + out  # (B, H, d, m)
            S, memory = g + c * delta, (delta, g)
        else:
            S, memory = S + out, ((delta,) if filt.carries else ())
    z = state.z + fk  # (B, H, d)
    k4 = keep[:, None, None, None]
    new = LinearState(torch.where(k4, S, state.S), torch.where(keep[:, None, None], z, state.z),
                      tuple(torch.where(k4, a, b) for a, b in zip(memory, state.memory, strict=True)),
                      state.steps + keep.long())
    num = (fq[..., None, :] @ new.S).squeeze(-2)  # (B, H, m)
    den = (fq * new.z).sum(-1, keepdim=True)  # (B, H, 1)
    return num / (den + DENOMINATOR_EPS), new


def softmax_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor,
                 state: SoftmaxState | None) -> tuple[torch.Tensor, SoftmaxState]:
    """One causal step of softmax attention over the cached keys and values.

    Args:
        q, k: (B, H, d) query and key; v: (B, H, m) value.
        keep: (B,) bool, False where this step is padding (its key is never attended to).
        state: the cache after the previous step, or None.

    Returns:
        (B, H, m) output and the extended cache.
    """
    keys, values, kept = k[:, :, None], v[:, :, None], keep[:, None]  # (B, H, 1, d), (B, H, 1, m), (B, 1)
    if state is not None:
        keys = torch.cat([state.keys, keys], dim=2)  # (B, H, t, d)
        values = torch.cat([state.values, values], dim=2)  # (B, H, t, m)
        kept = torch.cat([state.keep, kept], dim=1)  # (B, t)
    visible = kept.clone()
    visible[:, -1] = True  # a padded query sees its own key, so no row is empty (its output is zeroed)
    out = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=visible[:, None, None, :])
    return out.squeeze(2), SoftmaxState(keys, values, kept)  # (B, H, m)
