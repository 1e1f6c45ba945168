"""First-order linear recurrences y_t = a_t·y_{t-1} + s·x_t with scalar coefficients.

Narrow inputs (the filtered input of a layer fed by few features) use the chunked closed form; wide ones
a step loop, whose (B, F) slices stay in cache (measured here: the closed form wins below about 4096
values per step, the loop above). Inside a chunk of C steps the closed form is one product with the
lower-triangular transfer matrix L[j, i] = a_{i+1}···a_j; across chunks only the end states are carried
(T/C sequential steps). Every factor is a product of coefficients in [0, 1], so nothing overflows
(no a^(-t) factors).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def transfer(coeff: Sequence[float], chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-chunk transfer matrices and decays of a coefficient sequence, in float64.

    Args:
        coeff: a_t for the T steps.
        chunk: chunk length C.

    Returns:
        ``(L, P)``: L (n, C, C) with L[k, j, i] = a_{kC+i+1}···a_{kC+j} for i <= j (0 above the diagonal),
        P (n, C) with P[k, j] = a_{kC}···a_{kC+j}, the decay of the state carried into chunk k. Steps past
        T (padding) get a = 1.
    """
    a = torch.as_tensor(coeff, dtype=torch.float64)  # (T,)
    n = -(-a.numel() // chunk)
    a = F.pad(a, (0, n * chunk - a.numel()), value=1.0).view(n, chunk)  # (n, C)
    L = torch.zeros(n, chunk, chunk, dtype=torch.float64)  # (n, C, C)
    L[:, 0, 0] = 1.0
    for j in range(1, chunk):
        L[:, j, :j] = a[:, j, None] * L[:, j - 1, :j]  # (n, j)
        L[:, j, j] = 1.0
    return L, torch.cumprod(a, dim=1)  # (n, C, C), (n, C)


@functools.lru_cache(maxsize=64)
def _transfer_as(coeff: tuple[float, ...], chunk: int, dtype: torch.dtype,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """:func:`transfer` in ``dtype`` on ``device`` and the decay across each chunk, computed once per coefficient
    sequence: a layer sees the same coefficients on every call (building L is a Python loop of C steps, about
    12% of a small heavy-ball LSTM's forward+backward here). The tensors are shared: never write to them."""
    L, P = transfer(coeff, chunk)  # (n, C, C), (n, C)
    return L.to(dtype=dtype, device=device), P.to(dtype=dtype, device=device), P[:, -1].tolist()


CLOSED_FORM_MAX_WIDTH = 4096


def scan(x: torch.Tensor, coeff: Sequence[float], scale: float, init: torch.Tensor | None = None,
         chunk: int = 32) -> torch.Tensor:
    """Run y_t = a_t·y_{t-1} + scale·x_t over the leading (time) axis.

    Args:
        x: (T, B, F) inputs, time-major.
        coeff: the T coefficients a_t (floats in [0, 1]).
        scale: the constant input scale s.
        init: (B, F) state before the first step; None means zeros.
        chunk: steps per chunk of the closed form.

    Returns:
        (T, B, F) the states y_1..y_T; differentiable with respect to ``x`` and ``init``.
    """
    if x[0].numel() > CLOSED_FORM_MAX_WIDTH:
        return _scan_steps(x, coeff, scale, init)
    T, rest = x.shape[0], x.shape[1:]
    L, P, carry_decays = _transfer_as(tuple(coeff), chunk, x.dtype, x.device)  # (n, C, C), (n, C), n floats
    n = L.shape[0]
    xs = F.pad(x.reshape(T, -1), (0, 0, 0, n * chunk - T)).view(n, chunk, -1)  # (n, C, N)
    local = torch.matmul(L, xs) * scale  # (n, C, N) states of each chunk started from zero
    carry = x.new_zeros(xs.shape[-1]) if init is None else init.reshape(-1)  # (N,)
    starts = [carry]
    ends = local[:, -1].unbind(0)  # n x (N,); unbind keeps the backward to one gather (indexing would not)
    for k in range(n - 1):
        carry = torch.add(ends[k], carry, alpha=carry_decays[k])  # (N,) state at the end of chunk k
        starts.append(carry)
    y = torch.addcmul(local, P[:, :, None], torch.stack(starts)[:, None, :])  # (n, C, N)
    return y.view(n * chunk, *rest)[:T]  # (T, B, F)


def _scan_steps(x: torch.Tensor, coeff: Sequence[float], scale: float, init: torch.Tensor | None) -> torch.Tensor:
    """:func:`scan` one step at a time."""
    y = x.new_zeros(x.shape[1:]) if init is None else init  # (B, F)
    ys = []
    for x_t, a_t in zip(x.unbind(0), coeff, strict=True):
        y = torch.add(y * a_t, x_t, alpha=scale)  # (B, F)
        ys.append(y)
    return torch.stack(ys)  # (T, B, F)
