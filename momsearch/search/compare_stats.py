"""The statistics of a comparison: t intervals of a mean and of a paired difference, Holm's adjustment.

Intervals are Student t intervals (``scipy.stats.t``): mean ± t_{0.975, n-1} · sd / sqrt(n). A paired
difference is the t interval of the per-seed differences; its p-value is the two-sided paired t test
(``scipy.stats.ttest_rel``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its t interval; ``p`` is the two-sided p-value of "the mean is 0" (paired differences)."""

    mean: float
    low: float
    high: float
    n: int
    p: float = math.nan


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of ``values`` with its t interval (NaN bounds with fewer than 2 values)."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of ``a - b`` over pairs (the same seed) with its t interval and paired t-test p-value.

    When every difference is the same (up to rounding) the interval is that one value and p is 0 (a nonzero
    difference) or 1.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    base = mean_interval(d, level)
    if base.n < 2:
        return base
    if float(d.std(ddof=1)) <= 1e-12 * max(1.0, abs(base.mean)):  # constant up to rounding: t is infinite
        return Interval(base.mean, base.mean, base.mean, base.n, 0.0 if base.mean != 0 else 1.0)
    p = float(stats.ttest_rel(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)).pvalue)
    return Interval(base.mean, base.low, base.high, base.n, p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted in the family).

    Sorted ascending, the i-th smallest of m p-values becomes max over j <= i of min(1, (m - j) * p_(j)).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), np.nan)
    index = [i for i in range(len(p)) if not math.isnan(p[i])]
    m = len(index)
    running = 0.0
    for rank, i in enumerate(sorted(index, key=lambda i: p[i])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
