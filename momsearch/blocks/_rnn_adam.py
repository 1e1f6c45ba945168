"""The normalised-drive (``adam``/``rmsprop``) LSTM layer as one autograd node with a hand-written reverse sweep.

drive_t = v_t / sqrt(m_t + eps), v_t = mu·v_{t-1} + s·g_t, m_t = beta·m_{t-1} + (1-beta)·g_t², then the LSTM
cell on z_t = drive_t + W_hh h_{t-1} + b_hh. The forward is a step loop under no_grad writing into
preallocated buffers, the drive's two scans (v and m) stacked into one op per step; the backward walks the
steps in reverse with one ``dz W_hh`` GEMM per step, runs the drive's two adjoint scans (again one stacked op
per step) after each chunk's sweep and forms ``dW_hh`` with one GEMM per chunk of steps. No autograd graph is
built per step.

Internally u = v/s and n = m/s² are carried, so the drive is d = u·r with r = (n + eps/s²)^(-1/2) and s never
appears per step. Saved tensors are allocated a chunk of steps at a time: whole-sequence buffers are fresh
memory on every call and page-fault here.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

ADAM_LSTM_CHUNK = 32  # steps per saved buffer and per dW_hh GEMM



def lstm_gate_scale(w_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row scale (1 for the i, f, o gates, 2 for the g gate) and ``(scale·W_hh)ᵀ``.

    tanh(x) = 2·sigmoid(2x) − 1, so doubling the g-gate rows of the pre-activation lets one sigmoid cover all
    four LSTM gates; scaling by 2 is exact.
    """
    G = w_hh.shape[0]
    scale = w_hh.new_ones(4, G // 4)  # (4, H)
    scale[2] = 2.0
    scale = scale.view(G)  # (G,)
    return scale, (w_hh * scale[:, None]).t()  # (G,), (H, G)


def lstm_gate_factors(gates: torch.Tensor, cells: torch.Tensor, tanh_c: torch.Tensor, c_before: torch.Tensor,
                      out: torch.Tensor, factors: torch.Tensor, o_dtanh: torch.Tensor) -> None:
    """What the reverse sweep of a chunk of K LSTM steps multiplies, so that a step takes two products.

    Into ``factors`` (K, B, 4H): every gate's derivative times what multiplies that gate's adjoint — dc for the
    i, f, g gates (times g, c_{t-1}, i) and dh for the o gate (times tanh c_t); into ``o_dtanh`` (K, B, H):
    o·(1 − tanh² c_t), what carries dh into dc.

    Args:
        gates: (K, B, 4H) the activated gates (g rows: tanh), order i, f, g, o.
        cells, tanh_c: (K, B, H) c_t and tanh c_t.
        c_before: (B, H) the cell state entering the chunk.
        out: (K, B, H) h_t.
    """
    K, B, G = gates.shape
    H = G // 4
    torch.addcmul(gates, gates, gates, value=-1.0, out=factors)  # (K, B, 4H) σ' = σ − σ²
    gates4, factors4 = gates.view(K, B, 4, H), factors.view(K, B, 4, H)  # (K, B, 4, H) each
    i, _, gg, o = gates4.unbind(2)  # (K, B, H) each
    torch.addcmul(gates.new_ones(()), gg, gg, value=-1.0, out=factors4[:, :, 2])  # tanh' = 1 − tanh²
    torch.addcmul(o, out, tanh_c, value=-1.0, out=o_dtanh)  # (K, B, H) o·(1 − tanh²c)
    factors4[:, :, 0].mul_(gg)  # (K, B, H)
    factors4[1:, :, 1].mul_(cells[:-1])  # (K - 1, B, H) c_{t-1}
    factors4[0, :, 1].mul_(c_before)  # (B, H)
    factors4[:, :, 2].mul_(i)  # (K, B, H)
    factors4[:, :, 3].mul_(tanh_c)  # (K, B, H)


def add_recurrent_grads(d_w: torch.Tensor, d_b: torch.Tensor, dz: torch.Tensor, out: torch.Tensor, t0: int,
                        h0: torch.Tensor) -> None:
    """Add to W_hh's (G, H) and b_hh's (G,) gradients the share of steps t0 … t0 + K − 1, whose pre-activations
    W_hh h_{t-1} + b_hh + … have the adjoints ``dz`` (K, B, G); ``out`` (T, B, H) holds h_1 … h_T, ``h0`` (B, H)
    the h before step 0."""
    K, B, G = dz.shape
    H = out.shape[-1]
    flat = dz.reshape(K * B, G)  # (K·B, G)
    if t0:
        d_w.addmm_(flat.t(), out[t0 - 1: t0 + K - 1].reshape(K * B, H))
    else:
        d_w.addmm_(flat[B:].t(), out[: K - 1].reshape((K - 1) * B, H)).addmm_(dz[0].t(), h0)
    d_b += flat.sum(0)


def recurrent_grads(dz: torch.Tensor, out: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor):
    """W_hh's (G, H), b_hh's (G,) and h0's (B, H) gradients of a whole sequence from the adjoints ``dz`` (T, B, G)
    of every pre-activation; ``out`` (T, B, H) holds h_1 … h_T."""
    d_w, d_b = torch.zeros_like(w_hh), dz.new_zeros(dz.shape[-1])  # (G, H), (G,)
    add_recurrent_grads(d_w, d_b, dz, out, 0, h0)
    return d_w, d_b, dz[0] @ w_hh  # (G, H), (G,), (B, H)


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
        scale, wt = lstm_gate_scale(w_hh)  # (G,), (H, G)
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
            gates, ur = g.new_empty(K, B, G), g.new_empty(K, 2, B, G)  # (K, B, G), (K, 2, B, G)
            drive, r = ur.unbind(1)  # (K, B, G) each: u then the drive, n then r
            cells, tanh_c = g.new_empty(K, B, H), g.new_empty(K, B, H)  # (K, B, H) each
            chunks.append((gates, drive, r, cells, tanh_c))
            u, n = _drive(g_k, u, n, mu, beta, k, e, ur)  # (B, G) each, u None when mu = 0
            torch.addcmul(b2, drive, scale, out=gates)  # (K, B, G) drive + b_hh, g rows doubled
            # unbind once: one call gives every step's view (indexing per step costs a dispatch each)
            i_k, f_k, gg_k, o_k = (x.unbind(0) for x in gates.view(K, B, 4, H).unbind(2))  # K x (B, H) each
            steps = zip(gates.unbind(0), i_k, f_k, gg_k, o_k, cells.unbind(0), tanh_c.unbind(0),
                        out[t0: t0 + K].unbind(0), strict=True)
            for z, i, f, gg, o, cell_t, tanh_t, out_t in steps:
                z.addmm_(h, wt).sigmoid_()  # (B, G)
                torch.lerp(lo, hi, gg, out=gg)  # (B, H) tanh of the g gate
                c = torch.mul(f, c, out=cell_t).addcmul_(i, gg)  # (B, H)
                h = torch.mul(o, torch.tanh(c, out=tanh_t), out=out_t)  # (B, H)
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
        d_g = torch.empty_like(g)  # (T, B, G)
        d_w, d_b = torch.zeros_like(w_hh), g.new_zeros(G)  # (G, H), (G,)
        K0 = min(ADAM_LSTM_CHUNK, T)
        dz, wx = g.new_empty(K0, B, G), g.new_empty(K0, 2, B, G)  # (K, B, G), (K, 2, B, G) r·dz and u·r³·dz
        o_dtanh = g.new_empty(K0, B, H)  # (K, B, H)
        dh_buf = g.new_empty(K0, B, H)  # (K, B, H) a chunk's d_out, then the adjoints of its h_t
        dc = d_c.clone()  # (B, H) adjoint of c_t
        a = None if mu == 0.0 else d_v * s  # (B, G) adjoint of u_t
        q = d_m * (-2.0 * s * s)  # (B, G) −2 × the adjoint of n_t
        kq = -(1.0 - beta) / (s * s)
        dz_next = None  # (B, G) dz of the step after the current one
        for ci in range(len(ctx.chunks) - 1, -1, -1):
            gates, drive, r, cells, tanh_c = ctx.chunks[ci]
            K = gates.shape[0]
            t0 = ci * ADAM_LSTM_CHUNK
            dz_k, o_dtanh_k = dz[:K], o_dtanh[:K]
            # the gate factors, multiplied by dc or dh in place step by step below: two products per step
            lstm_gate_factors(gates, cells, tanh_c, ctx.chunks[ci - 1][3][-1] if ci else c0, out[t0: t0 + K],
                              dz_k, o_dtanh_k)
            dz4 = dz_k.view(K, B, 4, H)  # (K, B, 4, H)
            f_k = gates.view(K, B, 4, H)[:, :, 1]  # (K, B, H) forget gate
            dc_col = dc[:, None]  # (B, 1, H) a view: follows dc's in-place updates
            dh_k = dh_buf[:K].copy_(d_out[t0: t0 + K])  # (K, B, H): then each step's GEMM adds in place
            views = zip(dh_k.unbind(0), o_dtanh_k.unbind(0), dz4[:, :, :3].unbind(0), dz4[:, :, 3].unbind(0),
                        f_k.unbind(0), dz_k.unbind(0), strict=True)
            for j, (dh, o_dt, dz3, dzo, f, dz_t) in reversed(list(enumerate(views))):
                if t0 + j == T - 1:
                    dh.add_(d_h)  # (B, H)
                else:
                    dh.addmm_(dz_next, w_hh)  # (B, H)
                dc.addcmul_(dh, o_dt)  # (B, H)
                dz3.mul_(dc_col)  # (B, 3, H) gates i, f, g
                dzo.mul_(dh)  # (B, H) gate o
                dc.mul_(f)  # (B, H) adjoint of c_{t-1} through c_t
                dz_next = dz_t  # (B, G)
            w_k, x3_k = wx[:K].unbind(1)  # (K, B, G) each
            torch.mul(drive, r, out=x3_k)  # (K, B, G) u·r²
            torch.mul(r, dz_k, out=w_k)  # (K, B, G) r·dz
            x3_k.mul_(w_k)  # (K, B, G) u·r³·dz
            a, q = _adjoint_scans(wx[:K], a, q, mu, beta, t0 + K == T)  # (B, G) each, in place
            torch.addcmul(w_k, g[t0: t0 + K], x3_k, value=kq, out=d_g[t0: t0 + K])  # (K, B, G)
            dz_next = dz_next.clone()  # (B, G) the buffer is reused by the next chunk
            add_recurrent_grads(d_w, d_b, dz_k, out, t0, h0)
        d_h0 = dz_next @ w_hh  # (B, H)
        d_v0 = None if mu == 0.0 else a * (mu / s)  # (B, G)
        d_m0 = q * (-beta / (2.0 * s * s))  # (B, G)
        return d_g, d_h0, dc, d_v0, d_m0, d_w, d_b, None, None, None, None


def _drive(g, u, n, mu, beta, k, e, ur):
    """The normalised drive of the steps of ``g`` (K, B, G), into ``ur`` (K, 2, B, G): ``ur[:, 0]`` the drive
    u_t·r_t and ``ur[:, 1]`` r_t = (n_t + e)^(-1/2), from the scans u_t = mu·u_{t-1} + g_t and
    n_t = beta·n_{t-1} + k·g_t², stacked so that a step is one op (``u`` None, mu = 0: n alone, drive g_t·r_t).
    Returns the final u (None when mu = 0) and n (B, G), copies.
    """
    u_steps, n_steps = ur.unbind(1)  # (K, B, G) each
    torch.addcmul(g.new_zeros(()), g, g, value=k, out=n_steps)  # (K, B, G) k·g²
    if u is None:
        for x in n_steps.unbind(0):
            n = torch.add(x, n, alpha=beta, out=x)  # (B, G)
        u_last, n_last = None, n.clone()
    else:
        u_steps.copy_(g)
        decay = g.new_tensor([mu, beta]).view(2, 1, 1)  # (2, 1, 1)
        state = torch.stack([u, n])  # (2, B, G)
        for x in ur.unbind(0):
            state = torch.addcmul(x, decay, state, out=x)  # (2, B, G) (u, n)_t
        u_last, n_last = state[0].clone(), state[1].clone()
    n_steps.add_(e).rsqrt_()  # (K, B, G) r = s/sqrt(m + eps)
    torch.mul(g if u is None else u_steps, n_steps, out=u_steps)  # (K, B, G) the drive
    return u_last, n_last


def _adjoint_scans(wx, a, q, mu, beta, ends_sequence):
    """In place, backwards over the K steps of ``wx`` (K, 2, B, G): a_t = w_t + mu·a_{t+1} into ``wx[:, 0]`` and
    q_t = x_t + beta·q_{t+1} into ``wx[:, 1]`` (a None, mu = 0: q alone), from the adjoints ``a``, ``q`` (B, G)
    carried in from the step after the chunk; when the chunk ends the sequence they enter with weight 1.
    Returns the adjoints at the chunk's first step, copies."""
    steps = wx.unbind(0)[::-1]  # K x (2, B, G), last step first
    if a is None:
        q_steps = wx[:, 1].unbind(0)[::-1]  # K x (B, G)
        for j, x in enumerate(q_steps):
            q = torch.add(x, q, alpha=1.0 if j == 0 and ends_sequence else beta, out=x)  # (B, G)
        return None, q.clone()
    decay = wx.new_tensor([mu, beta]).view(2, 1, 1)  # (2, 1, 1)
    state = torch.stack([a, q])  # (2, B, G)
    for j, x in enumerate(steps):
        if j == 0 and ends_sequence:
            state = torch.add(x, state, out=x)  # (2, B, G)
        else:
            state = torch.addcmul(x, decay, state, out=x)  # (2, B, G) (a, q)_t
    return state[0].clone(), state[1].clone()


def adam_tanh(g: torch.Tensor, h: torch.Tensor, v: torch.Tensor | None, m: torch.Tensor, w_hh: torch.Tensor,
              b_hh: torch.Tensor, mu: float, s: float, beta: float, eps: float):
    """Run the adam-driven tanh cell h_t = tanh(drive_t + W_hh h_{t-1} + b_hh) over a sequence.

    Arguments as for :func:`adam_lstm` without the cell state, G = H. The drive depends on the input only, so
    it is formed for all steps before the recurrence (its two scans are the only other per-step work) and its
    adjoint after the reverse sweep; whole-sequence buffers (the block calls it on segments of a long sequence,
    the state carried).

    Returns:
        ``(out, h, v, m)``: outputs (T, B, H), final h, final v (None when mu = 0) and m (B, H).
    """
    return _AdamTanh.apply(g, h, v, m, w_hh, b_hh, mu, s, beta, eps)


class _AdamTanh(torch.autograd.Function):
    """The whole recurrence of one tanh layer; see :func:`adam_tanh` (the drive as in :class:`_AdamLSTM`)."""

    @staticmethod
    def forward(ctx, g, h0, v0, m0, w_hh, b_hh, mu, s, beta, eps):
        T, B, H = g.shape
        wt = w_hh.t()  # (H, H)
        drive, r, v_out, m_out = _drive_forward(g, v0, m0, mu, s, beta, eps)  # (T, B, H) x 2, (B, H) x 2
        out = torch.add(drive, b_hh)  # (T, B, H) drive + b_hh, then each step adds W_hh h and activates
        h = h0
        for out_t in out.unbind(0):
            h = out_t.addmm_(h, wt).tanh_()  # (B, H)
        ctx.save_for_backward(g, h0, w_hh, out, drive, r)
        ctx.hyper = (mu, s, beta)
        return out, h.clone(), v_out, m_out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h, d_v, d_m):
        g, h0, w_hh, out, drive, r = ctx.saved_tensors
        mu, s, beta = ctx.hyper
        T, B, H = g.shape
        dz = torch.addcmul(torch.ones_like(out), out, out, value=-1.0)  # (T, B, H) tanh' = 1 − h²
        dh_all = d_out.clone(memory_format=torch.contiguous_format)  # (T, B, H) then the adjoints of every h_t
        dz_next = None
        for dh, dz_t in reversed(list(zip(dh_all.unbind(0), dz.unbind(0), strict=True))):
            if dz_next is None:
                dh.add_(d_h)  # (B, H)
            else:
                dh.addmm_(dz_next, w_hh)  # (B, H)
            dz_next = dz_t.mul_(dh)  # (B, H) adjoint of the pre-activation = of the drive
        d_g, d_v0, d_m0 = _drive_backward(g, drive, r, dz, d_v, d_m, mu, s, beta)  # (T, B, H), (B, H) x 2
        d_w, d_b, d_h0 = recurrent_grads(dz, out, h0, w_hh)  # (H, H), (H,), (B, H)
        return d_g, d_h0, d_v0, d_m0, d_w, d_b, None, None, None, None


def adam_gru(g: torch.Tensor, h: torch.Tensor, v: torch.Tensor | None, m: torch.Tensor, w_hh: torch.Tensor,
             b_hh: torch.Tensor, mu: float, s: float, beta: float, eps: float):
    """Run the adam-driven GRU over a sequence (torch's GRU on the drive d_t instead of W_ih x_t + b_ih):

    hh = W_hh h + b_hh ; r, z = sigmoid(d_{r,z} + hh_{r,z}) ; n = tanh(d_n + r·hh_n) ; h' = n + z·(h − n)

    Arguments as for :func:`adam_tanh`, G = 3H (gate order r, z, n). In the reverse sweep every gradient of a
    step is dh_t times a coefficient formed for all steps beforehand, so a step costs one GEMM and three
    products. Returns ``(out, h, v, m)``.
    """
    return _AdamGRU.apply(g, h, v, m, w_hh, b_hh, mu, s, beta, eps)


class _AdamGRU(torch.autograd.Function):
    """The whole recurrence of one GRU layer; see :func:`adam_gru`."""

    @staticmethod
    def forward(ctx, g, h0, v0, m0, w_hh, b_hh, mu, s, beta, eps):
        T, B, G = g.shape
        H = G // 3
        wt = w_hh.t()  # (H, 3H)
        drive, r, v_out, m_out = _drive_forward(g, v0, m0, mu, s, beta, eps)  # (T, B, 3H) x 2, (B, 3H) x 2
        hh, rz = g.new_empty(T, B, G), g.new_empty(T, B, 2 * H)  # (T, B, 3H), (T, B, 2H)
        n_all, out = g.new_empty(T, B, H), g.new_empty(T, B, H)  # (T, B, H) each
        h = h0
        steps = zip(drive.unbind(0), hh.unbind(0), rz.unbind(0), n_all.unbind(0), out.unbind(0), strict=True)
        for d_t, hh_t, rz_t, n_t, out_t in steps:
            torch.addmm(b_hh, h, wt, out=hh_t)  # (B, 3H)
            torch.add(d_t[:, : 2 * H], hh_t[:, : 2 * H], out=rz_t).sigmoid_()  # (B, 2H) r, z
            torch.addcmul(d_t[:, 2 * H:], rz_t[:, :H], hh_t[:, 2 * H:], out=n_t).tanh_()  # (B, H) n
            h = torch.addcmul(n_t, rz_t[:, H:], h - n_t, out=out_t)  # (B, H)
        ctx.save_for_backward(g, h0, w_hh, drive, r, hh, rz, n_all, out)
        ctx.hyper = (mu, s, beta)
        return out, h.clone(), v_out, m_out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h, d_v, d_m):
        g, h0, w_hh, drive, r, hh, rz, n_all, out = ctx.saved_tensors
        mu, s, beta = ctx.hyper
        T, B, G = g.shape
        H = G // 3
        rg, zg, hh_n = rz[:, :, :H], rz[:, :, H:], hh[:, :, 2 * H:]  # (T, B, H) each
        h_prev = torch.cat([h0[None], out[:-1]])  # (T, B, H)
        a_n = (1.0 - zg) * (1.0 - n_all * n_all)  # (T, B, H) d pre_n / d h'
        # per step, the gradients w.r.t. hh (r, z, n rows) are dh_t times these
        coef = torch.stack([a_n * hh_n * rg * (1.0 - rg), (h_prev - n_all) * zg * (1.0 - zg), a_n * rg], dim=2)
        dhh = torch.empty_like(coef)  # (T, B, 3, H) adjoint of hh
        dh_all = d_out.clone(memory_format=torch.contiguous_format)  # (T, B, H) then the adjoints of every h_t
        views = zip(coef.unbind(0), dhh.unbind(0), dh_all.unbind(0), zg.unbind(0), strict=True)
        dhh_next = dh_next = z_next = None
        for coef_t, dhh_t, dh_t, z_t in reversed(list(views)):
            if dh_next is None:
                dh_t.add_(d_h)  # (B, H)
            else:
                dh_t.addmm_(dhh_next.view(B, G), w_hh).addcmul_(dh_next, z_next)  # (B, H)
            torch.mul(coef_t, dh_t[:, None], out=dhh_t)  # (B, 3, H)
            dhh_next, dh_next, z_next = dhh_t, dh_t, z_t
        # the drive enters the r, z rows as hh does, and the n row without the factor r
        d_drive = torch.cat([dhh[:, :, :2].reshape(T, B, 2 * H), dh_all * a_n], dim=2)  # (T, B, 3H)
        d_g, d_v0, d_m0 = _drive_backward(g, drive, r, d_drive, d_v, d_m, mu, s, beta)  # (T, B, 3H), (B, 3H) x 2
        flat = dhh.view(T * B, G)  # (T·B, 3H)
        d_w = flat.t() @ h_prev.view(T * B, H)  # (3H, H)
        d_b = flat.sum(0)  # (3H,)
        d_h0 = torch.addcmul(dhh[0].view(B, G) @ w_hh, dh_all[0], zg[0])  # (B, H)
        return d_g, d_h0, d_v0, d_m0, d_w, d_b, None, None, None, None


def _drive_forward(g, v0, m0, mu, s, beta, eps):
    """The normalised drive of every step from the input terms g (T, B, G), as in :class:`_AdamLSTM`.

    Returns ``(drive, r, v, m)``: the drive and r = s/sqrt(m_t + eps) (T, B, G), the final v (None when
    mu = 0) and m (B, G).
    """
    T, B, G = g.shape
    ur = g.new_empty(T, 2, B, G)  # (T, 2, B, G) the drive and r
    u = None if v0 is None else v0 / s  # (B, G) v/s
    u, n = _drive(g, u, m0 / (s * s), mu, beta, (1.0 - beta) / (s * s), eps / (s * s), ur)  # (B, G) each
    v_out = None if u is None else u * s  # (B, G)
    return *ur.unbind(1), v_out, n * (s * s)


def _drive_backward(g, drive, r, dz, d_v, d_m, mu, s, beta):
    """Adjoint of :func:`_drive_forward`: from dz (T, B, G), the drive's gradient, and the final v's and m's
    gradients to those of g (T, B, G), v0 and m0 (B, G) (None when mu = 0)."""
    T, B, G = g.shape
    wx = g.new_empty(T, 2, B, G)  # (T, 2, B, G) r·dz and u·r³·dz, then their adjoint scans
    w, x3 = wx.unbind(1)  # (T, B, G) each
    torch.mul(drive, r, out=x3)  # (T, B, G) u·r²
    torch.mul(r, dz, out=w)  # (T, B, G) r·dz
    x3.mul_(w)  # (T, B, G) u·r³·dz
    a = None if mu == 0.0 else d_v * s  # (B, G) adjoint of u_t
    a, q = _adjoint_scans(wx, a, d_m * (-2.0 * s * s), mu, beta, True)  # (B, G) each; q: −2 × adjoint of n
    d_g = torch.addcmul(w, g, x3, value=-(1.0 - beta) / (s * s))  # (T, B, G)
    d_v0 = None if mu == 0.0 else a * (mu / s)  # (B, G)
    d_m0 = q * (-beta / (2.0 * s * s))  # (B, G)
    return d_g, d_v0, d_m0
