"""One step of each attention kind, for causal generation: the DESIGN §3.3 recurrences written directly.

The parallel forms in ``_attention_linear`` / ``_attention_adam`` must reproduce these token by token.
A padded step (``keep`` False) leaves every state unchanged, the Nesterov counter included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F

from ._attention_linear import DENOMINATOR_EPS, nesterov_coefficients

if TYPE_CHECKING:  # annotations only: kernels read the rule by attribute, exports embed their own Rule
    from ..rules import Rule


class LinearState(NamedTuple):
    """Recurrent state of linear attention.

    Attributes:
        S: (B, H, d, m) numerator state.
        z: (B, H, d) normaliser (plain cumulative sum of φ(k)).
        memory: the rule's extra states: () plain, (p,) heavy_ball, (G_prev,) nesterov_restart, (p, m) adam;
            each (B, H, d, m).
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


_MEMORY = {"plain": 0, "heavy_ball": 1, "nesterov_restart": 1, "adam": 2}


def linear_initial(rule: Rule, q: torch.Tensor, v: torch.Tensor) -> LinearState:
    """Zero state for queries ``q`` (B, H, d) and values ``v`` (B, H, m)."""
    B, H, d = q.shape
    zero = q.new_zeros(B, H, d, v.shape[-1])  # (B, H, d, m)
    return LinearState(zero, q.new_zeros(B, H, d), (zero,) * _MEMORY[rule.name],
                       torch.zeros(B, dtype=torch.long, device=q.device))


def linear_step(rule: Rule, fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, keep: torch.Tensor,
                state: LinearState) -> tuple[torch.Tensor, LinearState]:
    """One step of linear attention with ``rule`` on the numerator state.

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
    if rule.name == "plain":
        S, memory = S + u, ()
    elif rule.name == "heavy_ball":
        p = rule.mu * state.memory[0] + rule.s * u  # (B, H, d, m)
        S, memory = S + p, (p,)
    elif rule.name == "nesterov_restart":
        c = nesterov_coefficients(rule.restart_every, state.steps.to(S.dtype))[:, None, None, None]  # (B,1,1,1)
        g = S + rule.s * u  # (B, H, d, m)
        S, memory = g + c * (g - state.memory[0]), (g,)
    else:
        p = rule.mu * state.memory[0] + rule.s * u  # (B, H, d, m)
        sq = rule.beta * state.memory[1] + (1 - rule.beta) * u * u  # (B, H, d, m)
        S, memory = S + p / torch.sqrt(sq + rule.eps), (p, sq)
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
