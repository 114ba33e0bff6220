"""Threshold selection: the risk-controlled one (Learn-then-Test) and the plain point estimate.

**Risk.** With labels: the accuracy drop against the full model, ``P(final right, answer wrong) - P(final wrong,
answer right)``. Without labels: the disagreement with the final exit, ``P(answer != final exit's answer)``. The
target ``eps`` is a fraction (0.01 = 1 pp).

**Guarantee** (:func:`select_risk_controlled`). Learn-then-Test (Angelopoulos et al. 2021) with fixed-sequence testing:

1. the calibration frames are split at random: an *ordering* part (``order_fraction``) builds the Pareto frontier,
   which orders candidate threshold vectors from safe (expensive) to aggressive (cheap) (per condition: by the
   worst condition's accuracy relative to the final exit), preceded by a ladder of ``LADDER_STEPS`` ever larger
   shares of that frontier's safest point's exits (also chosen on the ordering part); the *testing* part is used
   only to test them, so the order does not depend on the data it is tested on;
2. walking the order, hypothesis ``H_j: risk(j) > eps`` is tested at level ``delta = 1 - confidence``: for the
   disagreement (a 0-1 loss) it is rejected when the Clopper-Pearson upper bound is <= eps; for the accuracy drop
   (a paired difference of two 0-1 losses) with the exact unconditional paired test of
   :func:`edge_ee.calibration.risk.paired_drop_pvalue`, which, unlike a union of two Clopper-Pearson bounds, pays
   for the variance of the difference only once;
3. the walk stops at the first point not rejected; the cheapest rejected one is chosen. Fixed-sequence testing needs
   no multiplicity correction, so ``P(risk of the chosen point on new data > eps) <= delta`` when the calibration
   frames and the frames the model will see are independent draws from the same distribution. "Every input to the
   final exit" has risk 0 and is the fallback when nothing is certified.

**Per condition** (``conditions=``: a condition name per calibration frame, e.g. clean / babble / noise). The
hypothesis becomes ``H_j: the risk in SOME condition > eps``, a union of one null per condition; it is rejected only
when every condition's own test rejects at ``delta`` (an intersection-union test, level ``delta`` with no
correction: under ``H_j`` one condition's null is true and its test alone rejects with probability <= delta). The
walk is unchanged, so ``P(some condition's risk of the chosen point > eps) <= delta``: the target holds in each
condition at once, not only on the mix. Each condition is tested on its own frames, so the cost is set by the
condition where the exits are least reliable and the one with the fewest frames.

**Point estimate** (:func:`select_point_estimate`): the cheapest frontier point whose risk on the calibration data is
<= eps, with no margin: it misses its target on new data about as often as not near the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from . import risk as _risk
from .points import OperatingPoint
from .table import ExitTable

METHOD = ("learn-then-test: fixed sequence along the frontier; exact paired test (drop) or Clopper-Pearson "
          "(disagreement)")
ASSUMPTION = "calibration frames are drawn like the frames the model will see (i.i.d.)"
ORDER_FRACTION = 0.3  # share of the calibration frames that orders the candidates; the rest tests them
MIN_FRAMES = 50  # below this no point but "always final" can be certified at any useful target
# the walk climbs from "every input to the final exit" to the frontier's safest point in this many steps: that point
# is the cheapest of many the ordering part could not tell apart (all without a loss there), so on its own it is
# often already too aggressive to pass, and fixed-sequence testing would then certify nothing
LADDER_STEPS = 8


@dataclass
class Guarantee:
    """What a risk-controlled selection certifies (recorded in the profile and the manifest)."""

    method: str
    risk: str  # "accuracy_drop" (labels) | "disagreement" (with the final exit, no labels)
    target: float  # eps, a fraction
    confidence: float  # 1 - delta
    n: int  # calibration frames
    n_order: int
    n_test: int
    empirical_risk: float  # of the chosen point on the testing part
    upper_bound: float  # its (1 - delta) upper confidence bound
    certified: bool  # a point other than "every input to the final exit" passed
    frames_needed: int | None = None  # when not certified: about how many calibration frames would do
    assumption: str = ASSUMPTION
    # per condition (the selection held the target in each): name -> n_test, empirical_risk, upper_bound
    conditions: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Guarantee:
        if not isinstance(d, dict):
            raise TypeError("guarantee must be an object")
        names = {f for f in cls.__dataclass_fields__}
        cond = d.get("conditions")
        if cond is not None and not (isinstance(cond, dict) and all(
                isinstance(c, dict) and all(isinstance(c.get(k), (int, float)) and not isinstance(c.get(k), bool)
                                            for k in ("n_test", "empirical_risk", "upper_bound"))
                for c in cond.values())):
            raise TypeError("conditions must map each condition to its n_test, empirical_risk and upper_bound")
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        what = "accuracy drop vs the full model" if self.risk == "accuracy_drop" else "disagreement with the final exit"
        if not self.certified:
            more = f"; about {self.frames_needed} calibration frames would be needed" if self.frames_needed else ""
            return (f"no early-exit point certified: {what} <= {100 * self.target:.3g}% at "
                    f"{100 * self.confidence:.3g}% confidence needs more than the {self.n} calibration frames "
                    f"given{more}; every input goes to the final exit")
        if self.conditions:
            each = ", ".join(f"{name} {100 * c['upper_bound']:.2f}% ({int(c['n_test'])})"
                             for name, c in self.conditions.items())
            return (f"{what} <= {100 * self.target:.3g}% in every condition at once with "
                    f"{100 * self.confidence:.3g}% confidence (upper bounds, test frames: {each}; measured "
                    f"{100 * self.empirical_risk:.2f}% on all {self.n_test} of {self.n} frames; assumes "
                    f"{self.assumption} within each condition)")
        return (f"{what} <= {100 * self.target:.3g}% with {100 * self.confidence:.3g}% confidence "
                f"(upper bound {100 * self.upper_bound:.2f}%, measured {100 * self.empirical_risk:.2f}% on "
                f"{self.n_test} of {self.n} frames; assumes {self.assumption})")


@dataclass
class Selection:
    point: OperatingPoint  # evaluated on the whole table (every calibration frame)
    guarantee: Guarantee | None  # None: point estimate
    path: list[dict[str, float]] = field(default_factory=list)  # per tested point: macs, risk, passed


def conditions_too_small(conditions: Sequence[str] | np.ndarray) -> list[str]:
    """The conditions with fewer than ``MIN_FRAMES`` frames, as "name (frames)"."""
    names, counts = np.unique(np.asarray(conditions).astype(str), return_counts=True)
    return [f"{name} ({k})" for name, k in zip(names, counts) if k < MIN_FRAMES]


def check_conditions(conditions: Sequence[str] | np.ndarray, n: int) -> np.ndarray:
    """The per-frame condition names as an array; every condition needs ``MIN_FRAMES`` frames."""
    c = np.asarray(conditions).astype(str)
    if c.shape != (n,):
        raise UsageError(f"{c.size} condition names for {n} calibration frames: give one per frame")
    few = conditions_too_small(c)
    if few:
        raise UsageError(f"too few calibration frames in condition {', '.join(few)}: a per-condition guarantee "
                         f"needs at least {MIN_FRAMES} in each",
                         "calibrate on more frames, merge the small conditions, or calibrate on the pooled set")
    return c


def check_request(target: float, confidence: float, n: int) -> None:
    if not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise UsageError(f"target drop {target!r} must be between 0 and 100% (exclusive)", "e.g. --target-drop 1%")
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise UsageError(f"confidence {confidence!r} must be between 0 and 100% (exclusive)", "e.g. --confidence 90%")
    if n < MIN_FRAMES:
        raise UsageError(f"{n} calibration frames are too few for a guarantee (at least {MIN_FRAMES}; a 1% target at "
                         "90% confidence needs a few thousand)",
                         "calibrate on more frames (edge-ee profile --frames N)")


def passes(worse: int, better: int, disagree: int, n: int, target: float, delta: float, labelled: bool) -> bool:
    """Is H0: risk > target rejected at level delta? Labels: the exact paired test of the drop; without: the
    Clopper-Pearson bound of the disagreement."""
    if labelled:
        return _risk.paired_drop_pvalue(worse, better, n, target, stop_above=delta) <= delta
    return _risk.upper(disagree, n, delta) <= target


def upper_bound(worse: int, better: int, disagree: int, n: int, delta: float, labelled: bool) -> float:
    """The (1 - delta) upper confidence bound of the risk: the smallest target the test would pass."""
    if not labelled:
        return _risk.upper(disagree, n, delta)
    lo, hi = (worse - better) / n, 1.0
    if passes(worse, better, disagree, n, max(lo, 1e-9), delta, True):
        return max(lo, 0.0)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if passes(worse, better, disagree, n, mid, delta, True) else (mid, hi)
        if hi - lo < 2e-4:
            break
    return hi


def frames_needed(worse_rate: float, better_rate: float, disagree_rate: float, target: float, delta: float,
                  labelled: bool, limit: int = 200_000) -> int | None:
    """About how many test frames a point with these rates would need to be certified (doubling, then
    bisection to ~3%); None: not within ``limit`` or the rates themselves exceed the target."""
    def ok(n: int) -> bool:
        return passes(round(worse_rate * n), round(better_rate * n), round(disagree_rate * n), n, target, delta,
                      labelled)

    emp = worse_rate - better_rate if labelled else disagree_rate
    if emp >= target:
        return None
    n = 64
    while not ok(n):
        n *= 2
        if n > limit:
            return None
    lo, hi = n // 2, n
    while hi - lo > max(1, hi // 32):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def select_point_estimate(table: ExitTable, target: float, cost: str = "mean_macs",
                          front: list[OperatingPoint] | None = None) -> OperatingPoint:
    """The cheapest frontier point whose risk on ``table`` is <= target (no margin)."""
    front = front if front is not None else table.frontier(cost=cost, max_points=None)
    full_q = float(table.correct[-1].mean()) if table.correct is not None else 1.0
    ok = [p for p in front if (p.quality or 0.0) >= full_q - target - 1e-12]
    best = min(ok, key=lambda p: getattr(p, cost) or 0.0) if ok else table.point(table.never_keys(), "final exit")
    return best


def _emp(counts: tuple[int, int, int], n: int, labelled: bool) -> float:
    worse, better, disagree = counts
    return float((worse - better) / n if labelled else disagree / n)


def split_indices(n: int, order_fraction: float = ORDER_FRACTION, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ordering, testing) frame indices of a calibration set of n frames, a seeded random split."""
    perm = np.random.default_rng(seed).permutation(n)
    n_order = max(1, int(round(order_fraction * n)))
    return np.sort(perm[:n_order]), np.sort(perm[n_order:])


def _per_condition(test: ExitTable, cond: np.ndarray | None) -> list[tuple[str, ExitTable]]:
    """The testing part as one table per condition (one pooled table without conditions)."""
    if cond is None:
        return [("all", test)]
    return [(str(name), test.subset(np.flatnonzero(cond == name))) for name in np.unique(cond)]


def select_risk_controlled(table: ExitTable, target: float, confidence: float, *, cost: str = "mean_macs",
                           order_fraction: float = ORDER_FRACTION, levels: int = 40, max_points: int = 60,
                           seed: int = 0, conditions: Sequence[str] | np.ndarray | None = None) -> Selection:
    """Learn-then-Test selection (see the module docstring). ``table.labels`` None: label-free risk.
    ``conditions``: a condition name per frame; the target is then held in every condition at once."""
    n = table.n
    check_request(target, confidence, n)
    cond = None if conditions is None else check_conditions(conditions, n)
    delta = 1.0 - confidence
    labelled = table.labels is not None
    order_idx, test_idx = split_indices(n, order_fraction, seed)
    order, test = table.subset(order_idx), table.subset(test_idx)
    nt = test.n
    groups = _per_condition(test, None if cond is None else cond[test_idx])
    # safe -> aggressive: the frontier built on the ordering part, most expensive first
    front = list(reversed(order.frontier(levels=levels, max_points=max_points, cost=cost,
                                         groups=None if cond is None else cond[order_idx])))
    path = [order.point(keys) for keys in _ladder(order, order.key_thresholds(front[0].thresholds))] + front
    final_keys = table.never_keys()
    chosen_keys, chosen_counts = final_keys, (0, 0, 0)
    tested: list[dict[str, float]] = []
    chosen_groups = [(0, 0, 0)] * len(groups)
    for p in path:
        keys = table.key_thresholds(p.thresholds)
        counts = test.outcome_counts(keys)
        per = [g.outcome_counts(keys) for _, g in groups]
        ok = all(passes(*c, g.n, target, delta, labelled) for c, (_, g) in zip(per, groups))
        tested.append({"mean_macs": float(p.mean_macs or 0.0), "risk": _emp(counts, nt, labelled), "passed": ok})
        if not ok:
            break
        chosen_keys, chosen_counts, chosen_groups = keys, counts, per
    point = table.point(chosen_keys)
    certified = (point.exit_fractions or [1.0])[-1] < 1.0 - 1e-12  # it exits early somewhere
    needed = None
    if not certified:
        # the safest early-exiting point of the order, at the rates the ordering part saw
        for p in path:
            if (p.exit_fractions or [0.0])[-1] >= 1.0 - 1e-12:
                continue
            needed = _frames_needed_for(order, None if cond is None else cond[order_idx],
                                        table.key_thresholds(p.thresholds), target, delta, labelled)
            if needed is not None:
                needed = int(math.ceil(needed / (1.0 - order_fraction)))
                break
    bounds = [min(float(upper_bound(*c, g.n, delta, labelled)), float(target)) for c, (_, g) in
              zip(chosen_groups, groups)] if certified else [0.0] * len(groups)
    g = Guarantee(method=METHOD, risk="accuracy_drop" if labelled else "disagreement", target=float(target),
                  confidence=float(confidence), n=n, n_order=order.n, n_test=nt,
                  empirical_risk=_emp(chosen_counts, nt, labelled),
                  # the test passed at the target, so the smallest passing bound is at most the target
                  upper_bound=max(bounds),
                  certified=certified,
                  frames_needed=needed,
                  conditions=None if cond is None else {
                      name: {"n_test": g.n, "empirical_risk": _emp(c, g.n, labelled), "upper_bound": b}
                      for (name, g), c, b in zip(groups, chosen_groups, bounds)})
    point.note = "risk-controlled" if certified else "final exit (nothing certified)"
    return Selection(point, g, tested)


def _ladder(order: ExitTable, top: Sequence[float], steps: int = LADDER_STEPS) -> list[list[float]]:
    """Key vectors from "every input to the final exit" up to ``top`` (the frontier's safest point): at step j of
    ``steps`` each early exit fires for j/steps of the ordering inputs it fires for at ``top`` (its key quantile)."""
    never = order.never_keys()
    out = []
    for j in range(1, steps):
        keys = []
        for k, t in enumerate(top):
            share = float((order.keys[k] >= t).mean()) * j / steps
            keys.append(float(np.quantile(order.keys[k], 1.0 - share)) if share > 0 else never[k])
        out.append(keys)
    return out


def _frames_needed_for(order: ExitTable, cond: np.ndarray | None, keys: Sequence[float], target: float,
                       delta: float, labelled: bool) -> int | None:
    """Test frames a point would need, at the rates the ordering part saw; per condition, the condition that needs
    the most, scaled by its share of the frames."""
    need = 0.0
    for _name, g in _per_condition(order, cond):
        w, b, d = g.outcome_counts(keys)
        m = frames_needed(w / g.n, b / g.n, d / g.n, target, delta, labelled)
        if m is None:
            return None
        need = max(need, m * order.n / g.n)
    return int(math.ceil(need))


def parse_fraction(option: str, text: str | float) -> float:
    """A fraction strictly between 0 and 1 from ``1%``, ``0.01`` or a number (``--target-drop``, ``--confidence``)."""
    t = str(text).strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"{option} {text!r}: give a percentage (1%) or a fraction (0.01)") from None
    if not (math.isfinite(v) and 0.0 < v < 1.0):
        raise UsageError(f"{option} {text!r} must be between 0 and 100% (exclusive)")
    return v
