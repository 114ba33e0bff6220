"""Operating points: threshold vectors on the accuracy-vs-cost frontier, cheapest first.

A frontier comes from (best first) a device profile (``edge-ee profile``: measured latency and
energy per point), the bundle manifest (``calibration.operating_points`` from the exporter: accuracy,
MACs and exit fractions per point), or, for a bundle without calibration, a plain ladder of
uniform thresholds whose costs are unknown (the controller then works on feedback alone).

Costs of manifest points are predicted from their exit fractions and per-stage costs measured on
this device: answering at exit k in adaptive mode costs every segment and head up to k, so
``cost(point) = sum_k fraction_k * cumulative_cost_k``.

Energies are per inference and above the idle baseline (the quantity the energy hook measures as
``energy_mj`` and an energy budget limits), never totals including idle power.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..calibration.points import OperatingPoint, pareto
from ..core.budget import BudgetKind
from ..core.exit_rules import DEFAULT_RULE, get_rule
from ..core.manifest import Manifest

__all__ = ["Frontier", "OperatingPoint", "pareto", "first_exit_point", "from_manifest", "ladder", "from_profile"]


@dataclass
class Frontier:
    """Operating points sorted by cost (index 0 = cheapest). ``source``: profile | manifest | ladder."""

    points: list[OperatingPoint]
    source: str
    rule: str | None = None
    stage_latency_ms: list[float] | None = None  # cumulative adaptive cost of answering at exit k
    stage_energy_mj: list[float] | None = None  # cumulative, above idle
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)

    # ---- costs -----------------------------------------------------------------------------------
    def set_stage_costs(self, latency_ms: Sequence[float] | None = None,
                        energy_mj: Sequence[float] | None = None, overwrite: bool = False) -> None:
        """Cumulative adaptive cost of answering at exit k; fills each point's predicted latency/energy
        from its exit fractions (points that already have a measured value keep it unless ``overwrite``)."""
        if latency_ms is not None:
            self.stage_latency_ms = [float(v) for v in latency_ms]
        if energy_mj is not None:
            self.stage_energy_mj = [float(v) for v in energy_mj]
        for p in self.points:
            if p.exit_fractions is None:
                continue
            if self.stage_latency_ms is not None and (overwrite or p.latency_ms is None):
                p.latency_ms = _dot(p.exit_fractions, self.stage_latency_ms)
            if self.stage_energy_mj is not None and (overwrite or p.energy_mj is None):
                p.energy_mj = _dot(p.exit_fractions, self.stage_energy_mj)

    def cost(self, i: int, kind: BudgetKind) -> float | None:
        """Predicted cost of point i in base units: seconds (latency) or joules (energy, power)."""
        p = self.points[i]
        v = p.latency_ms if kind == "latency" else p.energy_mj
        return None if v is None else v * 1e-3

    def costs(self, kind: BudgetKind) -> list[float] | None:
        c = [self.cost(i, kind) for i in range(len(self.points))]
        return None if any(v is None for v in c) else c  # type: ignore[return-value]

    def choose(self, kind: BudgetKind, target: float) -> tuple[int, bool]:
        """(index, feasible): the best-quality point whose predicted cost meets ``target`` (base
        units). Infeasible (even the cheapest point costs more): index 0. Unknown costs: the last point."""
        costs = self.costs(kind)
        if costs is None:
            return len(self.points) - 1, True
        ok = [i for i, c in enumerate(costs) if c <= target]
        if not ok:
            return 0, False
        return max(ok), True  # sorted by cost with rising quality: the last feasible point is the best

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rule": self.rule, "stage_latency_ms": self.stage_latency_ms,
                "stage_energy_mj": self.stage_energy_mj, "points": [p.to_dict() for p in self.points]}


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b)))


def first_exit_point(num_exits: int, rule: str, accuracy: float | None = None) -> OperatingPoint:
    """The cheapest possible point: every input answers at exit 0."""
    fr = [1.0] + [0.0] * (num_exits - 1)
    return OperatingPoint([get_rule(rule).always] * (num_exits - 1), accuracy=accuracy, exit_fractions=fr,
                          note="first exit always")


def from_manifest(m: Manifest, rule: str | None = None) -> Frontier | None:
    """The exporter's operating points, or None when the manifest has none (or they are for another
    exit rule than the one in force)."""
    cal = m.calibration
    if not cal.operating_points:
        return None
    if rule is not None and cal.rule is not None and cal.rule != rule:
        return None
    n_early = m.num_exits - 1
    pts = [p for p in cal.operating_points if len(p.thresholds) == n_early]
    if not pts:
        return None
    pts = pareto(pts, "mean_macs")
    r = rule or cal.rule or DEFAULT_RULE
    if pts[0].exit_fractions is None or pts[0].exit_fractions[0] < 1.0 - 1e-9:
        first_acc = cal.exit_accuracy[0] if cal.exit_accuracy else None
        pts.insert(0, first_exit_point(m.num_exits, r, first_acc))
    return Frontier(pts, "manifest", rule=r)


def ladder(num_exits: int, rule: str, levels: int = 12) -> Frontier:
    """No calibration: uniform thresholds from 'always exit first' to 'never exit early'. Costs and
    quality are unknown (feedback only); cost grows with the index."""
    r = get_rule(rule)
    lo, hi = r.always, r.never
    if r.higher_fires:  # spread over the useful range of a probability
        vals = [lo] + [0.3 + 0.69 * i / (levels - 3) for i in range(levels - 2)] + [hi]
    else:
        vals = [lo] + [1.0 - 0.99 * i / (levels - 3) for i in range(levels - 2)] + [hi]
    pts = [OperatingPoint([v] * (num_exits - 1), note="ladder") for v in vals]
    pts[0].exit_fractions = [1.0] + [0.0] * (num_exits - 1)
    pts[-1].exit_fractions = [0.0] * (num_exits - 1) + [1.0]
    return Frontier(pts, "ladder", rule=rule)


def from_profile(profile: dict[str, Any]) -> Frontier | None:
    """The frontier of a device profile (``edge-ee profile``): measured latency and energy above idle
    per point; per-exit adaptive costs from ``exits``. None when the profile has no frontier."""
    raw = profile.get("frontier")
    if not isinstance(raw, list) or not raw:
        return None
    pts = [OperatingPoint.from_dict(d) for d in raw]
    ex = profile.get("exits") or []
    lat = [e.get("adaptive_ms") for e in ex]
    en = [e.get("adaptive_energy_mj") for e in ex]
    f = Frontier(pts, "profile", rule=profile.get("rule"))
    f.stage_latency_ms = [float(v) for v in lat] if lat and all(isinstance(v, (int, float)) for v in lat) else None
    f.stage_energy_mj = [float(v) for v in en] if en and all(isinstance(v, (int, float)) for v in en) else None
    return f
