"""The energy curve: cumulative energy E(t) of the power samples, in a ring buffer, integrable over any window.

Samples are (t, P, E, const): t the sampler clock, P the power [W], E the cumulative energy [J] since the first
sample, ``const`` whether power was constant over the interval ending at this sample (an energy counter: P is
dE/dt of the interval) or linear (a power sensor: E is the running trapezoid integral). Between samples E is
interpolated the same way, so a window shorter than the sampling period still gets its share; outside the
buffered range the nearest power is held (the window is then not ``covered``).

Fast paths: a window just measured (at or after the newest sample), before the oldest sample and inside the
newest sample interval are computed from the newest, previous and oldest samples kept as plain floats; anything
else by binary search. They run several times per inference: without them and ``round_mj``'s shortcut a frame
of ``edge-ee run`` on the small bundle took 12-24% more thread CPU time (``benchmarks/power_fast_paths.py``);
``tests/power/test_power_sampler_fast_paths.py`` checks that both paths give the same result bit for bit.

Thread safety: readers take :attr:`lock` themselves; the writers (:meth:`append_power`, :meth:`append_energy`)
are called with :attr:`lock` held (the sampler checks its source under the same lock) and wake :meth:`wait_for`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np


class EnergyCurve:
    """Cumulative energy over the last ``capacity`` samples (see the module docstring)."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = int(capacity)
        if self.capacity < 2:
            raise ValueError("capacity must be >= 2")
        self._t = np.zeros(self.capacity)
        self._p = np.zeros(self.capacity)
        self._e = np.zeros(self.capacity)
        self._const = np.zeros(self.capacity, dtype=bool)  # segment ending at this sample: constant power
        self.count = 0  # samples appended so far (the buffer holds the last ``capacity``)
        # The newest sample (t, P, E, const), the one before it and the oldest buffered one as plain floats,
        # kept by _append: the per-inference queries read them instead of the arrays.
        self._tn, self._pn, self._en, self._cn = -math.inf, math.nan, math.nan, False
        self._tq, self._pq, self._eq = math.inf, math.nan, math.nan
        self._to, self._po, self._eo = math.inf, math.nan, math.nan
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    # ---- writing (with ``lock`` held) ----------------------------------------------------------
    def _append(self, t: float, p: float, e: float, const: bool) -> None:
        n, cap = self.count, self.capacity
        i = n % cap
        self._t[i] = t
        self._p[i] = p
        self._e[i] = e
        self._const[i] = const
        self.count = n = n + 1
        # the cached copies hold exactly what the arrays hold (float64 -> float is exact)
        self._tq, self._pq, self._eq = self._tn, self._pn, self._en
        self._tn, self._pn, self._en = self._t.item(i), self._p.item(i), self._e.item(i)
        self._cn = bool(const)
        if n == 1 or n > cap:  # the oldest sample: the first one, or the next slot once the ring wrapped
            j = 0 if n == 1 else n % cap
            self._to, self._po, self._eo = self._t.item(j), self._p.item(j), self._e.item(j)

    def append_power(self, t: float, p: float) -> bool:
        """A power reading [W] at ``t``: E grows by the trapezoid from the newest sample. False (ignored) when
        ``t`` is not after the newest sample."""
        if self.count == 0:
            self._append(t, p, 0.0, False)
        elif t <= self._tn:
            return False
        else:
            self._append(t, p, self._en + (t - self._tn) * (self._pn + p) / 2, False)
        self.cond.notify_all()
        return True

    def append_energy(self, tp: float, t: float, de: float) -> bool:
        """``de`` joules between ``tp`` and ``t`` (two readings of an energy counter): constant power over the
        interval. The first interval after a power source's samples is bridged linearly. False (ignored) when
        the interval starts before the newest sample."""
        p = de / (t - tp)
        if self.count == 0:
            self._append(tp, p, 0.0, True)
        elif self._tn < tp:  # first interval of this source: bridge linearly
            self._append(tp, p, self._en + (tp - self._tn) * (self._pn + p) / 2, False)
        elif self._tn > tp:
            return False
        self._append(t, p, self._en + de, True)
        self.cond.notify_all()
        return True

    # ---- reading -------------------------------------------------------------------------------
    @property
    def newest_time(self) -> float:
        """Time of the newest sample (-inf before the first); one attribute read, no lock needed."""
        return self._tn

    def wait_for(self, t: float, timeout: float | None = None) -> bool:
        """Block until a sample at or after ``t`` exists; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self.count > 0 and self._tn >= t, timeout)

    def _covered(self, t0: float, t1: float) -> bool:
        return self.count > 0 and self._to <= t0 and t1 <= self._tn

    def covered(self, t0: float, t1: float) -> bool:
        """Whether samples exist at or before ``t0`` and at or after ``t1``."""
        with self.lock:
            return self._covered(t0, t1)

    def _energy_at(self, x: float) -> float:
        """Cumulative energy at time x (caller holds the lock): the fast paths, else the search."""
        if self.count == 0:
            return math.nan
        tn = self._tn
        if x >= tn:
            return self._en + self._pn * (x - tn)
        to = self._to
        if x <= to:
            return self._eo - self._po * (to - x)
        t0 = self._tq
        if x >= t0:  # t0 <= x < tn: the newest interval (k = newest, km = the one before)
            dx = x - t0
            if self._cn:
                return self._eq + self._pn * dx
            p0 = self._pq
            px = p0 + (self._pn - p0) * (dx / (tn - t0))
            return self._eq + dx * (p0 + px) / 2
        return self._energy_at_searched(x)

    def _energy_at_searched(self, x: float) -> float:
        """Cumulative energy at time x from the arrays, with a binary search (caller holds the lock); the
        general path of :meth:`_energy_at`."""
        n, cap = self.count, self.capacity
        size = min(n, cap)
        if size == 0:
            return math.nan
        old, new = (n - size) % cap, (n - 1) % cap
        t, p, e = self._t, self._p, self._e
        tn = t.item(new)
        if x >= tn:
            return e.item(new) + p.item(new) * (x - tn)
        to = t.item(old)
        if x <= to:
            return e.item(old) - p.item(old) * (to - x)
        # logical index j of the first sample with time > x (1 <= j < size)
        if n <= cap or old == 0:
            j = int(np.searchsorted(t[:size], x, side="right"))
        elif x < t.item(0):
            j = int(np.searchsorted(t[old:], x, side="right"))
        else:
            j = (cap - old) + int(np.searchsorted(t[:old], x, side="right"))
        k, km = (old + j) % cap, (old + j - 1) % cap
        t0, t1 = t.item(km), t.item(k)
        dx = x - t0
        if self._const[k]:
            return e.item(km) + p.item(k) * dx
        p0 = p.item(km)
        px = p0 + (p.item(k) - p0) * (dx / (t1 - t0))
        return e.item(km) + dx * (p0 + px) / 2

    def energy_at(self, x: float) -> float:
        """Cumulative energy [J] at time ``x``; NaN before the first sample."""
        with self.lock:
            return self._energy_at(x)

    def energy_between(self, t0: float, t1: float) -> float:
        """Energy [J] in [t0, t1]; NaN before the first sample."""
        with self.lock:
            return self._energy_at(t1) - self._energy_at(t0)

    def span(self, boundaries: Sequence[float]) -> tuple[list[float], bool]:
        """The cumulative energy at each boundary and whether samples cover [first, last], under one lock."""
        with self.lock:
            return [self._energy_at(b) for b in boundaries], self._covered(boundaries[0], boundaries[-1])

    def integrate(self, windows: Sequence[tuple[float, float]]) -> list[tuple[float, bool]]:
        """(energy [J], covered) of each window [t0, t1], all under one lock."""
        with self.lock:
            energy_at, covered = self._energy_at, self._covered
            return [(energy_at(t1) - energy_at(t0), covered(t0, t1)) for t0, t1 in windows]

    def samples(self, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the buffered (times, powers), oldest first."""
        with self.lock:
            size = min(self.count, self.capacity)
            m = size if last is None else min(size, last)
            idx = (np.arange(self.count - m, self.count)) % self.capacity
            return self._t[idx].copy(), self._p[idx].copy()
