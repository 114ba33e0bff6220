"""Run hook measuring energy per inference and per stage with a background power sampler.

At start: discover the power source (``--power-source``; the CPU-utilisation estimate when nothing
is readable), start sampling at the sensor's own rate, and measure the idle baseline. Per frame:
the inference window ``[t_start, t_start + total]`` (engine clock, the sampler's clock too) gives
``energy_mj`` (everything the rail used meanwhile) and ``marginal_energy_mj`` (above the idle
baseline); stage k's window is the cumulative segment/head times, giving ``stage_energy_mj``
(marginal, per stage). ``power_source``, ``power_rail`` and ``energy_estimated`` name where the
numbers come from. A sensor that disappears mid-run is replaced by the estimate by the sampler (one
warning); records from then on say ``energy_estimated: true``.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from typing import Any

from ..engine import Result
from ..power import EnergyWindow, PowerSampler, PowerSource, discover
from ..runner import RunHook, Runner
from ..sources.base import Frame

log = logging.getLogger("edge_ee.control")


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


class EnergyHook(RunHook):
    """Adds energy fields to every telemetry record and energy figures to the summary."""

    def __init__(self, prefer: str | None = None, baseline_s: float = 1.0, sampler: PowerSampler | None = None,
                 source_factory: Callable[[], PowerSource] | None = None,
                 full_energy_mj: float | None = None, announce: bool = True) -> None:
        self.prefer = prefer
        self.baseline_s = baseline_s
        self.sampler = sampler
        self._factory = source_factory
        self.full_energy_mj = full_energy_mj  # the full model's energy measured by `edge-ee profile`
        self.announce = announce
        self.last: EnergyWindow | None = None
        self._own_sampler = sampler is None

    # ---- life cycle -----------------------------------------------------------------------------
    def on_start(self, runner: Runner) -> None:
        if self.sampler is None:
            src = self._factory() if self._factory is not None else discover(self.prefer)
            self.sampler = PowerSampler(src).start()
        s = self.sampler
        if not s.running:
            s.start()
        if s.baseline_w is None:
            if self.baseline_s > 0:
                try:
                    s.measure_baseline(self.baseline_s)
                except RuntimeError as e:
                    log.warning("power: idle baseline not measured (%s); marginal energy unavailable", e)
            else:
                idle = getattr(s.source, "idle_power_w", None)
                if idle is not None:
                    s.set_baseline(float(idle))
        if self.announce:
            src = s.source
            est = "  [ESTIMATED, not measured]" if s.estimated else ""
            base = f", idle baseline {s.baseline_w:.3f} W" if s.baseline_w is not None else ""
            print(f"edge-ee: power: {src.name}, rail {src.rail}{base}{est}", file=sys.stderr)

    def on_result(self, runner: Runner, frame: Frame, result: Result, record: dict[str, Any]) -> None:
        s = self.sampler
        if s is None or not result.t_start:
            return
        t0 = result.t_start
        t1 = t0 + result.total_ms * 1e-3
        w = s.window(t0, t1)
        self.last = w
        record.update(w.to_telemetry())
        if w.baseline_w is not None:
            stages: list[float | None] = []
            t = t0
            for k, seg in enumerate(result.segment_ms):
                h = result.head_ms[k] if k < len(result.head_ms) else None
                dt = (seg + (h or 0.0)) * 1e-3
                stages.append(_r(1e3 * s.marginal_energy_between(t, t + dt)))
                t += dt
            record["stage_energy_mj"] = stages

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None:
        s = self.sampler
        if s is None:
            return
        info = s.info()
        summary["power"] = {k: info.get(k) for k in ("kind", "name", "rail", "unit", "quantity", "estimated",
                                                      "baseline_w", "period_s", "samples", "failed_sources")}
        e = summary.get("energy_mj_per_inference")
        if e is not None and self.full_energy_mj:
            summary["energy_vs_full_model"] = e / self.full_energy_mj
            summary["full_model_energy_mj"] = self.full_energy_mj
        if self._own_sampler:
            s.stop()

    @property
    def baseline_w(self) -> float | None:
        return None if self.sampler is None else self.sampler.baseline_w
