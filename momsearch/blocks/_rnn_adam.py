"""The normalised-drive (``adam``/``rmsprop``) LSTM layer as one autograd node with a hand-written reverse sweep.

drive_t = v_t / sqrt(m_t + eps), v_t = mu·v_{t-1} + s·g_t, m_t = beta·m_{t-1} + (1-beta)·g_t², then the LSTM
cell on z_t = drive_t + W_hh h_{t-1} + b_hh. The forward is a step loop under no_grad writing into
preallocated buffers; the backward walks the steps in reverse with one ``dz W_hh`` GEMM per step, runs the
drive's adjoint recurrences in the same sweep and forms ``dW_hh`` with one GEMM per chunk of steps. No
autograd graph is built per step.

Internally u = v/s and n = m/s² are carried, so the drive is d = u·r with r = (n + eps/s²)^(-1/2) and s never
appears per step. Saved tensors are allocated a chunk of steps at a time: whole-sequence buffers are fresh
memory on every call and page-fault here.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

ADAM_LSTM_CHUNK = 32  # steps per saved buffer and per dW_hh GEMM


def adam_lstm(g: torch.Tensor, h: torch.Tensor, c: torch.Tensor, v: torch.Tensor | None, m: torch.Tensor,
              w_hh: torch.Tensor, b_hh: torch.Tensor, mu: float, s: float, beta: float, eps: float):
    """Run the adam-driven LSTM over a sequence.

    Args:
        g: (T, B, 4H) the input term W_ih x_t + b_ih of every step.
        h: (B, H) initial hidden state.
        c: (B, H) initial cell state.
        v: (B, 4H) momentum before the first step; None when mu = 0 (rmsprop).
        m: (B, 4H) squared-drive average before the first step.
        w_hh: (4H, H) recurrent weight, gate order i, f, g, o.
        b_hh: (4H,) recurrent bias.
        mu, s, beta, eps: the rule's hyperparameters (s > 0, eps > 0).

    Returns:
        ``(out, h, c, v, m)``: outputs (T, B, H), final h and c (B, H), final v (None when mu = 0) and m
        (B, 4H).
    """
    return _AdamLSTM.apply(g, h, c, v, m, w_hh, b_hh, mu, s, beta, eps)


class _AdamLSTM(torch.autograd.Function):
    """The whole recurrence of one layer; see :func:`adam_lstm`."""

    @staticmethod
    def forward(ctx, g, h0, c0, v0, m0, w_hh, b_hh, mu, s, beta, eps):
        T, B, G = g.shape
        H = G // 4
        # tanh(x) = 2·sigmoid(2x) − 1 (tanh is several times slower than sigmoid here): the g-gate rows of
        # the pre-activation are doubled so that one sigmoid covers all four gates
        scale = g.new_ones(4, H)  # (4, H)
        scale[2] = 2.0
        scale = scale.view(G)  # (G,)
        wt = (w_hh * scale[:, None]).t()  # (H, G)
        b2 = b_hh * scale  # (G,)
        lo, hi = g.new_full((), -1.0), g.new_ones(())
        u = None if v0 is None else v0 / s  # (B, G) v/s
        n = m0 / (s * s)  # (B, G) m/s²
        e, k = eps / (s * s), (1.0 - beta) / (s * s)
        out = g.new_empty(T, B, H)  # (T, B, H)
        h, c = h0, c0
        chunks = []
        for t0 in range(0, T, ADAM_LSTM_CHUNK):
            K = min(ADAM_LSTM_CHUNK, T - t0)
            g_k = g[t0: t0 + K]  # (K, B, G)
            gates, drive, r = (g.new_empty(K, B, G) for _ in range(3))  # (K, B, G) each
            cells, tanh_c = g.new_empty(K, B, H), g.new_empty(K, B, H)  # (K, B, H) each
            chunks.append((gates, drive, r, cells, tanh_c))
            for j in range(K):  # the two scans, u into ``drive`` and n into ``r``
                if u is not None:
                    u = torch.add(g_k[j], u, alpha=mu, out=drive[j])  # (B, G) u = mu·u + g
                n = torch.mul(n, beta, out=r[j]).addcmul_(g_k[j], g_k[j], value=k)  # (B, G) beta·n + (1-beta)/s²·g²
            u = None if u is None else u.clone()  # (B, G)
            n = n.clone()  # (B, G)
            r.add_(e).rsqrt_()  # (K, B, G) s/sqrt(m + eps)
            torch.mul(g_k if u is None else drive, r, out=drive)  # (K, B, G) the drive
            torch.addcmul(b2, drive, scale, out=gates)  # (K, B, G) drive + b_hh, g rows doubled
            for j in range(K):
                z = gates[j].addmm_(h, wt).sigmoid_()  # (B, G)
                i, f, gg, o = z.split(H, dim=1)  # (B, H) each
                torch.lerp(lo, hi, gg, out=gg)  # (B, H) tanh of the g gate
                c = torch.mul(f, c, out=cells[j]).addcmul_(i, gg)  # (B, H)
                tc = torch.mul(c, 2.0, out=tanh_c[j]).sigmoid_()  # (B, H)
                h = torch.mul(o, torch.lerp(lo, hi, tc, out=tc), out=out[t0 + j])  # (B, H)
        ctx.save_for_backward(g, h0, c0, w_hh, out)
        ctx.chunks, ctx.hyper = chunks, (mu, s, beta)
        v_out = None if u is None else u * s  # (B, G)
        return out, h.clone(), c.clone(), v_out, n * (s * s)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h, d_c, d_v, d_m):
        g, h0, c0, w_hh, out = ctx.saved_tensors
        mu, s, beta = ctx.hyper
        T, B, G = g.shape
        H = G // 4
        hi = g.new_ones(())
        d_g = torch.empty_like(g)  # (T, B, G)
        d_w, d_b = torch.zeros_like(w_hh), g.new_zeros(G)  # (G, H), (G,)
        K0 = min(ADAM_LSTM_CHUNK, T)
        dz, w, x3 = (g.new_empty(K0, B, G) for _ in range(3))  # (K, B, G) each
        o_dtanh = g.new_empty(K0, B, H)  # (K, B, H)
        up = g.new_empty(B, G)  # (B, G) what multiplies each gate's derivative
        dh = g.new_empty(B, H)  # (B, H)
        dc = d_c.clone()  # (B, H) adjoint of c_t
        a = None if mu == 0.0 else d_v * s  # (B, G) adjoint of u_t
        q = d_m * (-2.0 * s * s)  # (B, G) −2 × the adjoint of n_t
        kq = -(1.0 - beta) / (s * s)
        dz_next = None  # (B, G) dz of the step after the current one
        for ci in range(len(ctx.chunks) - 1, -1, -1):
            gates, drive, r, cells, tanh_c = ctx.chunks[ci]
            K = gates.shape[0]
            t0 = ci * ADAM_LSTM_CHUNK
            dz_k, w_k, x3_k, o_dtanh_k = dz[:K], w[:K], x3[:K], o_dtanh[:K]
            torch.addcmul(gates, gates, gates, value=-1.0, out=dz_k)  # (K, B, G) σ' = σ − σ²
            gg = gates[:, :, 2 * H: 3 * H]  # (K, B, H)
            torch.addcmul(hi, gg, gg, value=-1.0, out=dz_k[:, :, 2 * H: 3 * H])  # tanh' = 1 − tanh²
            o = gates[:, :, 3 * H:]  # (K, B, H)
            torch.addcmul(o, out[t0: t0 + K], tanh_c, value=-1.0, out=o_dtanh_k)  # (K, B, H) o·(1 − tanh²c)
            for j in range(K - 1, -1, -1):
                t = t0 + j
                if t == T - 1:
                    torch.add(d_out[t], d_h, out=dh)  # (B, H)
                else:
                    torch.addmm(d_out[t], dz_next, w_hh, out=dh)  # (B, H)
                i, f, gg_t, _ = gates[j].split(H, dim=1)  # (B, H) each
                c_prev = cells[j - 1] if j else (ctx.chunks[ci - 1][3][-1] if ci else c0)  # (B, H)
                dc.addcmul_(dh, o_dtanh_k[j])  # (B, H)
                torch.mul(dc, gg_t, out=up[:, :H])
                torch.mul(dc, c_prev, out=up[:, H: 2 * H])
                torch.mul(dc, i, out=up[:, 2 * H: 3 * H])
                torch.mul(dh, tanh_c[j], out=up[:, 3 * H:])
                dc.mul_(f)  # (B, H) adjoint of c_{t-1} through c_t
                dz_next = dz_k[j].mul_(up)  # (B, G)
            torch.mul(drive, r, out=x3_k)  # (K, B, G) u·r²
            torch.mul(r, dz_k, out=w_k)  # (K, B, G) r·dz
            x3_k.mul_(w_k)  # (K, B, G) u·r³·dz
            for j in range(K - 1, -1, -1):  # the two adjoint scans, in place
                last = t0 + j == T - 1
                if a is not None:
                    a = torch.add(w_k[j], a, alpha=1.0 if last else mu, out=w_k[j])  # (B, G)
                q = torch.add(x3_k[j], q, alpha=1.0 if last else beta, out=x3_k[j])  # (B, G)
            torch.addcmul(w_k, g[t0: t0 + K], x3_k, value=kq, out=d_g[t0: t0 + K])  # (K, B, G)
            a = None if a is None else a.clone()  # (B, G) the buffers are reused by the next chunk
            q, dz_next = q.clone(), dz_next.clone()  # (B, G) each
            flat = dz_k.reshape(K * B, G)  # (K·B, G)
            if t0:
                d_w.addmm_(flat.t(), out[t0 - 1: t0 + K - 1].reshape(K * B, H))
            else:
                d_w.addmm_(flat[B:].t(), out[: K - 1].reshape((K - 1) * B, H)).addmm_(dz[0].t(), h0)
            d_b += flat.sum(0)
        d_h0 = dz_next @ w_hh  # (B, H)
        d_v0 = None if mu == 0.0 else a * (mu / s)  # (B, G)
        d_m0 = q * (-beta / (2.0 * s * s))  # (B, G)
        return d_g, d_h0, dc, d_v0, d_m0, d_w, d_b, None, None, None, None
