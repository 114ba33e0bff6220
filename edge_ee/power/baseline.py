"""The idle baseline: a piecewise-constant idle power over time (a fallback source brings its own idle power
from the moment it takes over), and the energy above it."""

from __future__ import annotations

import math


class IdleBaseline:
    """Steps (from time, watts), ascending; the last is in force now. Empty: no baseline."""

    def __init__(self) -> None:
        self._steps: list[tuple[float, float]] = []

    def __bool__(self) -> bool:
        return bool(self._steps)

    @property
    def current_w(self) -> float | None:
        """Idle power in force now [W] (None without a baseline)."""
        return self._steps[-1][1] if self._steps else None

    def set(self, watts: float) -> None:
        """One idle power for all time (replaces any earlier one)."""
        self._steps = [(-math.inf, float(watts))]

    def change_at(self, t: float, watts: float) -> None:
        """From ``t`` on, the idle power is ``watts`` (kept only when a baseline exists already)."""
        if self._steps:
            self._steps.append((t, float(watts)))

    def at(self, t: float) -> float | None:
        """Idle power [W] in force at time t (None without a baseline)."""
        w = None
        for ts, v in self._steps:
            if ts <= t or w is None:
                w = v
        return w

    def energy(self, t0: float, t1: float) -> float:
        """Integral of the idle power over [t0, t1] in J (0 without a baseline)."""
        b = self._steps
        if len(b) == 1:
            return b[0][1] * (t1 - t0)
        e = 0.0
        for i, (ts, w) in enumerate(b):
            te = b[i + 1][0] if i + 1 < len(b) else math.inf
            lo, hi = max(t0, ts if i else -math.inf), min(t1, te)
            if hi > lo:
                e += w * (hi - lo)
        return e

    def above(self, t0: float, t1: float, energy_j: float) -> float | None:
        """Energy above idle [J] of [t0, t1] given its energy (None without a baseline)."""
        b = self._steps
        if len(b) == 1:  # the usual case
            return energy_j - b[0][1] * (t1 - t0)
        return None if not b else energy_j - self.energy(t0, t1)
