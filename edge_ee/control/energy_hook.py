"""Run hook measuring energy per inference and per stage with a background power sampler.

At start: discover the power source (``--power-source``; the CPU-utilisation estimate when nothing
is readable), start sampling at the sensor's own rate, and measure the idle baseline.

*The* energy of an inference or a stage is its energy **above the idle baseline** (the integral of
power minus the baseline over its time window); the total including idle power is reported beside
it under a ``_total`` name. Per frame, with the inference window ``[t_start, t_start + infer_ms]``
(engine clock, the sampler's clock too), the telemetry record gains:

* ``energy_mj``: energy above idle of the inference, the sum of ``stage_energy_mj`` (None when no
  idle baseline could be measured);
* ``stage_energy_mj``: energy above idle per stage run; stage k's window is its segment + head time,
  and the engine's own work between stages is counted in the last stage run, so the stages add up to
  ``energy_mj``;
* ``audit_energy_mj`` (any :class:`~edge_ee.runner.ExtraWork` by name): a hook's work on the frame after
  the answer (the audit's full-model run) extends the window; its energy is its own piece (from the engine's
  answer to the end of that work) and counts in ``energy_mj``, ``energy_total_mj`` and the summary (so
  ``stage_energy_mj`` then adds up to less);
* ``energy_total_mj``: the inference window's energy with idle power included;
* ``power_source``, ``power_rail``, ``energy_estimated`` (true once the numbers come from the
  CPU-utilisation estimate) and ``energy_extrapolated`` (true when the window was not yet covered by
  a power sample when the record was written: its last part holds the newest reading, the usual case
  for inferences shorter than the sensor's update interval).

The summary's energy figures do not reuse those per-record values: every inference window is
queued and integrated again once samples cover it (:class:`~edge_ee.power.sampler.WindowIntegrator`,
a final wait at the end), giving ``energy_mj_per_inference`` (above idle),
``energy_total_mj_per_inference``, ``exit_energy_mj`` (above idle, per exit) and
``energy_extrapolated_inferences`` (windows no sample covered, normally 0), plus ``mean_power_w``:
the average power over the whole run, idle included (what a power budget limits). A sensor that
disappears mid-run is replaced by the estimate by the sampler (one warning); records from then on
say ``energy_estimated: true``.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Callable
from typing import Any

from ..engine import Result
from ..power import EnergyWindow, PowerSampler, PowerSource, discover
from ..power.sampler import WindowIntegrator, round_mj
from ..runner import RunHook, Runner
from ..sources.base import Frame

log = logging.getLogger("edge_ee.control")

_EST_NOTE = re.compile(r"\s*\((?:estimated|model)\b[^)]*\)")


def describe_power(info: dict[str, Any]) -> str:
    """One line for a power source: ``INA3221 (...), rail: VDD_IN, measured, idle baseline 3.100 W`` or
    ``estimate, rail: whole board, ESTIMATED (CPU-utilisation model generic-x86), idle baseline ...``.
    ``info`` is :meth:`PowerSampler.info` (or the summary's ``power`` section)."""
    rail = _EST_NOTE.sub("", str(info.get("rail") or "unknown")) or "unknown"
    model = info.get("model")
    model_name = model.get("name") if isinstance(model, dict) else model
    if info.get("kind") == "estimate":
        label = "estimate"
        tag = "ESTIMATED (CPU-utilisation model" + (f" {model_name})" if model_name else ")")
    else:
        label = str(info.get("name") or info.get("kind") or "unknown")
        tag = "ESTIMATED" if info.get("estimated") else "measured"
    base = info.get("baseline_w")
    idle = f", idle baseline {base:.3f} W" if isinstance(base, (int, float)) else ", no idle baseline"
    return f"{label}, rail: {rail}, {tag}{idle}"


class EnergyHook(RunHook):
    """Adds energy fields to every telemetry record and energy figures to the summary."""

    def __init__(self, prefer: str | None = None, baseline_s: float = 1.0, sampler: PowerSampler | None = None,
                 source_factory: Callable[[], PowerSource] | None = None, announce: bool = True) -> None:
        self.prefer = prefer
        self.baseline_s = baseline_s
        self.sampler = sampler
        self._factory = source_factory
        self.announce = announce
        self.last: EnergyWindow | None = None
        self._own_sampler = sampler is None
        self._integ: WindowIntegrator | None = None
        self._t_first: float | None = None

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
                    log.warning("power: idle baseline not measured (%s); energy above idle unavailable "
                                "(only energy_total_mj is recorded)", e)
            else:
                idle = getattr(s.source, "idle_power_w", None)
                if idle is not None:
                    s.set_baseline(float(idle))
                else:
                    log.warning("power: no idle baseline (--power-baseline 0 and %s has no idle model); energy "
                                "above idle unavailable (only energy_total_mj is recorded)", s.source.name)
        self._integ = WindowIntegrator(s)
        self._t_first = None
        if self.announce:
            print(f"edge-ee: power: {describe_power(s.info())}", file=sys.stderr)

    def before_infer(self, runner: Runner, frame: Frame) -> None:
        if self._t_first is None and self.sampler is not None:
            self._t_first = self.sampler.clock()

    def on_result(self, runner: Runner, frame: Frame, result: Result, record: dict[str, Any]) -> None:
        s = self.sampler
        if s is None or not result.t_start:
            return
        t0 = result.t_start
        t1 = t0 + result.total_ms * 1e-3
        bounds = [t0]
        t = t0
        heads = result.head_ms
        for k, seg in enumerate(result.segment_ms[:-1]):
            h = heads[k] if k < len(heads) else None
            t += (seg + (h or 0.0)) * 1e-3
            bounds.append(min(t, t1))
        bounds.append(t1)  # the last stage run also gets the engine's work between stages
        extra = runner.extra  # work after the answer (the audit): its own pieces, counted in energy_mj
        for x in extra:
            bounds.append(max(x.t_end, bounds[-1]))
        w, pieces = s.split_window(bounds)
        self.last = w
        record.update(w.to_telemetry())  # energy_mj = round_mj(1e3 * w.marginal_j), None without a baseline
        if w.marginal_j is not None:
            n = len(result.segment_ms)
            record["stage_energy_mj"] = [round_mj(1e3 * (v or 0.0)) for v in pieces[:n]]
            for x, v in zip(extra, pieces[n:]):
                record[f"{x.name}_energy_mj"] = round_mj(1e3 * (v or 0.0))
        integ = self._integ
        if integ is not None:
            integ.add(result.exit_index, t0, bounds[-1])
            integ.update()

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None:
        s = self.sampler
        if s is None:
            return
        t_end = s.clock()
        wait = min(2 * s.period_s + 0.2, 2.0)
        s.wait_for(t_end, timeout=wait)  # a sample after the run: every window is covered
        if self._integ is not None:
            self._summarise(summary, self._integ.finish(timeout=0.0), runner.engine.num_stages)
        if self._t_first is not None and t_end > self._t_first:
            run = s.window(self._t_first, t_end)
            summary["mean_power_w"] = None if math.isnan(run.mean_power_w) else run.mean_power_w
        info = s.info()
        summary["power"] = {k: info.get(k) for k in ("kind", "name", "rail", "unit", "quantity", "estimated",
                                                      "baseline_w", "period_s", "samples", "failed_sources")}
        model = info.get("model")
        summary["power"]["model"] = model.get("name") if isinstance(model, dict) else None
        if s.estimated:
            summary["energy_estimated"] = True
        if self._own_sampler:
            s.stop()

    @staticmethod
    def _summarise(summary: dict[str, Any], sums: dict[Any, Any], num_exits: int) -> None:
        """Energy per inference and per exit from the windows integrated once samples covered them."""
        n = sum(v.n for v in sums.values())
        if not n:
            return
        marg = math.fsum(v.marginal_j for v in sums.values())
        summary["energy_mj_per_inference"] = 1e3 * marg / n if math.isfinite(marg) else None
        summary["energy_total_mj_per_inference"] = 1e3 * math.fsum(v.energy_j for v in sums.values()) / n
        summary["exit_energy_mj"] = [sums[k].mean_mj() if k in sums else None for k in range(num_exits)]
        summary["energy_extrapolated_inferences"] = sum(v.extrapolated for v in sums.values())
        summary["energy_estimated"] = any(v.estimated for v in sums.values())

    @property
    def baseline_w(self) -> float | None:
        return None if self.sampler is None else self.sampler.baseline_w
