"""``listops``: synthetic ListOps (Nangia & Bowman): evaluate nested MAX/MIN/MED/SUM-mod-10 expressions.

Tokens: ``0`` padding, ``1..10`` the digits 0-9, then ``[MAX``, ``[MIN``, ``[MED``, ``[SM``, ``]``.
Expressions are left-padded to ``max_length`` so the last step is always the closing bracket. ``MED`` is the
lower median; ``SM`` is the sum modulo 10. Every answer 0-9 is equally frequent.
"""

from __future__ import annotations

import random
import statistics

import numpy as np

from .splits import eval_size, split

PAD = 0
DIGIT = 1  # token of digit d is DIGIT + d
OPS = {"MAX": max, "MIN": min, "MED": statistics.median_low, "SM": lambda args: sum(args) % 10}
OP_TOKEN = {name: DIGIT + 10 + i for i, name in enumerate(OPS)}
CLOSE = DIGIT + 10 + len(OPS)
VOCAB = CLOSE + 1
MAX_ARGS = 5
LEAF = 0.4  # probability that an argument below the root is a digit even when deeper nesting is allowed


def _expression(rng: random.Random, depth: int, max_depth: int) -> tuple[list[int], int]:
    """A random expression as tokens and its value; the root (depth 0) is always an operation."""
    if depth == max_depth or (depth > 0 and rng.random() < LEAF):
        digit = rng.randrange(10)
        return [DIGIT + digit], digit
    name = rng.choice(tuple(OPS))
    tokens, values = [OP_TOKEN[name]], []
    for _ in range(rng.randint(2, MAX_ARGS)):
        sub_tokens, value = _expression(rng, depth + 1, max_depth)
        tokens += sub_tokens
        values.append(value)
    return tokens + [CLOSE], OPS[name](values)


def listops(max_depth: int = 3, max_length: int = 64, n_train: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Balanced ListOps expressions: the same number of examples of each answer 0-9.

    Args:
        max_depth: operations nest at most this deep.
        max_length: tokens per expression (longer ones are redrawn); sequences are padded to it.
        n_train: training expressions (validation and test: a quarter each).
        seed: seed of the generation.

    Returns:
        Arrays ``x_*`` (B, max_length) int64 and ``y_*`` (B,) int64 for train, val and test, with
        ``input_size`` the vocabulary size and ``output_size = 10``.
    """
    n_eval = eval_size(n_train)
    n = n_train + 2 * n_eval
    rng = random.Random(seed)
    quota = [n // 10 + (d < n % 10) for d in range(10)]
    x = np.full((n, max_length), PAD, dtype=np.int64)  # (N, T)
    y = np.empty(n, dtype=np.int64)  # (N,)
    row = 0
    while row < n:
        tokens, value = _expression(rng, 0, max_depth)
        if len(tokens) > max_length or quota[value] == 0:
            continue
        quota[value] -= 1
        x[row, max_length - len(tokens):] = tokens
        y[row] = value
        row += 1
    order = np.random.default_rng(seed).permutation(n)
    data = split(n_train, n_eval, x=x[order], y=y[order])
    return {**data, "input_size": VOCAB, "output_size": 10}
