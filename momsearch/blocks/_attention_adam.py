"""Exact chunked linear attention with a normalising rule (``adam``) on the numerator state.

A rule with a constant-decay filter (p_t = mu·p_{t-1} + s·U_t, ``rule.filter("attention")``) and a normaliser
(``rule.normaliser()``: beta, eps) gives

    p_t = mu·p_{t-1} + s·U_t ;  m_t = beta·m_{t-1} + (1 − beta)·U_t² ;  S_t = S_{t-1} + p_t / sqrt(m_t + eps)

The square root is elementwise on the (d, m) states, so every step's p_t and m_t must exist. They are
formed one chunk at a time: inside a chunk p and m are one (C, C) Toeplitz product each over the chunk's
U_j (weights mu^{r−j}, beta^{r−j}: non-negative powers only) plus the carried state, and S is a cumulative
sum. When gradients are needed each chunk is checkpointed, so autograd keeps only the chunk inputs and
the (d, m) states between chunks; backward recomputes one chunk at a time.

The Toeplitz products cost O(C) per step and element, so chunks here are at most ``MAX_CHUNK`` steps
whatever the block's ``chunk_size`` (B8, 4 heads, d 32, T 1024, 1 thread: C = 64 / 16 / 8 took 22 / 13 / 10x
the plain linear forward and 34 / 21 / 20x its forward+backward; results agree to 4e-15 in float64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.checkpoint import checkpoint

from ._attention_linear import DENOMINATOR_EPS, _chunked, _last_steps

MAX_CHUNK = 8  # steps per chunk of the normalised form

if TYPE_CHECKING:  # annotations only: kernels read the rule by attribute, exports embed their own Rule
    from ..rules import Rule


def adam_attention(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, rule: Rule, causal: bool,
                   chunk: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Linear attention with a normalising rule (``adam``) on the numerator state, exact at every step.

    Arguments and result as for :func:`._attention_linear.linear_attention` (the block calls either with the
    same arguments); ``rule`` has a constant-decay attention filter and a normaliser (e.g. ``adam``).
    """
    B, H, T, d = fk.shape
    m = v.shape[-1]
    chunk = min(chunk, MAX_CHUNK)
    n_chunks = -(-T // chunk)
    pad = n_chunks * chunk - T
    # unbind, not indexing: its backward is one stack instead of a zero-filled full copy per chunk
    q4, k4, v4 = (_chunked(x, pad, n_chunks).unbind(dim=2) for x in (fq, fk, v))  # N x (B, H, C, d|m)
    filt, norm = rule.filter("attention"), rule.normaliser()
    mu = 0.0 if filt.decay is None else filt.decay
    weights = _toeplitz(mu, filt.scale, norm.beta, chunk, fq.dtype, fq.device)
    last = _last_steps(lengths, B, T, fq.device)  # (B,)
    n_last, r_last = last // chunk, last % chunk  # (B,)
    zeros = fq.new_zeros(B, H, d * m)
    p, sq, state, read = zeros, zeros, zeros, zeros  # (B, H, d*m) each
    outputs = []
    use_checkpoint = torch.is_grad_enabled() and any(x.requires_grad for x in (fq, fk, v))
    for n in range(n_chunks):
        args = (q4[n], k4[n], v4[n], p, sq, state, r_last, *weights)
        if use_checkpoint:
            out, p, sq, state, at_last = checkpoint(_chunk, *args, causal, norm.eps, use_reentrant=False)
        else:
            out, p, sq, state, at_last = _chunk(*args, causal, norm.eps)
        if causal:
            outputs.append(out)
        else:
            read = torch.where((n_last == n)[:, None, None], at_last, read)  # (B, H, d*m)
    if causal:
        num = torch.cat(outputs, dim=2)[:, :, :T]  # (B, H, T, m)
        den = (fq * fk.cumsum(dim=2)).sum(-1, keepdim=True)  # (B, H, T, 1)
        return num / (den + DENOMINATOR_EPS)
    num = fq @ read.view(B, H, d, m)  # (B, H, T, m)
    den = fq @ fk.sum(dim=2)[..., None]  # (B, H, T, 1)
    return num / (den + DENOMINATOR_EPS)


def _toeplitz(mu: float, s: float, beta: float, chunk: int, dtype: torch.dtype,
              device: torch.device) -> tuple[torch.Tensor, ...]:
    """(C, C) weights of U in p and of U² in m inside a chunk, and (C, 1) weights of the carried p and m."""
    r = torch.arange(chunk, dtype=torch.float64)
    lag = r[:, None] - r[None, :]  # (C, C)
    causal = lag >= 0
    lag = lag.clamp_min(0)
    w_p = torch.where(causal, s * mu ** lag, 0.0)  # (C, C)
    w_m = torch.where(causal, (1 - beta) * beta ** lag, 0.0)  # (C, C)
    carry_p = (mu ** (r + 1))[:, None]  # (C, 1)
    carry_m = (beta ** (r + 1))[:, None]  # (C, 1)
    return tuple(x.to(dtype=dtype, device=device) for x in (w_p, w_m, carry_p, carry_m))


def _chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: torch.Tensor, sq: torch.Tensor,
           state: torch.Tensor, r_last: torch.Tensor, w_p: torch.Tensor, w_m: torch.Tensor,
           carry_p: torch.Tensor, carry_m: torch.Tensor, causal: bool, eps: float):
    """One chunk: per-step p, m, S from the carried ones; outputs (causal) or S at each row's last step."""
    B, H, C, d = k.shape
    m = v.shape[-1]
    u = (k[..., :, None] * v[..., None, :]).reshape(B, H, C, d * m)  # (B, H, C, d*m)
    p_steps = w_p @ u + carry_p * p[:, :, None]  # (B, H, C, d*m)
    sq_steps = w_m @ (u * u) + carry_m * sq[:, :, None]  # (B, H, C, d*m)
    s_steps = state[:, :, None] + (p_steps / torch.sqrt(sq_steps + eps)).cumsum(dim=2)  # (B, H, C, d*m)
    if causal:
        out = (q[..., None, :] @ s_steps.view(B, H, C, d, m)).squeeze(-2)  # (B, H, C, m)
        at_last = state
    else:
        out = state
        rows = torch.arange(B, device=k.device)
        at_last = s_steps[rows, :, r_last]  # (B, H, d*m)
    # copies, not views: a view of the last step would keep the whole chunk's (C, d*m) tensors alive
    ends = (x[:, :, -1].clone() for x in (p_steps, sq_steps, s_steps))  # 3 x (B, H, d*m)
    return out, *ends, at_last
