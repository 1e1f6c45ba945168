"""``circles``: nested circles (spheres in more dimensions), the classic neural-ODE toy problem."""

from __future__ import annotations

import numpy as np

from .splits import eval_size, split

INNER = 0.5  # class 0: the ball of this radius
SHELL = (1.0, 1.5)  # class 1: the shell between these radii


def circles(dim: int = 2, n_train: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Points uniform in the inner ball (label 0) or in the outer shell (label 1), half of each.

    Args:
        dim: dimension of the points.
        n_train: training points (validation and test: a quarter each).
        seed: seed of the generation.

    Returns:
        Arrays ``x_*`` (B, dim) float32 and ``y_*`` (B,) int64 for train, val and test.
    """
    n_eval = eval_size(n_train)
    n = n_train + 2 * n_eval
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)  # (N,)
    direction = rng.standard_normal((n, dim))  # (N, D)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    u = rng.random(n)  # (N,)
    lo = np.where(y == 1, SHELL[0], 0.0)  # (N,)
    hi = np.where(y == 1, SHELL[1], INNER)  # (N,)
    radius = (lo**dim + u * (hi**dim - lo**dim)) ** (1.0 / dim)  # (N,) uniform in volume
    x = (direction * radius[:, None]).astype(np.float32)  # (N, D)
    return split(n_train, n_eval, x=x, y=y.astype(np.int64))
