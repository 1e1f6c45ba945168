"""``assoc_recall``: associative recall: read key-value pairs, then a key; answer the value stored with it."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .splits import eval_size, split


def assoc_recall(pairs: int = 8, vocab: int = 16, n_train: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Token sequences ``k1 v1 k2 v2 ... kn vn ? q`` with distinct keys; the label is the value of key ``q``.

    Token ids: keys ``0..vocab-1``, values ``vocab..2*vocab-1``, the query mark ``2*vocab``. Chance accuracy
    is ``1 / vocab``.

    Args:
        pairs: key-value pairs per sequence (at most ``vocab``).
        vocab: keys and values are drawn from this many symbols.
        n_train: training sequences (validation and test: a quarter each).
        seed: seed of the generation.

    Returns:
        Arrays ``x_*`` (B, 2 * pairs + 2) int64 and ``y_*`` (B,) int64 for train, val and test, with
        ``input_size = 2 * vocab + 1`` and ``output_size = vocab``.
    """
    if pairs > vocab:
        raise ConfigError(f"task assoc_recall: pairs={pairs}: must be <= vocab={vocab} (keys are distinct)")
    n_eval = eval_size(n_train)
    n = n_train + 2 * n_eval
    rng = np.random.default_rng(seed)
    keys = np.argsort(rng.random((n, vocab)), axis=1)[:, :pairs]  # (N, P) distinct per row
    values = rng.integers(0, vocab, size=(n, pairs))  # (N, P)
    asked = rng.integers(0, pairs, size=n)  # (N,)
    rows = np.arange(n)
    x = np.empty((n, 2 * pairs + 2), dtype=np.int64)  # (N, T)
    x[:, 0:2 * pairs:2] = keys
    x[:, 1:2 * pairs:2] = vocab + values
    x[:, -2] = 2 * vocab
    x[:, -1] = keys[rows, asked]
    y = values[rows, asked].astype(np.int64)  # (N,)
    data = split(n_train, n_eval, x=x, y=y)
    return {**data, "input_size": 2 * vocab + 1, "output_size": vocab}
