"""``copy``: remember a string of symbols across a long blank delay, then write it back (Arjovsky et al.)."""

from __future__ import annotations

import numpy as np

from .base import IGNORE
from .splits import eval_size, split


def copy_memory(delay: int = 50, length: int = 10, symbols: int = 8, n_train: int = 2000,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Copy-memory sequences of ``length + delay + length`` one-hot steps.

    Steps ``0..length-1`` show the string; then ``delay`` blank steps, the last of which is the recall cue;
    then ``length`` blank steps during which the model must output the string. Only those last steps are
    scored (the other labels are ``IGNORE``); chance accuracy is ``1 / symbols``.

    Args:
        delay: blank steps between the string and the recall phase (the cue included).
        length: symbols to remember.
        symbols: alphabet size (input channels: the symbols, blank, cue).
        n_train: training sequences (validation and test: a quarter each).
        seed: seed of the generation.

    Returns:
        Arrays ``x_*`` (B, T, symbols + 2) float32 and ``y_*`` (B, T) int64 for train, val and test.
    """
    n_eval = eval_size(n_train)
    n = n_train + 2 * n_eval
    steps = 2 * length + delay
    rng = np.random.default_rng(seed)
    string = rng.integers(0, symbols, size=(n, length))  # (N, L)
    tokens = np.full((n, steps), symbols)  # (N, T) blank everywhere
    tokens[:, :length] = string
    tokens[:, length + delay - 1] = symbols + 1  # recall cue
    x = np.eye(symbols + 2, dtype=np.float32)[tokens]  # (N, T, symbols + 2)
    y = np.full((n, steps), IGNORE, dtype=np.int64)  # (N, T)
    y[:, length + delay:] = string
    return split(n_train, n_eval, x=x, y=y)
