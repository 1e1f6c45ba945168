"""Momentum on the residual stream across encoder layers (block option ``residual``).

    v_l = mu_r·v_{l-1} + a_l ;  x <- x + s_r·v_l      (v_0 = 0; ``plain``: x <- x + a_l)

``adaptive`` sets mu_r per token: clip((1 − sqrt(‖a_l − a_{l−1}‖ / ‖v_{l−1}‖))², 0, 1 − 1e-4), norms over
the feature dimension; in the first layer v_0 = 0, so mu_r plays no part there.
"""

from __future__ import annotations

import torch

MU_MAX = 1 - 1e-4
_TINY = 1e-12


def residual_update(mode: str, x: torch.Tensor, a: torch.Tensor, v_prev: torch.Tensor | None,
                    a_prev: torch.Tensor | None, mu: float, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Add one layer's update ``a`` to the residual stream ``x``.

    Args:
        mode: ``plain``, ``heavy_ball`` or ``adaptive``.
        x: (B, T, D) residual stream entering the layer.
        a: (B, T, D) the layer's update (attention branch + feed-forward branch).
        v_prev: (B, T, D) the previous layer's velocity, None in the first layer.
        a_prev: (B, T, D) the previous layer's update, None in the first layer.
        mu: mu_r for ``heavy_ball``.
        s: s_r for ``heavy_ball`` and ``adaptive``.

    Returns:
        The new stream (B, T, D) and the velocity v_l (B, T, D).
    """
    if mode == "plain":
        return x + a, a
    if v_prev is None:
        v = a  # (B, T, D) v_0 = 0
    elif mode == "heavy_ball":
        v = mu * v_prev + a  # (B, T, D)
    else:
        v = adaptive_mu(a, a_prev, v_prev) * v_prev + a  # (B, T, D)
    return x + s * v, v


def adaptive_mu(a: torch.Tensor, a_prev: torch.Tensor, v_prev: torch.Tensor) -> torch.Tensor:
    """Per-token mu_r = clip((1 − sqrt(‖a − a_prev‖ / ‖v_prev‖))², 0, 1 − 1e-4), shape (B, T, 1)."""
    change = torch.linalg.vector_norm(a - a_prev, dim=-1, keepdim=True)  # (B, T, 1)
    speed = torch.linalg.vector_norm(v_prev, dim=-1, keepdim=True).clamp_min(_TINY)  # (B, T, 1)
    root = torch.sqrt((change / speed).clamp_min(_TINY))  # (B, T, 1)
    return ((1 - root) ** 2).clamp(0.0, MU_MAX)
