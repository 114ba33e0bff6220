"""Run hook: the budget controller sets the engine's thresholds frame by frame.

* latency budget (``20ms``): the controller tracks a mean latency of ``setpoint x budget``
  (default 0.9) with the thresholds, and switches the engine's deadline guard to risk-priced
  decisions (``edge_ee.core.deadline``): before each stage the guard weighs the stage's miss probability
  against the chance that the answer so far is wrong, at a price this hook adapts after every frame
  so that the deadline-miss rate meets ``target_miss`` (default 0.5%). Misses the guard cannot
  predict per input (a stage preempted by another process) are random; the price decides how many,
  and which (the least confident), inputs take that risk. The hook also keeps an EWMA of the miss
  rate (~300 frames) for the summary;
* energy budget (``50mJ``): energy **above the idle baseline** per inference (``energy_mj`` from
  the energy hook, the same quantity as the profile's frontier energies), so the budget is what
  inference adds to the device's idle consumption;
* power budget (``2.5W``): average power of the whole device, idle included: average power = idle +
  rate x energy above idle per inference, so the controller tracks an energy above idle of
  ``(budget - idle) / rate`` per inference, where rate is ``--fps`` when given, else the measured
  frame rate.

Measured and predicted costs are the same quantity (latency, or energy above idle), so the
controller's slowdown estimate (measured / predicted) stays near 1 on the device that was profiled.
A budget is reported as impossible (one warning) when the cheapest point is predicted to exceed it
at start, or when the smoothed measurement stays above it at the cheapest point for 50 frames:
for latency against the budget itself (the controller aims at ``setpoint x budget``, but a mean
between the two still meets every deadline), for energy and power 5% above the target.

Telemetry gains ``operating_point`` (index along the frontier), ``controller_error`` (normalised,
positive = slack), ``controller_target`` and, for latency, ``risk_price`` (the guard's price of a
miss); the thresholds in force are already in ``thresholds``.
The summary gains a ``controller`` section.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from ..core.budget import Budget, parse_budget
from ..core.deadline import RiskPricedGuard, StrictGuard
from ..core.engine import Engine, Result
from ..errors import UsageError
from ..pipeline.runner import RunHook, Runner
from ..sources.base import Frame
from .controller import ControllerConfig, IndexController
from .operating_points import Frontier, from_manifest, from_profile, ladder

log = logging.getLogger("edge_ee.control")


def probe_stage_latency(engine: Engine, runs: int = 30, warmup: int = 5) -> list[float]:
    """Mean seconds of segment k + head k, measured on a zero input (a quick start-up probe)."""
    x = np.zeros(engine.input_shape, dtype=engine.input_dtype)
    acc = np.zeros(engine.num_stages)
    for i in range(warmup + runs):
        a = engine.infer_all_exits(x)
        if i >= warmup:
            acc += np.array(a.segment_s) + np.array(a.head_s)
    return [float(v) for v in acc / runs]


def build_frontier(engine: Engine, profile: dict[str, Any] | None = None) -> Frontier:
    """Profile frontier if given and made for the rule in force, else the manifest's, else a ladder."""
    rule = engine.rules[0]
    if profile is not None:
        f = from_profile(profile)
        if f is not None and (f.rule is None or f.rule == rule):
            return f
        if f is not None:
            log.warning("profile frontier is for exit rule %r, the run uses %r: not used", f.rule, rule)
    f = from_manifest(engine.manifest, rule)
    if f is not None:
        return f
    return ladder(engine.num_stages, rule)


class ControllerHook(RunHook):
    phase = "control"

    def __init__(self, budget: Budget, profile: dict[str, Any] | None = None, setpoint: float = 0.9,
                 target_miss: float = 0.005, fps: float | None = None, energy_hook: Any = None,
                 config: ControllerConfig | None = None,
                 frontier: Frontier | None = None, stage_latency_s: list[float] | None = None) -> None:
        self.budget = budget
        self.handles_budget = budget.kind
        self.profile = profile
        self.setpoint = setpoint if budget.kind == "latency" else 1.0
        self.target_miss = target_miss
        self.miss_rate = 0.0  # EWMA of deadline misses (latency budgets)
        self.fps = fps
        self.energy_hook = energy_hook
        self.cfg = config
        self.frontier = frontier
        self._stage_latency_s = stage_latency_s
        self.ctrl: IndexController | None = None
        self.guard: RiskPricedGuard | None = None  # handed to the engine for a latency budget
        self._in_force = -1
        self._warned_infeasible = False
        self._warned_missing = False
        self._low_streak = 0
        self._last_t: float | None = None
        self._rate: float | None = None
        self.moves = 0
        self.index_hist: list[int] = []

    # ---- set-up ---------------------------------------------------------------------------------
    def _warn_infeasible(self, why: str) -> None:
        if not self._warned_infeasible:
            self._warned_infeasible = True
            log.warning("budget %s cannot be met: %s; answering from the first exit", self.budget.text, why)

    def _costs(self) -> list[float] | None:
        f = self.frontier
        assert f is not None
        if self.budget.kind == "latency":
            return f.costs("latency")
        c = f.costs("energy")
        if c is None:  # relative cost only: the latency ladder scaled by the controller's slowdown (W)
            c = f.costs("latency")
        return c

    def _idle_w(self) -> float:
        b = getattr(self.energy_hook, "baseline_w", None)
        return float(b) if b is not None else 0.0

    def _target(self) -> float:
        b = self.budget
        if b.kind == "latency":
            return b.value * self.setpoint
        if b.kind == "energy":
            return b.value
        rate = self.fps or self._rate
        idle = self._idle_w()
        if rate is None or rate <= 0:
            return math.inf
        return max((b.value - idle) / rate, 1e-9)

    def on_start(self, runner: Runner) -> None:
        engine = runner.engine
        if self.frontier is None:
            self.frontier = build_frontier(engine, self.profile)
        f = self.frontier
        if f.stage_latency_ms is None or f.costs("latency") is None:
            lat = self._stage_latency_s or probe_stage_latency(engine)
            cum = list(np.cumsum(lat) * 1e3)
            f.set_stage_costs(latency_ms=cum)
        kind = self.budget.kind
        if kind == "power":
            self._check_power()
        costs = self._costs()
        target = self._target()
        self.ctrl = IndexController(len(f), target if math.isfinite(target) else 1.0, costs,
                                    self._start_index(f, costs, target), self.cfg)
        if kind == "latency":
            self.guard = RiskPricedGuard(engine.latency, self.target_miss)
            engine.use_guard(self.guard)
        if kind == "power" and not math.isfinite(target):
            self.ctrl.target = 1.0  # replaced as soon as the frame rate is measured
        self._apply(engine)

    def _check_power(self) -> None:
        """A power budget needs the idle power (it is inside the budget) and a paced loop to mean much."""
        if self.energy_hook is None or self.energy_hook.baseline_w is None:
            log.warning("power budget without an idle baseline: treating idle power as 0 W")
        elif self.budget.value <= self._idle_w():
            self._warn_infeasible(f"the idle power alone is {self._idle_w():.3f} W")
        if self.fps is None:
            log.warning("power budget without --fps: the loop runs back to back, so average power is "
                        "close to the power while inferring; pace the loop with --fps for a meaningful budget")

    def _start_index(self, f: Frontier, costs: list[float] | None, target: float) -> float | None:
        """Where the controller starts on the frontier (warning once when even the first exit is over budget):
        the point predicted to meet the target; mid-way when the scale is unknown until measured."""
        kind = self.budget.kind
        if kind == "latency":
            # answering at the first exit costs stage 0 (known even when the points' costs are not: a ladder)
            first = (f.stage_latency_ms[0] * 1e-3 if f.stage_latency_ms
                     else (costs[0] if costs is not None else None))
            if first is not None and first > self.budget.value:
                self._warn_infeasible(f"the first exit alone takes {1e3 * first:.3f} ms here")
            return float(f.choose("latency", target)[0]) if costs is not None else None
        if kind == "energy" and f.costs("energy") is not None:
            idx, ok = f.choose("energy", target)
            if not ok:
                self._warn_infeasible(f"the first exit alone takes {f.points[0].energy_mj:.3f} mJ above idle here")
            return float(idx)
        return float(len(f) // 2)  # scale unknown until measured: start mid-way

    def _apply(self, engine: Engine) -> None:
        assert self.ctrl is not None and self.frontier is not None
        i = self.ctrl.index
        if i != self._in_force:
            engine.set_thresholds(self.frontier.points[i].thresholds)
            if self._in_force >= 0:
                self.moves += 1
            self._in_force = i

    def _release_guard(self, engine: Engine) -> None:
        """Give the engine its strict guard back (over the same latency statistics)."""
        if self.guard is not None:
            engine.use_guard(StrictGuard(engine.latency))
            self.guard = None

    # ---- SIGHUP -----------------------------------------------------------------------------------
    def on_reload(self, runner: Runner, settings: dict[str, Any], changed: set[str]) -> set[str]:
        """A reloaded budget of the same kind retargets the controller on the next frame; removing the
        budget hands the thresholds back to the reload (profile or bundle); another kind needs a restart."""
        if "budget" not in changed:
            return set()
        new = parse_budget(settings.get("budget"))
        if new is None:
            self.ctrl = None
            self._release_guard(runner.engine)
            self.handles_budget = None
            return {"budget"}
        if new.kind != self.budget.kind:
            raise UsageError(f"budget kind changed from {self.budget.kind} to {new.kind}; "
                             "restart the service to switch controllers")
        self.budget = new
        if self.ctrl is not None:
            t = self._target()
            if math.isfinite(t):
                self.ctrl.set_target(t)
        return {"budget"}

    # ---- per frame ------------------------------------------------------------------------------
    def before_infer(self, runner: Runner, frame: Frame) -> None:
        if self.ctrl is not None:
            self._apply(runner.engine)

    def _measure(self, record: dict[str, Any], result: Result) -> float | None:
        """Seconds (latency) or joules above the idle baseline (energy, power) of the frame just run."""
        kind = self.budget.kind
        if kind == "latency":
            return record["total_ms"] * 1e-3
        v = record.get("energy_mj")
        if v is None:
            if not self._warned_missing:
                self._warned_missing = True
                log.warning("no energy-above-idle measurement (energy_mj; is there an idle baseline?) for the %s "
                            "budget: the controller holds its operating point", kind)
            return None
        return float(v) * 1e-3

    def _limit(self, c: IndexController) -> float:
        """Smoothed cost above which the cheapest point does not meet the budget."""
        if self.budget.kind == "latency":
            return self.budget.value
        return 1.05 * c.target

    def on_result(self, runner: Runner, frame: Frame, result: Result, record: dict[str, Any]) -> None:
        c = self.ctrl
        if c is None:
            return
        now = time.perf_counter()
        if self._last_t is not None:
            dt = now - self._last_t
            if dt > 0:
                r = 1.0 / dt
                self._rate = r if self._rate is None else self._rate + 0.05 * (r - self._rate)
        self._last_t = now
        if self.budget.kind == "power":
            t = self._target()
            if math.isfinite(t):
                c.set_target(t)
        y = self._measure(record, result)
        k = self._in_force
        if self.budget.kind == "latency" and record.get("deadline_met") is not None:
            self.miss_rate += 0.003 * ((0.0 if record["deadline_met"] else 1.0) - self.miss_rate)
            if self.guard is not None:
                self.guard.observe(record["deadline_met"])
                record["risk_price"] = round(self.guard.price, 4)
        if y is not None:
            c.update(y, k)
            if c.index == 0 and c.saturated == "low" and c.y_f is not None and c.y_f > self._limit(c):
                self._low_streak += 1
                if self._low_streak >= 50:
                    self._warn_infeasible("measured cost stays above the target at the cheapest operating point")
            else:
                self._low_streak = 0
        record["operating_point"] = k
        record["controller_error"] = round(c.error, 4)
        record["controller_target"] = round(c.target * 1e3, 6)  # ms (latency) or mJ (energy, power)
        if len(self.index_hist) < 100000:
            self.index_hist.append(k)

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None:
        price = self.guard.price if self.guard is not None else None
        self._release_guard(runner.engine)  # the engine may serve another run: strict guard again
        c, f = self.ctrl, self.frontier
        if c is None or f is None:
            return
        hist = np.bincount(np.array(self.index_hist, dtype=np.int64), minlength=len(f)) if self.index_hist else []
        unit = "ms" if self.budget.kind == "latency" else "mJ"
        summary["controller"] = {
            "budget": self.budget.to_json(),
            "frontier_source": f.source,
            "points": len(f),
            "final_index": c.index,
            "final_thresholds": f.points[c.index].thresholds,
            "moves": self.moves,
            "mean_index": float(np.mean(self.index_hist)) if self.index_hist else None,
            "index_histogram": [int(v) for v in hist],
            "target": c.target * 1e3,
            "target_unit": unit,
            "slowdown": c.slowdown,
            "infeasible_warning": self._warned_infeasible,
            "miss_rate": self.miss_rate if self.budget.kind == "latency" else None,
            "target_miss": self.target_miss if self.budget.kind == "latency" else None,
            "risk_price": price,
        }
