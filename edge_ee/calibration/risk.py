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


@lru_cache(maxsize=8)
def _lfact(n: int) -> np.ndarray:
    return np.array([math.lgamma(i + 1.0) for i in range(n + 1)])


def _wald(w: np.ndarray, b: np.ndarray, n: int, eps: float) -> np.ndarray:
    """Studentised distance of the observed drop (w - b) / n from eps (negative: below it)."""
    dh = (w - b) / n
    return (dh - eps) / np.sqrt(((w + b) / n - dh ** 2 + 1.0 / n) / n)


def paired_drop_pvalue(worse: int, better: int, n: int, eps: float, grid: int = 40, gamma: float = 1e-3,
                       stop_above: float = 1.0) -> float:
    """Exact unconditional p-value of H0: p_worse - p_better >= eps (the accuracy drop is at least eps) from paired
    outcomes of n inputs: ``worse`` where the answer given is wrong and the full model right, ``better`` the reverse.

    The sample space is ordered by the studentised drop (a Wald statistic) and the p-value is the exact
    multinomial probability of a result at least as small, maximised over the nuisance p_better within a (1 - gamma)
    Clopper-Pearson interval, plus gamma (Berger and Boos 1994): valid for every p_better. The maximum lies on the
    boundary p_worse = p_better + eps, since the drop grows with p_worse. ``stop_above``: return as soon as the
    p-value is known to exceed it (a test at that level needs no more)."""
    if worse - better >= n * eps:  # at or above the null's mean: the p-value is about 1/2 or more
        return 1.0
    lo, hi = lower(better, n, gamma / 2), min(upper(better, n, gamma / 2), (1.0 - eps) / 2)
    if lo > hi:
        return gamma
    lf = _lfact(n)
    t_obs = float(_wald(np.array(worse), np.array(better), n, eps)) + 1e-12

    def window(p: float) -> np.ndarray:
        """Counts within 9 standard deviations (+1) of n p: the mass outside is negligible (far below 1e-6)."""
        sd = math.sqrt(n * p * (1 - p)) + 1.0
        return np.arange(max(0, int(n * p - 9 * sd)), min(n, int(n * p + 9 * sd) + 1) + 1)

    best = 0.0
    for q in np.linspace(hi, lo, grid):  # the largest p_better first: the supremum is usually there
        pw = q + eps
        w, b = window(pw)[:, None], window(q)[None, :]
        rest = n - w - b
        region = (rest >= 0) & (_wald(w, b, n, eps) <= t_obs)
        if not region.any():
            continue
        rest = np.where(region, rest, 0)
        lr = math.log1p(-pw - q) if pw + q < 1 else -np.inf  # log P(neither); 0 * -inf counts as 0 below
        lp = (lf[n] - lf[w] - lf[b] - lf[rest] + w * math.log(pw)
              + (b * math.log(q) if q > 0 else np.where(b == 0, 0.0, -np.inf))
              + (rest * lr if np.isfinite(lr) else np.where(rest == 0, 0.0, -np.inf)))
        lp = np.where(region, lp, -np.inf)
        m = lp.max()
        if np.isfinite(m):
            best = max(best, float(math.exp(m) * np.exp(lp - m).sum()))
            if best + gamma > stop_above:  # the caller only needs to know that it is above this level
                break
    return min(1.0, best + gamma)
