"""Exact parallel (chunked) linear attention for any rule that is a linear filter with scalar coefficients.

Such a rule (``rule.filter("attention")``, e.g. ``plain``, ``heavy_ball``, ``nesterov_restart``) is one linear
recurrence on two states per head, with per-step scalar coefficients:

    Δ_t = a_t·Δ_{t-1} + s·U_t ;  G_t = G_{t-1} + gain·Δ_t + direct·U_t ;  S_t = G_t + c_t·Δ_t   (Δ_0 = G_0 = 0)

* plain: s = 1, a = c = 0 (G is the prefix sum, S = G);
* heavy_ball: Δ is the momentum p, a_t = mu, c_t = 0 (S = G);
* nesterov_restart: Δ_t = G_t − G_{t−1}, a_t = c_{t−1} (a_1 = 0), c_t = (k_t − 1)/(k_t + 2) (the look-ahead);
  with G_0 = S_0 = 0 this is exactly G_t = S_{t−1} + s·U_t, S_t = G_t + c_t·(G_t − G_{t−1}).

So S_t = Σ_j W[t, j]·U_j with W[t, j] = gain·s·Σ_{i=j..t} P(j+1..i) + direct + c_t·s·P(j+1..t),
P(j+1..i) = a_{j+1}···a_i. Inside a chunk of C steps that is one masked (C, C) product; across chunks the
states (G, Δ) at chunk ends are carried (Δ by a first-order scan over chunks, G by a cumulative sum), so
memory grows linearly in T and no per-step state is ever formed. Products of the a's are cumulative
products of numbers in [0, 1): no negative powers, no division. Causal training of a momentum filter runs
through :class:`_MomentumChunks`, whose backward is written out (the same forward, fewer full-size passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:  # annotations only: kernels read the rule by attribute, exports embed their own Rule
    from ..rules import Rule


DENOMINATOR_EPS = 1e-6


@dataclass(frozen=True)
class ChunkWeights:
    """Per-chunk coefficients of the linear recurrence (``n`` = 1 when every chunk has the same ones).

    Attributes:
        intra: (n, C, C) W[r, j], weight of U at local step j in S at local step r (zero for j > r).
        carry: (n, C) alpha_r, weight of the carried Δ in S at local step r (the carried G has weight 1).
        delta_end: (n, C) weight of U_j in Δ at the chunk's last step.
        sum_end: (n, C) weight of U_j in G at the chunk's last step.
        decay: per chunk, weight of the carried Δ in the chunk's last Δ (python floats, length n).
        feed: (n, 1, 1) per chunk, weight of the carried Δ in the chunk's last G.
    """

    intra: torch.Tensor
    carry: torch.Tensor
    delta_end: torch.Tensor
    sum_end: torch.Tensor
    decay: list[float]
    feed: torch.Tensor


def step_coefficients(rule: Rule, steps: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The scalar coefficients (s, a_t, c_t) of ``rule``'s attention filter for 0-based steps 0..steps-1, float64.

    Args:
        rule: a rule whose ``filter("attention")`` is a :class:`~momsearch.rules.Filter`.
        steps: number of steps.

    Returns:
        ``(s, a, c)`` with ``a`` (the decays) and ``c`` (the look-ahead, zero without one) of shape (steps,).
    """
    filt = rule.filter("attention")
    t = torch.arange(steps, dtype=torch.float64)  # (T,)
    a = filt.varying(t) if filt.varying is not None else torch.full_like(t, filt.decay_at(0))  # (T,)
    c = filt.lookahead(t) if filt.lookahead is not None else torch.zeros_like(t)  # (T,)
    return filt.scale, a, c


@lru_cache(maxsize=32)
def chunk_weights(rule: Rule, n_chunks: int, chunk: int, dtype: torch.dtype,
                  device: torch.device) -> ChunkWeights:
    """Coefficients of every chunk (one shared set when the rule's coefficients do not depend on the step).

    Cached: they depend only on the arguments, and a rule with per-step coefficients needs a (N, C+1, C+1)
    product.

    Args:
        rule: a rule whose attention filter is linear (``plain``, ``heavy_ball``, ``nesterov_restart``, ...).
        n_chunks: number of chunks.
        chunk: chunk length C.
        dtype: dtype of the returned tensors (computed in float64).
        device: device of the returned tensors.

    Returns:
        The :class:`ChunkWeights`.
    """
    filt = rule.filter("attention")
    n = 1 if filt.constant else n_chunks
    s, a, c = step_coefficients(rule, n * chunk)
    a, c = a.view(n, chunk), c.view(n, chunk)  # (n, C)
    # extended local index e = 0..C: e = 0 is the carried state, e = r + 1 is local step r
    e = torch.arange(chunk + 1)
    below = e[:, None] > e[None, :]  # (C+1, C+1)
    a_ext = torch.cat([a.new_ones(n, 1), a], dim=1)  # (n, C+1)
    factors = torch.where(below, a_ext[:, :, None], torch.ones((), dtype=torch.float64))  # (n, C+1, C+1)
    prods = torch.cumprod(factors, dim=1) * (e[:, None] >= e[None, :])  # (n, C+1, C+1) P(j+1..t)
    w_delta = s * prods[:, 1:, 1:]  # (n, C, C)
    pi = prods[:, 1:, 0]  # (n, C) carried Δ -> Δ_r
    w_sum = w_delta.cumsum(dim=1)  # (n, C, C)
    pi_sum = pi.cumsum(dim=1)  # (n, C) carried Δ -> G_r
    if not filt.outputs_momentum:  # G accumulates gain·Δ + direct·U
        w_sum = filt.gain * w_sum + filt.direct * torch.ones(chunk, chunk, dtype=torch.float64).tril()  # (n, C, C)
        pi_sum = filt.gain * pi_sum  # (n, C)
    intra = w_sum + c[:, :, None] * w_delta  # (n, C, C)
    carry = pi_sum + c * pi  # (n, C)

    def cast(x: torch.Tensor) -> torch.Tensor:
        return x.to(dtype=dtype, device=device)

    return ChunkWeights(intra=cast(intra), carry=cast(carry), delta_end=cast(w_delta[:, -1]),
                        sum_end=cast(w_sum[:, -1]), decay=pi[:, -1].tolist(), feed=cast(pi_sum[:, -1, None, None]))


def linear_attention(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, rule: Rule, causal: bool,
                     chunk: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Linear attention with a linear momentum rule on the numerator state, exact at every step.

    Args:
        fq: (B, H, T, d) feature-mapped queries φ(q).
        fk: (B, H, T, d) feature-mapped keys φ(k), zero at padded steps.
        v: (B, H, T, m) values.
        rule: a rule whose attention filter is linear (``rule.filter("attention")``, no normaliser).
        causal: each step reads its own state S_t (True) or the final state (False).
        chunk: chunk length C of the parallel form.
        lengths: (B,) real steps per sequence, all padding at the end (None: all T). Bidirectional
            queries read the state after the last real step.

    Returns:
        (B, H, T, m) outputs φ(q_t)ᵀS / (φ(q_t)ᵀz + 1e-6).
    """
    B, H, T, _ = fk.shape  # (B, H, T, d)
    m = v.shape[-1]
    n_chunks = -(-T // chunk)
    pad = n_chunks * chunk - T
    q4 = _chunked(fq, pad, n_chunks)  # (B, H, N, C, d)
    k4 = _chunked(fk, pad, n_chunks)  # (B, H, N, C, d)
    v4 = _chunked(v, pad, n_chunks)  # (B, H, N, C, m)
    w = chunk_weights(rule, n_chunks, chunk, fq.dtype, fq.device)
    momentum = not rule.filter("attention").identity
    if causal:
        if not momentum:
            sum_prev = _exclusive_cumsum(k4.transpose(-1, -2) @ v4)  # (B, H, N, d, m) G entering each chunk
            scores = (q4 @ k4.transpose(-1, -2)).mul_(w.intra)  # (B, H, N, C, C)
            num = (scores @ v4).add_(q4 @ sum_prev)  # (B, H, N, C, m)
        elif (torch.is_grad_enabled() and not torch.compiler.is_compiling()
              and any(x.requires_grad for x in (fq, fk, v))):
            num = _MomentumChunks.apply(q4.contiguous(), k4.contiguous(), v4.contiguous(), w)  # (B, H, N, C, m)
        else:
            num = _momentum_forward(q4, k4, v4, w)[0]  # (B, H, N, C, m)
        num = num.view(B, H, n_chunks * chunk, m)[:, :, :T]  # (B, H, T, m)
        den = (fq * fk.cumsum(dim=2)).sum(-1, keepdim=True)  # (B, H, T, 1)
        return num / (den + DENOMINATOR_EPS)
    if momentum:
        sum_prev, delta_prev = _entering_states(k4, v4, w)[:2]  # (B, H, N, d, m) each
    else:
        sum_prev = _exclusive_cumsum(k4.transpose(-1, -2) @ v4)  # (B, H, N, d, m)
    last = _last_steps(lengths, B, T, fq.device)  # (B,)
    n_last, r_last = last // chunk, last % chunk  # (B,)
    rows = torch.arange(B, device=fq.device)
    n_w = n_last if w.intra.shape[0] > 1 else torch.zeros_like(n_last)
    weights = w.intra[n_w, r_last]  # (B, C)
    k_last = k4[rows, :, n_last] * weights[:, None, :, None]  # (B, H, C, d)
    state = sum_prev[rows, :, n_last] + k_last.transpose(-1, -2) @ v4[rows, :, n_last]  # (B, H, d, m)
    if momentum:
        state = state + w.carry[n_w, r_last][:, None, None, None] * delta_prev[rows, :, n_last]  # (B, H, d, m)
    z = fk.sum(dim=2)  # (B, H, d)
    den = (fq @ z[..., None])  # (B, H, T, 1)
    return (fq @ state) / (den + DENOMINATOR_EPS)  # (B, H, T, m)


def _chunked(x: torch.Tensor, pad: int, n_chunks: int) -> torch.Tensor:
    """(B, H, T, f) -> (B, H, N, C, f), zero-padded at the end to N·C steps."""
    if pad:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))  # (B, H, N*C, f)
    return x.view(*x.shape[:2], n_chunks, -1, x.shape[-1])


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the chunks strictly before each chunk (dim 2)."""
    total = x.cumsum(dim=2)  # (B, H, N, d, m)
    return torch.cat([torch.zeros_like(total[:, :, :1]), total[:, :, :-1]], dim=2)


def _scan_delta(local: torch.Tensor, decay: list[float]) -> torch.Tensor:
    """Δ entering each chunk: Δ_end(n) = decay_n·Δ_end(n−1) + local(n), one fused op per chunk."""
    chunks = local.unbind(dim=2)  # N x (B, H, d, m); one stack in backward, not N zero-filled copies
    decay = decay * len(chunks) if len(decay) == 1 else decay
    entering = [torch.zeros_like(chunks[0])]  # N x (B, H, d, m)
    for n in range(len(chunks) - 1):
        entering.append(torch.add(chunks[n], entering[-1], alpha=decay[n]))
    return torch.stack(entering, dim=2)  # (B, H, N, d, m)


def _last_steps(lengths: torch.Tensor | None, batch: int, steps: int, device: torch.device) -> torch.Tensor:
    """0-based index of each sequence's last real step (0 for an all-padding sequence)."""
    if lengths is None:
        return torch.full((batch,), steps - 1, dtype=torch.long, device=device)
    return (lengths - 1).clamp_min(0)


def _entering_states(k4: torch.Tensor, v4: torch.Tensor, w: ChunkWeights):
    """G and Δ entering each chunk (B, H, N, d, m), and the values weighted for G and Δ at chunk ends (B, H, N, C, m).

    G_end = Kᵀ(σ∘V) and Δ_end = Kᵀ(δ∘V) per chunk; Δ entering follows a first-order scan over chunks and
    G entering is the exclusive cumulative sum of G_end + feed·Δ entering.
    """
    kt = k4.transpose(-1, -2)  # (B, H, N, d, C)
    v_sum = v4 * w.sum_end[:, :, None]  # (B, H, N, C, m)
    v_delta = v4 * w.delta_end[:, :, None]  # (B, H, N, C, m)
    delta_prev = _scan_delta(kt @ v_delta, w.decay)  # (B, H, N, d, m) Δ entering each chunk
    sum_prev = _exclusive_cumsum(torch.addcmul(kt @ v_sum, w.feed, delta_prev))  # (B, H, N, d, m) G entering
    return sum_prev, delta_prev, v_sum, v_delta


def _momentum_forward(q4: torch.Tensor, k4: torch.Tensor, v4: torch.Tensor, w: ChunkWeights):
    """The causal numerators with a momentum filter, and what :class:`_MomentumChunks` keeps for backward.

    The one forward of the causal momentum path, with and without gradients.
    """
    sum_prev, delta_prev, v_sum, v_delta = _entering_states(k4, v4, w)  # (B, H, N, d|C, m) each
    scores = (q4 @ k4.transpose(-1, -2)).mul_(w.intra)  # (B, H, N, C, C)
    num = (scores @ v4).add_(q4 @ sum_prev)  # (B, H, N, C, m)
    num = num.addcmul_(w.carry[:, :, None], q4 @ delta_prev)  # (B, H, N, C, m)
    return num, (scores, v_sum, v_delta, sum_prev, delta_prev)


class _MomentumChunks(torch.autograd.Function):
    """Causal chunked numerators with a momentum filter; backward written out so that the gradient terms
    of each input accumulate inside the products (``baddbmm_``) instead of in separate full-size adds.

    Backward, per chunk (ḡ the output gradient, W the in-chunk weights, σ/δ the chunk-end weights of G/Δ):
    ḡv = (QKᵀ∘W)ᵀḡ + σ∘(K ḡG_end) + δ∘(K ḡΔ_end) ; ḡs = (ḡVᵀ)∘W ; ḡq = ḡs K + ḡ G_inᵀ + (c∘ḡ) Δ_inᵀ ;
    ḡk = ḡsᵀQ + (σ∘V) ḡG_endᵀ + (δ∘V) ḡΔ_endᵀ, with ḡG_in = Qᵀḡ, ḡΔ_in = Qᵀ(c∘ḡ) carried back through
    the exclusive cumulative sum and the Δ scan over chunks.
    """

    @staticmethod
    def forward(ctx, q4, k4, v4, w):
        num, kept = _momentum_forward(q4, k4, v4, w)
        ctx.save_for_backward(q4, k4, v4, *kept)
        ctx.w = w
        return num

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        q4, k4, v4, scores, v_sum, v_delta, sum_prev, delta_prev = ctx.saved_tensors
        w = ctx.w
        B, H, N = q4.shape[:3]
        flat = B * H * N

        def b3(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, a, b) -> (B*H*N, a, b), a view (in-place targets)
            return x.view(flat, *x.shape[-2:])

        g = grad.contiguous()  # (B, H, N, C, m)
        g_carry = g * w.carry[:, :, None]  # (B, H, N, C, m) c_r·ḡ_r
        g_sum_in = q4.transpose(-1, -2) @ g  # (B, H, N, d, m) adjoint of G entering each chunk
        g_delta_in = q4.transpose(-1, -2) @ g_carry  # (B, H, N, d, m) adjoint of Δ entering each chunk
        # G_in(n) = Σ_{n'<n} (G_end(n') + feed(n')·Δ_in(n')): the adjoint of G_end(n') is Σ_{n>n'} ḡG_in(n)
        g_sum_end = _exclusive_cumsum(g_sum_in.flip(2)).flip(2)  # (B, H, N, d, m)
        g_delta_in = g_delta_in.addcmul_(w.feed, g_sum_end)  # (B, H, N, d, m)
        g_delta_end = _reverse_scan_delta(g_delta_in, w.decay)  # (B, H, N, d, m)

        # in this order, at most four full-size gradient terms are alive at once
        g_scores = (g @ v4.transpose(-1, -2)).mul_(w.intra)  # (B, H, N, C, C)
        gq = g_scores @ k4  # (B, H, N, C, d)
        b3(gq).baddbmm_(b3(g), b3(sum_prev).transpose(1, 2)).baddbmm_(b3(g_carry), b3(delta_prev).transpose(1, 2))
        del g_carry
        gk = g_scores.transpose(-1, -2) @ q4  # (B, H, N, C, d)
        del g_scores
        b3(gk).baddbmm_(b3(v_sum), b3(g_sum_end).transpose(1, 2)).baddbmm_(b3(v_delta), b3(g_delta_end).transpose(1, 2))
        gv = scores.transpose(-1, -2) @ g  # (B, H, N, C, m)
        gv.addcmul_(k4 @ g_sum_end, w.sum_end[:, :, None]).addcmul_(k4 @ g_delta_end, w.delta_end[:, :, None])
        return gq, gk, gv, None


def _reverse_scan_delta(g_entering: torch.Tensor, decay: list[float]) -> torch.Tensor:
    """Adjoint of :func:`_scan_delta`: from the adjoints of Δ entering each chunk, those of each chunk's local Δ.

    Δ_in(n+1) = local(n) + decay_n·Δ_in(n), Δ_in(0) = 0, so ḡlocal(n) = A(n+1) with A(n) = ḡΔ_in(n) + decay_n·A(n+1)
    (A(N) = 0): the last chunk's local Δ enters nothing.
    """
    chunks = g_entering.unbind(dim=2)  # N x (B, H, d, m)
    n_chunks = len(chunks)
    decay = decay * n_chunks if len(decay) == 1 else decay
    local = [torch.zeros_like(chunks[0])]  # ḡlocal(N-1) = 0
    acc = None
    for n in range(n_chunks - 1, 0, -1):
        acc = chunks[n] if acc is None else torch.add(chunks[n], acc, alpha=decay[n])  # A(n)
        local.append(acc)
    return torch.stack(local[::-1], dim=2)  # (B, H, N, d, m)
