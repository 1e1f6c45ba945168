"""``seq_digits``: scikit-learn's 8x8 digits read pixel by pixel, a 64-step pixel-MNIST in miniature."""

from __future__ import annotations

import numpy as np

from .splits import split

N_VAL = N_TEST = 270  # of 1,797 digits; the training split keeps the other 1,257


def seq_digits(permuted: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """The digits as (B, 64, 1) sequences scaled to [0, 1], labels 0-9.

    Args:
        permuted: reorder the 64 pixels by one fixed permutation drawn from ``seed`` (pMNIST).
        seed: seed of the train/val/test shuffle and of the permutation.

    Returns:
        Arrays ``x_*`` (B, 64, 1) float32 and ``y_*`` (B,) int64 for train, val and test.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    x = (digits.data[order] / 16.0).astype(np.float32)  # (N, 64)
    if permuted:
        x = x[:, rng.permutation(x.shape[1])]  # (N, 64)
    y = digits.target[order].astype(np.int64)  # (N,)
    return split(len(y) - N_VAL - N_TEST, N_VAL, x=x[:, :, None], y=y)
