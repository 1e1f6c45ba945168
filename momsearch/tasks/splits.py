"""Deterministic train/val/test splits of generated data."""

from __future__ import annotations

import numpy as np


def eval_size(n_train: int) -> int:
    """Rows of the validation and of the test split for ``n_train`` training rows (a quarter, at least 1)."""
    return max(1, n_train // 4)


def split(n_train: int, n_val: int, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """Cut arrays with the same first dimension into consecutive train, val and test rows.

    Args:
        n_train: training rows (the first ones).
        n_val: validation rows (the next ones); the test split takes the rest.
        **arrays: e.g. ``x=..., y=...`` (and ``times=...``).

    Returns:
        ``{"x_train": ..., "x_val": ..., "x_test": ..., "y_train": ..., ...}``.
    """
    bounds = {"train": slice(0, n_train), "val": slice(n_train, n_train + n_val), "test": slice(n_train + n_val, None)}
    return {f"{key}_{part}": value[rows] for key, value in arrays.items() for part, rows in bounds.items()}
