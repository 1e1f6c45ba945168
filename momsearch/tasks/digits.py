"""``seq_digits``: scikit-learn's 8x8 digits read pixel by pixel, a 64-step pixel-MNIST in miniature."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
    pixels, labels = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    x = (pixels[order] / 16.0).astype(np.float32)  # (N, 64)
    if permuted:
        x = x[:, rng.permutation(x.shape[1])]  # (N, 64)
    y = labels[order].astype(np.int64)  # (N,)
    return split(len(y) - N_VAL - N_TEST, N_VAL, x=x[:, :, None], y=y)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: pixels (1797, 64) with values 0-16 and labels (1797,).

    Reads the data file scikit-learn ships, as ``sklearn.datasets.load_digits`` does, without importing
    scikit-learn: that import (about 2 s here, scipy included) was most of a small study's start-up. Falls
    back to ``load_digits`` if the file is not where scikit-learn keeps it.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without executing it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits as sklearn_digits

        digits = sklearn_digits()
        return digits.data, digits.target
    table = np.loadtxt(path, delimiter=",")  # (1797, 65): 64 pixels, then the label
    return table[:, :-1], table[:, -1].astype(int)
