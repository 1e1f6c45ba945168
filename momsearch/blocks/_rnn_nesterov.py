"""Pre-activation momentum on the LSTM (``preactivation`` path) as one autograd node with a hand-written backward.

y_t = W_hh h_{t-1} + b_hh − s·g_t ;  z_t = y_t + c_t·(y_t − y_{t-1}) = (1 + c_t)·y_t − c_t·y_{t-1}, then the
LSTM cell on z_t (gate order i, f, g, o), and the same on the tanh cell. The LSTM forward is a step loop under
no_grad writing into buffers allocated a chunk of ``CHUNK`` steps at a time (whole-sequence buffers page-fault);
the backward walks the chunks and their steps in reverse with one ``dy W_hh`` GEMM per step and forms dW_hh and
db_hh with one GEMM per chunk. No autograd graph is built per step, so one forward records one node instead of
O(T), but every step still dispatches its kernels (about 15 forward and backward).

The adjoint of y_t is dy_t = (1 + c_t)·dz_t − c_{t+1}·dz_{t+1} (plus the final y's gradient at the last step):
y_t enters z_t and z_{t+1}. The backward forms (1 + c_t)·dz_t from precomputed products (gate derivative
times what multiplies dc or dh), two products per step. The g gate's tanh is computed as 2·sigmoid(2x) − 1
(one sigmoid for all four gates), which differs from ``torch.tanh`` by rounding only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from ._rnn_adam import add_recurrent_grads, lstm_gate_factors, lstm_gate_scale, recurrent_grads

CHUNK = 32  # steps per saved buffer and per dW_hh GEMM: buffers over glibc's 32 MB mmap ceiling page-fault on
# every call (measured here: ~1 ms per 8 MB first touched)


def nesterov_lstm(g: torch.Tensor, s: float, coeff: Sequence[float], h: torch.Tensor, c: torch.Tensor,
                  y: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor):
    """Run the pre-activation Nesterov LSTM over a sequence.

    Args:
        g: (T, B, 4H) the input term W_ih x_t + b_ih of every step.
        s: the step size.
        coeff: the T Nesterov coefficients c_t (0 at a restart).
        h: (B, H) initial hidden state.
        c: (B, H) initial cell state.
        y: (B, 4H) the previous pre-activation y_{t-1} (zeros at the start of a sequence).
        w_hh: (4H, H) recurrent weight.
        b_hh: (4H,) recurrent bias.

    Returns:
        ``(out, h, c, y)``: outputs (T, B, H), final h and c (B, H), final y (B, 4H).
    """
    return _NesterovLSTM.apply(g, h, c, y, w_hh, b_hh, s, tuple(float(x) for x in coeff))


class _NesterovLSTM(torch.autograd.Function):
    """The whole recurrence of one layer; see :func:`nesterov_lstm`."""

    @staticmethod
    def forward(ctx, g, h0, c0, y0, w_hh, b_hh, s, coeff):
        T, B, G = g.shape
        H = G // 4
        # the g-gate rows are doubled so that one sigmoid covers all four gates (tanh x = 2·sigmoid(2x) − 1);
        # scaling by 2 is exact, and z is linear in y, so y is carried scaled
        scale, wt = lstm_gate_scale(w_hh)  # (G,), (H, G)
        b2 = b_hh * scale  # (G,)
        lo, hi = g.new_full((), -1.0), g.new_ones(())
        out = g.new_empty(T, B, H)  # (T, B, H)
        K0 = min(CHUNK, T)
        base = g.new_empty(K0, B, G)  # (K, B, G) scaled b_hh − s·g_t of one chunk, reused
        y_prev = y0 * scale  # (B, G)
        h, c = h0, c0
        chunks = []
        for t0 in range(0, T, CHUNK):
            K = min(CHUNK, T - t0)
            gates = g.new_empty(K, B, G)  # (K, B, G) activated gates (g rows: tanh)
            cells, tanh_c = g.new_empty(K, B, H), g.new_empty(K, B, H)  # (K, B, H) each
            chunks.append((gates, cells, tanh_c))
            y_prev = y_prev.clone() if t0 else y_prev  # (B, G) its row of ``base`` is overwritten next
            base_k = torch.addcmul(b2, g[t0: t0 + K], scale, value=-s, out=base[:K])  # (K, B, G)
            # unbind once: one call gives every step's view (indexing per step costs a dispatch each)
            i_k, f_k, gg_k, o_k = (x.unbind(0) for x in gates.view(K, B, 4, H).unbind(2))  # K x (B, H) each
            steps = zip(base_k.unbind(0), gates.unbind(0), i_k, f_k, gg_k, o_k, cells.unbind(0),
                        tanh_c.unbind(0), out[t0: t0 + K].unbind(0), coeff[t0: t0 + K], strict=True)
            for base_t, z, i, f, gg, o, cell_t, tanh_t, out_t, ct in steps:
                y = base_t.addmm_(h, wt)  # (B, G) scaled y_t, in place of the base
                if ct:
                    torch.lerp(y_prev, y, 1.0 + ct, out=z).sigmoid_()  # (B, G) y_t + c_t·(y_t − y_{t-1})
                else:
                    torch.sigmoid(y, out=z)  # (B, G)
                torch.lerp(lo, hi, gg, out=gg)  # (B, H) tanh of the g gate
                c = torch.mul(f, c, out=cell_t).addcmul_(i, gg)  # (B, H)
                h = torch.mul(o, torch.tanh(c, out=tanh_t), out=out_t)  # (B, H)
                y_prev = y
        ctx.save_for_backward(h0, c0, w_hh, out)
        ctx.chunks, ctx.hyper = chunks, (s, coeff)
        return out, h.clone(), c.clone(), y_prev / scale

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h, d_c, d_y):
        h0, c0, w_hh, out = ctx.saved_tensors
        s, coeff = ctx.hyper
        T, B, H = out.shape
        G = 4 * H
        K0 = min(CHUNK, T)
        # per chunk: what multiplies dc (gates i, f, g) and dh (gate o) in each gate's adjoint, times the gate's
        # derivative and (1 + c_t), so that dz'_t = (1 + c_t)·dz_t takes two products per step
        q, dzp = (out.new_empty(K0, B, 4, H) for _ in range(2))  # (K, B, 4, H) each, reused
        o_dtanh = out.new_empty(K0, B, H)  # (K, B, H)
        d_g = out.new_empty(T, B, G)  # (T, B, G) the adjoint of every y_t, scaled by −s at the end
        d_w, d_b = torch.zeros_like(w_hh), out.new_zeros(G)  # (G, H), (G,)
        one_plus = torch.tensor([1.0 + x for x in coeff], dtype=out.dtype, device=out.device)  # (T,)
        # y_t enters z_{t+1} with weight −c_{t+1}: in terms of dz'_{t+1} that is −c_{t+1}/(1 + c_{t+1})
        ahead = [-coeff[t + 1] / (1.0 + coeff[t + 1]) for t in range(T - 1)] + [0.0]
        dh_buf = out.new_empty(K0, B, H)  # (K, B, H) a chunk's d_out, then the adjoints of its h_t
        dc = d_c.clone()  # (B, H) adjoint of c_t
        dc_col = dc[:, None]  # (B, 1, H) a view: follows dc's in-place updates
        dzp_next = dy_next = None
        for ci in range(len(ctx.chunks) - 1, -1, -1):
            gates, cells, tanh_c = ctx.chunks[ci]
            K, t0 = gates.shape[0], ci * CHUNK
            f_k = gates.view(K, B, 4, H)[:, :, 1]  # (K, B, H) forget gate
            q_k, dzp_k, o_dtanh_k = q[:K], dzp[:K], o_dtanh[:K]
            lstm_gate_factors(gates, cells, tanh_c, ctx.chunks[ci - 1][1][-1] if ci else c0, out[t0: t0 + K],
                              q_k.view(K, B, G), o_dtanh_k)
            q_k.mul_(one_plus[t0: t0 + K, None, None, None])  # (K, B, 4, H)
            d_y_k = d_g[t0: t0 + K]  # (K, B, G)
            dh_k = dh_buf[:K].copy_(d_out[t0: t0 + K])  # (K, B, H): then each step's GEMM adds in place
            views = zip(dh_k.unbind(0), q_k[:, :, :3].unbind(0), q_k[:, :, 3].unbind(0),
                        o_dtanh_k.unbind(0), f_k.unbind(0), dzp_k[:, :, :3].unbind(0), dzp_k[:, :, 3].unbind(0),
                        dzp_k.view(K, B, G).unbind(0), d_y_k.unbind(0), strict=True)
            for j, (dh, q3, qo, o_dt, f, dz3, dzo, dz_t, dy_t) in reversed(list(enumerate(views))):
                if dy_next is None:
                    dh.add_(d_h)  # (B, H)
                else:
                    dh.addmm_(dy_next, w_hh)  # (B, H)
                dc.addcmul_(dh, o_dt)  # (B, H) adjoint of c_t
                torch.mul(q3, dc_col, out=dz3)  # (B, 3, H) gates i, f, g
                torch.mul(qo, dh, out=dzo)  # (B, H) gate o
                dc.mul_(f)  # (B, H) adjoint of c_{t-1} through c_t
                if dzp_next is None:
                    dy_next = torch.add(dz_t, d_y, out=dy_t)  # (B, G)
                else:
                    dy_next = torch.add(dz_t, dzp_next, alpha=ahead[t0 + j], out=dy_t)  # (B, G)
                dzp_next = dz_t
            dzp_next = dzp_next.clone()  # (B, G) the buffer is reused by the next chunk
            add_recurrent_grads(d_w, d_b, d_y_k, out, t0, h0)
        d_h0 = d_g[0] @ w_hh  # (B, H)
        d_y0 = dzp_next * (-coeff[0] / (1.0 + coeff[0]))  # (B, G)
        return d_g.mul_(-s), d_h0, dc, d_y0, d_w, d_b, None, None


def nesterov_tanh(g: torch.Tensor, s: float, coeff: Sequence[float], h: torch.Tensor, y: torch.Tensor,
                  w_hh: torch.Tensor, b_hh: torch.Tensor):
    """Run the pre-activation Nesterov tanh cell (h_t = tanh z_t) over a sequence; arguments as for
    :func:`nesterov_lstm` without the cell state, G = H. Returns ``(out, h, y)``."""
    return _NesterovTanh.apply(g, h, y, w_hh, b_hh, s, tuple(float(x) for x in coeff))


class _NesterovTanh(torch.autograd.Function):
    """The whole recurrence of one tanh layer; see :func:`nesterov_tanh`."""

    @staticmethod
    def forward(ctx, g, h0, y0, w_hh, b_hh, s, coeff):
        T, B, H = g.shape
        wt = w_hh.t()  # (H, H)
        base = torch.add(b_hh, g, alpha=-s)  # (T, B, H) b_hh − s·g_t
        out = g.new_empty(T, B, H)  # (T, B, H)
        y_prev, h = y0, h0
        for base_t, out_t, ct in zip(base.unbind(0), out.unbind(0), coeff, strict=True):
            y = base_t.addmm_(h, wt)  # (B, H) y_t, in place of the base
            h = torch.lerp(y_prev, y, 1.0 + ct, out=out_t) if ct else out_t.copy_(y)  # (B, H) z_t
            h.tanh_()
            y_prev = y
        ctx.save_for_backward(h0, w_hh, out)
        ctx.hyper = (s, coeff)
        return out, h.clone(), y_prev.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h, d_y):
        h0, w_hh, out = ctx.saved_tensors
        s, coeff = ctx.hyper
        T, B, H = out.shape
        one_plus = torch.tensor([1.0 + x for x in coeff], dtype=out.dtype, device=out.device)  # (T,)
        # (1 + c_t)·tanh'(z_t): then dz'_t = (1 + c_t)·dz_t is one product per step
        q = torch.addcmul(torch.ones_like(out), out, out, value=-1.0).mul_(one_plus[:, None, None])  # (T, B, H)
        dzp = torch.empty_like(out)  # (T, B, H)
        d_y_steps = torch.empty_like(out)  # (T, B, H) adjoint of every y_t
        dh_all = d_out.clone(memory_format=torch.contiguous_format)  # (T, B, H) then the adjoints of every h_t
        ahead = [-coeff[t + 1] / (1.0 + coeff[t + 1]) for t in range(T - 1)] + [0.0]
        views = zip(dh_all.unbind(0), q.unbind(0), dzp.unbind(0), d_y_steps.unbind(0), strict=True)
        dzp_next = dy_next = None
        for t, (dh, q_t, dz_t, dy_t) in reversed(list(enumerate(views))):
            if dy_next is None:
                dh.add_(d_h)  # (B, H)
            else:
                dh.addmm_(dy_next, w_hh)  # (B, H)
            torch.mul(q_t, dh, out=dz_t)  # (B, H)
            if dzp_next is None:
                dy_next = torch.add(dz_t, d_y, out=dy_t)  # (B, H)
            else:
                dy_next = torch.add(dz_t, dzp_next, alpha=ahead[t], out=dy_t)  # (B, H)
            dzp_next = dz_t
        d_w, d_b, d_h0 = recurrent_grads(d_y_steps, out, h0, w_hh)  # (H, H), (H,), (B, H)
        d_y0 = dzp[0] * (-coeff[0] / (1.0 + coeff[0]))  # (B, H)
        return d_y_steps * -s, d_h0, d_y0, d_w, d_b, None, None
