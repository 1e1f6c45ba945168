"""``adding``: the adding problem (Hochreiter & Schmidhuber): sum the two marked values of a sequence."""

from __future__ import annotations

import numpy as np

from .splits import eval_size, split


def adding(length: int = 100, n_train: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Sequences of (value, marker) pairs; the target is the sum of the two marked values.

    One marker falls in the first half of the sequence and one in the second; values are uniform on [0, 1),
    so always predicting 1 scores an MSE of about 1/6.

    Args:
        length: steps per sequence.
        n_train: training sequences (validation and test: a quarter each).
        seed: seed of the generation.

    Returns:
        Arrays ``x_*`` (B, length, 2) float32 and ``y_*`` (B, 1) float32 for train, val and test.
    """
    n_eval = eval_size(n_train)
    n = n_train + 2 * n_eval
    rng = np.random.default_rng(seed)
    values = rng.random((n, length), dtype=np.float32)  # (N, T)
    half = length // 2
    first = rng.integers(0, half, size=n)  # (N,)
    second = rng.integers(half, length, size=n)  # (N,)
    rows = np.arange(n)
    markers = np.zeros((n, length), dtype=np.float32)  # (N, T)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)  # (N, T, 2)
    y = (values[rows, first] + values[rows, second])[:, None]  # (N, 1)
    return split(n_train, n_eval, x=x, y=y)
