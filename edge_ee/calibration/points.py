"""Operating points: one threshold vector with its quality and cost, and the Pareto filter over them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class OperatingPoint:
    thresholds: list[float]
    accuracy: float | None = None
    agreement: float | None = None  # agreement with the final exit (no labels needed)
    mean_macs: float | None = None
    exit_fractions: list[float] | None = None
    latency_ms: float | None = None  # predicted / measured mean latency per inference
    energy_mj: float | None = None  # predicted / measured energy per inference above idle (inference window)
    macs_ratio: float | None = None  # mean_macs / the full model's MACs
    note: str = ""

    @property
    def quality(self) -> float | None:
        return self.accuracy if self.accuracy is not None else self.agreement

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OperatingPoint:
        """Raises KeyError/TypeError/ValueError on a malformed point (callers name the file)."""
        if not isinstance(d, dict):
            raise TypeError(f"an operating point must be an object, got {type(d).__name__}")

        def f(key: str) -> float | None:
            v = d.get(key)
            return float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else None

        th = d["thresholds"]
        if not isinstance(th, list) or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in th):
            raise TypeError("thresholds must be a list of numbers")
        fr = d.get("exit_fractions")
        return cls(thresholds=[float(t) for t in th], accuracy=f("accuracy"),
                   agreement=f("agreement"), mean_macs=f("mean_macs"),
                   exit_fractions=[float(x) for x in fr] if isinstance(fr, list) else None,
                   latency_ms=f("latency_ms"), energy_mj=f("energy_mj"), macs_ratio=f("macs_ratio"),
                   note=str(d.get("note", "")))


def pareto(points: list[OperatingPoint], cost_key: str = "mean_macs") -> list[OperatingPoint]:
    """Sort by cost and keep only points that improve quality (ties: the cheaper one)."""
    def cost(p: OperatingPoint) -> float:
        v = getattr(p, cost_key)
        return math.inf if v is None else float(v)

    out: list[OperatingPoint] = []
    best = -math.inf
    for p in sorted(points, key=lambda p: (cost(p), -(p.quality or 0.0))):
        q = p.quality if p.quality is not None else -math.inf
        if not out or q > best + 1e-12:
            out.append(p)
            best = max(best, q)
    return out
