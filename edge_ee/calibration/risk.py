"""Exact binomial confidence bounds (Clopper-Pearson), torch- and scipy-free.

``upper(k, n, delta)`` is the largest success probability p with P(Bin(n, p) <= k) >= delta: the true rate
exceeds it with probability at most ``delta`` over draws of the n trials. ``lower`` is its mirror image. Both are
found by bisection on the exact binomial tail (log-space sums), accurate to ~1e-12.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def _log_choose(n: int) -> np.ndarray:
    lg = np.array([math.lgamma(i + 1.0) for i in range(n + 1)])
    return lg[n] - lg - lg[::-1]


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(k + 1)
    lp = _log_choose(n)[: k + 1] + i * math.log(p) + (n - i) * math.log1p(-p)
    m = lp.max()
    return float(min(1.0, math.exp(m) * np.exp(lp - m).sum()))


def _bisect(f: object, lo: float, hi: float) -> float:
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if f(mid):  # type: ignore[operator]
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return 0.5 * (lo + hi)


def upper(k: int, n: int, delta: float) -> float:
    """Clopper-Pearson upper bound at confidence 1 - delta for k successes in n trials."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    return _bisect(lambda p: binom_cdf(k, n, p) > delta, k / n, 1.0)


def lower(k: int, n: int, delta: float) -> float:
    """Clopper-Pearson lower bound at confidence 1 - delta for k successes in n trials."""
    if n <= 0 or k <= 0:
        return 0.0
    return _bisect(lambda p: 1.0 - binom_cdf(k - 1, n, p) < delta, 0.0, k / n)
