"""Feedback control of the operating point: PI on the index along the frontier, with anti-windup.

The plant: running with operating point i costs ``c_i * s`` per inference (latency [s], energy [J]
or power [W]), where ``c_i`` is the point's predicted cost (rising with i) and ``s`` an unknown,
slowly changing *slowdown* (CPU contention, clock changes, thermal throttling, another device).

Each frame the controller gets the measured cost y of the frame just processed and

1. smooths it (EWMA ``y_f``) and, when predicted costs are known, estimates the slowdown
   ``s = y_f / EWMA(c_in_force)`` (ALERT-style); the feed-forward position ``u_ff`` is where the
   frontier's predicted cost times ``s`` equals the target (linear between points);
2. adds a PI correction on the normalised error ``e = (target - y_f) / target`` (positive: slack,
   move to costlier, more accurate points): ``u = u_ff + kp * e + I``, ``I += ki * e``;
3. anti-windup: the integrator is frozen while the output is saturated at either end of the
   frontier and the error pushes further out, and it is bounded by the frontier length. A budget
   that cannot be met therefore never winds up a debt that would delay the recovery.

Without predicted costs (a bundle without calibration, no profile) ``u_ff`` is the start position
and the PI loop alone finds the point (slower). The output index is ``round(u)`` clamped to the
frontier. All arithmetic is O(1) per frame except the feed-forward search (O(log n)).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class ControllerConfig:
    alpha: float = 0.15  # EWMA weight of a new measurement
    kp: float = 0.5  # index units per unit normalised error (scaled by frontier length without costs)
    ki: float = 0.02  # index units per frame per unit normalised error (x frontier length)
    min_slowdown: float = 0.05
    max_slowdown: float = 50.0


class IndexController:
    """PI controller on a position along ``n`` operating points (0 = cheapest)."""

    def __init__(self, n: int, target: float, costs: Sequence[float] | None = None, start: float | None = None,
                 config: ControllerConfig | None = None) -> None:
        if n < 1:
            raise ValueError("need at least one operating point")
        if not (target > 0 and math.isfinite(target)):
            raise ValueError("the target must be a positive number")
        self.n = n
        self.target = float(target)
        self.cfg = config or ControllerConfig()
        self.costs: list[float] | None = None
        self.set_costs(costs)
        if start is None:
            start = self._ff(1.0) if self.costs is not None else float(n - 1)
        self.u0 = float(min(max(start, 0.0), n - 1))
        self.u = self.u0
        self.integral = 0.0
        self.y_f: float | None = None
        self.c_f: float | None = None
        self.slowdown = 1.0
        self.error = 0.0
        self.saturated = ""  # "", "low" or "high"
        self.updates = 0

    # ---- configuration ---------------------------------------------------------------------------
    def set_costs(self, costs: Sequence[float] | None) -> None:
        if costs is not None:
            if len(costs) != self.n:
                raise ValueError(f"{len(costs)} costs for {self.n} points")
            c = [float(v) for v in costs]
            for i in range(1, len(c)):  # enforce monotone (a frontier sorted by another cost may wiggle)
                c[i] = max(c[i], c[i - 1])
            self.costs = c
        else:
            self.costs = None

    def set_target(self, target: float) -> None:
        if target > 0 and math.isfinite(target):
            self.target = float(target)

    @property
    def feasible(self) -> bool | None:
        """Whether the cheapest point meets the target (under the current slowdown); None if unknown."""
        if self.costs is None:
            return None
        return self.costs[0] * self.slowdown <= self.target

    @property
    def index(self) -> int:
        return int(min(max(round(self.u), 0), self.n - 1))

    # ---- control ---------------------------------------------------------------------------------
    def _ff(self, slowdown: float) -> float:
        c = self.costs
        assert c is not None
        want = self.target / slowdown
        if want <= c[0]:
            return 0.0
        i = bisect.bisect_right(c, want)
        if i >= self.n:
            return float(self.n - 1)
        c0, c1 = c[i - 1], c[i]
        return i - 1 + ((want - c0) / (c1 - c0) if c1 > c0 else 0.0)

    def update(self, y: float, index_in_force: int | None = None) -> int:
        """Feed the measured cost of the frame just processed (with ``index_in_force``, default the
        current index); returns the index to use next. Non-finite measurements are ignored."""
        if y is None or not math.isfinite(y) or y < 0:
            return self.index
        cfg = self.cfg
        k = self.index if index_in_force is None else index_in_force
        self.y_f = y if self.y_f is None else self.y_f + cfg.alpha * (y - self.y_f)
        self.updates += 1
        if self.costs is not None:
            c = self.costs[k]
            self.c_f = c if self.c_f is None else self.c_f + cfg.alpha * (c - self.c_f)
            if self.c_f > 0:
                s = self.y_f / self.c_f
                self.slowdown = min(max(s, cfg.min_slowdown), cfg.max_slowdown)
            base = self._ff(self.slowdown)
            kp, ki = cfg.kp, cfg.ki * self.n
        else:
            base = self.u0
            kp, ki = cfg.kp * self.n * 0.5, cfg.ki * self.n
        e = (self.target - self.y_f) / self.target
        e = max(-2.0, min(2.0, e))  # one wild frame must not throw the position across the frontier
        self.error = e
        top = self.n - 1
        u = base + kp * e + self.integral
        # anti-windup: conditional integration, bounded integrator
        if not ((u >= top and e > 0) or (u <= 0 and e < 0)):
            self.integral += ki * e
            self.integral = max(-float(top), min(float(top), self.integral))
        u = base + kp * e + self.integral
        self.saturated = "high" if u > top else ("low" if u < 0 else "")
        self.u = min(max(u, 0.0), float(top))
        return self.index

    def state(self) -> dict[str, float | int | str | None]:
        return {"index": self.index, "position": round(self.u, 3), "error": round(self.error, 4),
                "integral": round(self.integral, 4), "slowdown": round(self.slowdown, 4),
                "filtered": self.y_f, "target": self.target, "saturated": self.saturated or None}
