"""Exact chunked linear attention with a normalising rule (``adam``) on the numerator state.

A rule with a constant-decay filter (p_t = mu·p_{t-1} + s·U_t, ``rule.filter("attention")``) and a normaliser
(``rule.normaliser()``: beta, eps) gives

    p_t = mu·p_{t-1} + s·U_t ;  m_t = beta·m_{t-1} + (1 − beta)·U_t² ;  S_t = S_{t-1} + p_t / sqrt(m_t + eps)

The square root is elementwise on the (d, m) states, so every step's p_t and m_t must exist. They are formed
one chunk of ``CHUNK`` steps at a time, time-major, and never kept. The scale s is carried outside:
p̂ = p/s and Ŝ = S/s follow p̂_t = mu·p̂_{t-1} + U_t, Ŝ_t = Ŝ_{t-1} + p̂_t / sqrt(m_t + eps), and the
outputs are (s·φ(q_t))ᵀŜ_t, so no step multiplies by s and nothing divides by it. Inside a chunk the
whole-chunk work (the outer products U_j = φ(k_j)v_jᵀ and (1 − beta)·U_j² = φ(k_j)²((1 − beta)v_j²)ᵀ, the
reciprocal square roots, the read-out) is one batched op each; the three first-order recurrences are one
in-place add per step.

Training goes through :class:`_AdamChunks`, a hand-written autograd function: forward keeps only its inputs
and the (d, m) states (p̂, m, Ŝ) entering each chunk; backward walks the chunks in reverse, recomputes one
chunk's p̂, m, ρ = 1/sqrt(m + eps) and R̂ = p̂·ρ from its entering states and runs the adjoint recurrences

    ḡR̂_j = ḡŜ_end + Σ_{r≥j} s·φ(q_r)ḡy_rᵀ ;  ḡp̂_r = ḡR̂_r·ρ_r + mu·ḡp̂_{r+1} ;
    ḡm_r = −½·ḡR̂_r·R̂_r·ρ_r² + beta·ḡm_{r+1} ;  ḡU_r = ḡp̂_r + 2(1 − beta)·U_r·ḡm_r

(ḡŜ_end, ḡp̂_C, ḡm_C: the adjoints carried from the next chunk), then ḡφ(k_r) = ḡU_r v_r, ḡv_r = ḡU_rᵀφ(k_r).
No autograd graph is built per step, and memory is the inputs plus three (d, m) states per chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.autograd.function import once_differentiable

from ._attention_linear import DENOMINATOR_EPS, _last_steps

CHUNK = 16  # steps per chunk of the normalised form (the block's chunk_size does not change the result)

if TYPE_CHECKING:  # annotations only: kernels read the rule by attribute, exports embed their own Rule
    from ..rules import Rule


def adam_attention(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, rule: Rule, causal: bool,
                   chunk: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Linear attention with a normalising rule (``adam``) on the numerator state, exact at every step.

    Arguments and result as for :func:`._attention_linear.linear_attention` (the block calls either with the
    same arguments); ``rule`` has a constant-decay attention filter and a normaliser (e.g. ``adam``).
    ``chunk`` is accepted for that symmetry; the normalised form runs chunks of ``CHUNK`` steps.
    """
    B, H, T, d = fk.shape
    m = v.shape[-1]
    filt, norm = rule.filter("attention"), rule.normaliser()
    mu = 0.0 if filt.decay is None else filt.decay
    last = _last_steps(lengths, B, T, fq.device).repeat_interleave(H)  # (B*H,) 0-based last real step
    k3, v3 = _time_major(fk), _time_major(v)  # (T, B*H, d|m)
    q3 = _time_major(fq * filt.scale) if causal else None  # (T, B*H, d) s·φ(q)
    args = (q3, k3, v3, mu, norm.beta, norm.eps, last)
    if torch.compiler.is_compiling():  # torch.export: no in-place or out= ops on traced tensors
        out = _adam_traceable(*args)
    elif torch.is_grad_enabled() and any(x.requires_grad for x in (fq, fk, v)):
        out = _AdamChunks.apply(*args)
    else:
        out = _adam_forward(*args, None)
    if causal:
        num = out.view(T, B, H, m).permute(1, 2, 0, 3)  # (B, H, T, m)
        den = (fq * fk.cumsum(dim=2)).sum(-1, keepdim=True)  # (B, H, T, 1)
        return num / (den + DENOMINATOR_EPS)
    num = (fq * filt.scale) @ out.view(B, H, d, m)  # (B, H, T, m)
    den = fq @ fk.sum(dim=2)[..., None]  # (B, H, T, 1)
    return num / (den + DENOMINATOR_EPS)


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, f) -> (T, B*H, f), contiguous: each step of a chunk is one contiguous (B*H, f) block."""
    return x.permute(2, 0, 1, 3).reshape(x.shape[2], -1, x.shape[3]).contiguous()


def _scan(x: torch.Tensor, decay: float, start: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Along dim 0: out_r = x_r + decay·out_{r−1} (out_{−1} = ``start``); ``out`` None: in place; returns out."""
    steps = x.unbind(0)
    outs = steps if out is None else out.unbind(0)
    prev = start
    for cur, res in zip(steps, outs, strict=True):
        prev = torch.add(cur, prev, alpha=decay, out=res)
    return x if out is None else out


def _reverse_scan(x: torch.Tensor, decay: float, end: torch.Tensor, end_alpha: float = 1.0) -> torch.Tensor:
    """In place along dim 0: x_r ← x_r + decay·x_{r+1}, after x_last += end_alpha·end; returns x."""
    steps = x.unbind(0)
    steps[-1].add_(end, alpha=end_alpha)
    for nxt, cur in zip(steps[:0:-1], steps[-2::-1], strict=True):
        cur.add_(nxt, alpha=decay)
    return x


def _outer(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` (C, BH, d·m) ← a_r b_rᵀ per step and row, for a (C, BH, d) and b (C, BH, m); returns ``out``."""
    C, BH, d = a.shape
    torch.mul(a[..., :, None], b[..., None, :], out=out.view(C, BH, d, b.shape[-1]))
    return out


class _Workspace:
    """Chunk-sized buffers reused by every chunk: a fresh multi-megabyte tensor per chunk costs page faults."""

    def __init__(self, like: torch.Tensor, count: int, chunk: int, rows: int, size: int):
        self.buffers = [like.new_empty(chunk, rows, size) for _ in range(count)]  # each (C, BH, D)

    def take(self, steps: int) -> list[torch.Tensor]:
        """The buffers cut to ``steps`` steps (the last chunk may be shorter)."""
        return [b[:steps] for b in self.buffers]


def _chunk_states(k: torch.Tensor, v: torch.Tensor, v_sq: torch.Tensor, p0: torch.Tensor, m0: torch.Tensor,
                  mu: float, beta: float, p: torch.Tensor, rho: torch.Tensor,
                  u: torch.Tensor | None = None) -> None:
    """One chunk's p̂_r into ``p`` and m_r into ``rho`` from the entering p̂, m; U_r into ``u`` if given.

    Args:
        k: (C, BH, d), v: (C, BH, m) the chunk's φ(k) and v; v_sq: (C, BH, m) (1 − beta)·v².
        p0, m0: (BH, D) the states entering the chunk (D = d·m).
        p, rho, u: (C, BH, D) buffers; on return ``p`` holds p̂_r and ``rho`` holds m_r (the last step of
            each: the states leaving the chunk); :func:`_normalise` turns them into R̂_r and ρ_r.
    """
    if u is None:
        _scan(_outer(k, v, p), mu, p0)  # p̂_r
    else:
        _scan(_outer(k, v, u), mu, p0, out=p)  # p̂_r, U_r kept
    _scan(_outer(k * k, v_sq, rho), beta, m0)  # m_r


def _normalise(p: torch.Tensor, rho: torch.Tensor, eps: float) -> None:
    """In place: ``rho`` m_r -> 1/sqrt(m_r + eps), ``p`` p̂_r -> R̂_r = p̂_r·ρ_r."""
    p.mul_(rho.add_(eps).rsqrt_())


def _adam_forward(q: torch.Tensor | None, k: torch.Tensor, v: torch.Tensor, mu: float, beta: float, eps: float,
                  last: torch.Tensor, saved: torch.Tensor | None) -> torch.Tensor:
    """The normalised recurrence over all chunks.

    Args:
        q: (T, BH, d) s·φ(q) (causal), or None (bidirectional: read the state at step ``last``).
        k: (T, BH, d) φ(k); v: (T, BH, m).
        mu, beta, eps: the rule's decay and normaliser.
        last: (BH,) 0-based last real step of each row (read when not causal).
        saved: (N, 3, BH, d·m) zeros, filled with each chunk's entering (p̂, m, Ŝ) (for backward), or None.

    Returns:
        (T, BH, m) numerators (s·φ(q_t))ᵀŜ_t (causal) or (BH, d·m) the Ŝ read at each row's last step.
    """
    T, BH, d = k.shape
    m = v.shape[-1]
    v_sq = (1 - beta) * v * v  # (T, BH, m)
    rolling = k.new_zeros(3, BH, d * m) if saved is None else None  # (p̂, m, Ŝ) when nothing is kept
    out = k.new_empty(T, BH, m) if q is not None else k.new_zeros(BH, d * m)  # (T, BH, m) or (BH, D)
    work = _Workspace(k, 2, min(CHUNK, T), BH, d * m)
    for n, lo in enumerate(range(0, T, CHUNK)):
        hi = min(lo + CHUNK, T)
        p0, m0, s0 = rolling if saved is None else saved[n]  # (BH, D) each
        r, rho = work.take(hi - lo)  # (C, BH, D) each
        _chunk_states(k[lo:hi], v[lo:hi], v_sq[lo:hi], p0, m0, mu, beta, r, rho)
        leaving = rolling if saved is None else (saved[n + 1] if n + 1 < len(saved) else None)
        if leaving is not None:
            leaving[0].copy_(r[-1])
            leaving[1].copy_(rho[-1])
        _normalise(r, rho, eps)
        s_steps = _scan(r, 1.0, s0)  # (C, BH, D) Ŝ_r
        if leaving is not None:
            leaving[2].copy_(s_steps[-1])
        if q is not None:
            rows = (hi - lo) * BH
            torch.bmm(q[lo:hi].view(rows, 1, d), s_steps.view(rows, d, m), out=out[lo:hi].view(rows, 1, m))
        else:
            here = ((last >= lo) & (last < hi)).nonzero().squeeze(1)  # rows whose last step is in this chunk
            if here.numel():
                out[here] = s_steps[last[here] - lo, here]
    return out


def _adam_traceable(q: torch.Tensor | None, k: torch.Tensor, v: torch.Tensor, mu: float, beta: float, eps: float,
                    last: torch.Tensor) -> torch.Tensor:
    """:func:`_adam_forward` written without in-place or ``out=`` ops, for ``torch.export`` (same arguments).

    Inside a chunk p̂ and m are one (C, C+1) product each over the entering state and the chunk's U_j
    (weights mu^{r−j}, beta^{r−j}: non-negative powers only); the result differs from the scans only by rounding.
    """
    T, BH, d = k.shape
    m = v.shape[-1]
    r = torch.arange(min(CHUNK, T), dtype=torch.float64)
    lag = r[:, None] - r[None, :]  # (C, C)
    w_p, w_m = (torch.cat([(a ** (r + 1))[:, None], torch.where(lag >= 0, a ** lag.clamp_min(0), 0.0)], dim=1)
                .to(k.dtype) for a in (mu, beta))  # (C, C+1) each: column 0 weighs the entering state
    v_sq = (1 - beta) * v * v  # (T, BH, m)
    p = sq = state = k.new_zeros(1, BH * d * m)  # (1, BH*D) each
    read = k.new_zeros(BH, d * m)  # (BH, D)
    outputs = []
    for lo in range(0, T, CHUNK):
        hi = min(lo + CHUNK, T)
        C = hi - lo
        u = (k[lo:hi, :, :, None] * v[lo:hi, :, None, :]).reshape(C, -1)  # (C, BH*D)
        u_sq = (k[lo:hi, :, :, None] ** 2 * v_sq[lo:hi, :, None, :]).reshape(C, -1)  # (C, BH*D)
        p_steps = w_p[:C, :C + 1] @ torch.cat([p, u])  # (C, BH*D) p̂_r
        sq_steps = w_m[:C, :C + 1] @ torch.cat([sq, u_sq])  # (C, BH*D) m_r
        s_steps = state + (p_steps * torch.rsqrt(sq_steps + eps)).cumsum(dim=0)  # (C, BH*D) Ŝ_r
        p, sq, state = p_steps[-1:], sq_steps[-1:], s_steps[-1:]  # (1, BH*D) each
        s_steps = s_steps.view(C, BH, d, m)
        if q is not None:
            outputs.append((q[lo:hi, :, None, :] @ s_steps).squeeze(2))  # (C, BH, m)
        else:
            at = s_steps[(last - lo).clamp(0, C - 1), torch.arange(BH, device=k.device)].reshape(BH, -1)
            read = torch.where(((last >= lo) & (last < hi))[:, None], at, read)  # (BH, D)
    return torch.cat(outputs) if q is not None else read


class _AdamChunks(torch.autograd.Function):
    """:func:`_adam_forward` with a backward that recomputes each chunk instead of storing its steps."""

    @staticmethod
    def forward(ctx, q, k, v, mu, beta, eps, last):
        T, BH, d = k.shape
        saved = k.new_zeros(-(-T // CHUNK), 3, BH, d * v.shape[-1])  # (N, 3, BH, D)
        out = _adam_forward(q, k, v, mu, beta, eps, last, saved)
        ctx.save_for_backward(q, k, v, last, saved)
        ctx.constants = (mu, beta, eps)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        q, k, v, last, saved = ctx.saved_tensors
        mu, beta, eps = ctx.constants
        T, BH, d = k.shape
        m = v.shape[-1]
        causal = q is not None
        v_sq = (1 - beta) * v * v  # (T, BH, m)
        grad = grad.contiguous()
        gq = torch.empty_like(q) if causal and ctx.needs_input_grad[0] else None
        gk, gv = torch.empty_like(k), torch.empty_like(v)
        a_s, a_p, a_m = k.new_zeros(3, BH, d * m)  # adjoints of the states entering the next chunk
        work = _Workspace(k, 5, min(CHUNK, T), BH, d * m)
        for n in reversed(range(len(saved))):
            lo = n * CHUNK
            hi = min(lo + CHUNK, T)
            C = hi - lo
            kc, vc = k[lo:hi], v[lo:hi]  # (C, BH, d), (C, BH, m)
            p0, m0, s0 = saved[n]  # (BH, D) each
            u, r, rho, g_r, g_p = work.take(C)  # (C, BH, D) each
            _chunk_states(kc, vc, v_sq[lo:hi], p0, m0, mu, beta, r, rho, u)
            _normalise(r, rho, eps)  # r: R̂_r, rho: ρ_r
            if causal:
                qc, gc = q[lo:hi], grad[lo:hi]  # (C, BH, d), (C, BH, m)
                if gq is not None:
                    s_steps = _scan(r, 1.0, s0, out=g_r).view(C * BH, d, m)  # Ŝ_r
                    torch.bmm(gc.view(C * BH, 1, m), s_steps.transpose(1, 2), out=gq[lo:hi].view(C * BH, 1, d))
                _reverse_scan(_outer(qc, gc, g_r), 1.0, a_s)  # adjoint of R̂_r
            else:
                reads = (torch.arange(lo, hi, device=k.device)[:, None] <= last) & (last < hi)  # (C, BH)
                torch.mul(reads[..., None].to(k.dtype), grad, out=g_r).add_(a_s)  # adjoint of R̂_r
            a_s.copy_(g_r[0])  # adjoint of the Ŝ entering this chunk
            torch.mul(g_r, rho, out=g_p)  # from R̂_r: adjoint of p̂_r
            g_m = torch.mul(g_p, r, out=g_r).mul_(rho)  # −2 x adjoint of m_r from R̂_r
            _reverse_scan(g_p, mu, a_p)  # adjoint of p̂_r
            _reverse_scan(g_m, beta, a_m, -2.0)  # −2 x adjoint of m_r
            torch.mul(g_p[0], mu, out=a_p)
            torch.mul(g_m[0], -0.5 * beta, out=a_m)
            g_u = g_p.addcmul_(u, g_m, value=-(1 - beta)).view(C * BH, d, m)  # adjoint of U_r
            torch.bmm(vc.view(C * BH, 1, m), g_u.transpose(1, 2), out=gk[lo:hi].view(C * BH, 1, d))  # ḡU_r v_r
            torch.bmm(kc.view(C * BH, 1, d), g_u, out=gv[lo:hi].view(C * BH, 1, m))  # ḡU_rᵀ φ(k_r)
        return gq, gk, gv, None, None, None, None
