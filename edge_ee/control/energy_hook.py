"""Run hook measuring energy per inference and per stage with a background power sampler.

At start: discover the power source (``--power-source``; the CPU-utilisation estimate when nothing
is readable), start sampling at the sensor's own rate, and set the idle baseline: the one a matching
device profile measured with the same power source (source, name, rail and estimate model all equal)
when ``--power-baseline`` is not given, else measured for ``--power-baseline`` seconds (default 1).

*The* energy of an inference or a stage is its energy **above the idle baseline** (the integral of
power minus the baseline over its time window); the total including idle power is reported beside
it under a ``_total`` name. Per frame, with the inference window ``[t_start, t_start + infer_ms]``
(engine clock, the sampler's clock too), the telemetry record gains:

* ``energy_mj``: energy above idle of the inference, the sum of ``stage_energy_mj`` (None when no
  idle baseline could be measured);
* ``stage_energy_mj``: energy above idle per stage run; stage k's window is its segment + head time,
  and the engine's own work between stages is counted in the last stage run, so the stages add up to
  ``energy_mj``;
* ``audit_energy_mj`` (any :class:`~edge_ee.pipeline.runner.ExtraWork` by name): a hook's work on the frame after
  the answer (the audit's full-model run) extends the window; its energy is its own piece (from the engine's
  answer to the end of that work) and counts in ``energy_mj``, ``energy_total_mj`` and the summary (so
  ``stage_energy_mj`` then adds up to less);
* ``energy_total_mj``: the inference window's energy with idle power included;
* ``energy_clamped``: true when a figure came out below the idle baseline (noise) and was reported as 0
  (stages: negative ones 0, the others scaled so they still add up to ``energy_mj``);
* ``power_source``, ``power_rail``, ``energy_estimated`` (true once the numbers come from the
  CPU-utilisation estimate) and ``energy_extrapolated`` (true when the window was not yet covered by
  a power sample when the record was written: its last part holds the newest reading, the usual case
  for inferences shorter than the sensor's update interval).

The summary's energy figures do not reuse those per-record values: every inference window is
queued and integrated again once samples cover it (:class:`~edge_ee.power.sampler.WindowIntegrator`,
a final wait at the end), giving ``energy_mj_per_inference`` (above idle, never below 0),
``energy_total_mj_per_inference``, ``exit_energy_mj`` (above idle, per exit: the sum of the mean
energies of the stages up to that exit, each mean over every inference that ran the stage and never
below 0, so the figures grow with the exit as the work does; the mean over the inferences that took an
exit mixes in which inputs exit where and is noisier), ``energy_clamped_inferences`` and
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

from ..core.engine import Result
from ..pipeline.runner import RunHook, Runner
from ..power import EnergyWindow, PowerSampler, PowerSource, discover
from ..power.sampler import WindowIntegrator, clamp_above_idle, round_mj
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
    if isinstance(base, (int, float)) and info.get("baseline_from"):
        idle += f" (from {info['baseline_from']})"
    return f"{label}, rail: {rail}, {tag}{idle}"


class EnergyHook(RunHook):
    """Adds energy fields to every telemetry record and energy figures to the summary."""

    phase = "measure"

    DEFAULT_BASELINE_S = 1.0

    def __init__(self, prefer: str | None = None, baseline_s: float | None = 1.0,
                 sampler: PowerSampler | None = None, source_factory: Callable[[], PowerSource] | None = None,
                 announce: bool = True, profile_power: dict[str, Any] | None = None,
                 profile_path: Any = None) -> None:
        """``baseline_s``: seconds of idle power to measure; None: reuse ``profile_power['baseline_w']`` (the
        device profile's power section) when it was measured with the same power source, else measure
        :attr:`DEFAULT_BASELINE_S`."""
        self.prefer = prefer
        self.baseline_s = baseline_s
        self.profile_power = profile_power
        self.profile_path = profile_path
        self.baseline_from: str | None = None
        self.clamped = 0  # records whose energy came out below idle and was reported as 0
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
        if s.baseline_w is None and s.known_baseline() is not None:
            s.set_baseline(s.known_baseline())  # type: ignore[arg-type]
            self.baseline_from = "the estimate's idle model"
        if s.baseline_w is None and self.baseline_s is None:
            reuse = profile_baseline(self.profile_power, s.info())
            if reuse is not None:
                s.set_baseline(reuse)
                self.baseline_from = "the device profile" + (f" {self.profile_path}" if self.profile_path else "")
        if s.baseline_w is None:
            seconds = self.DEFAULT_BASELINE_S if self.baseline_s is None else self.baseline_s
            if seconds > 0:
                try:
                    s.measure_baseline(seconds)
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
        self.clamped = 0
        if self.announce:
            print(f"edge-ee: power: {describe_power(self._info())}", file=sys.stderr)

    def _info(self) -> dict[str, Any]:
        info = self.sampler.info() if self.sampler is not None else {}
        info["baseline_from"] = self.baseline_from
        return info

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
        n = len(result.segment_ms)
        extra = runner.extra  # work after the answer (the audit): its own pieces, counted in energy_mj
        for x in extra:
            bounds.append(max(x.t_end, bounds[-1]))
        w, pieces = s.split_window(bounds)
        self.last = w
        record.update(w.to_telemetry())  # energy_mj: 1e3 * w.marginal_j, never below 0; None without a baseline
        if w.marginal_j is not None:
            _, pieces, clamped = clamp_above_idle(w.marginal_j, pieces)
            record["stage_energy_mj"] = [round_mj(1e3 * (v or 0.0)) for v in pieces[:n]]
            for x, v in zip(extra, pieces[n:]):
                record[f"{x.name}_energy_mj"] = round_mj(1e3 * (v or 0.0))
            if clamped:
                record["energy_clamped"] = True
                self.clamped += 1
        integ = self._integ
        if integ is not None:
            integ.add(result.exit_index, t0, bounds[-1])
            for k in range(n):  # each stage run: per-exit energy from the stage means
                integ.add(("stage", k), bounds[k], bounds[k + 1])
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
        info = self._info()
        summary["power"] = {k: info.get(k) for k in ("kind", "name", "rail", "unit", "quantity", "estimated",
                                                      "baseline_w", "baseline_from", "period_s", "samples",
                                                      "failed_sources")}
        summary["energy_clamped_inferences"] = self.clamped
        model = info.get("model")
        summary["power"]["model"] = model.get("name") if isinstance(model, dict) else None
        if s.estimated:
            summary["energy_estimated"] = True
        if self._own_sampler:
            s.stop()

    @staticmethod
    def _summarise(summary: dict[str, Any], sums: dict[Any, Any], num_exits: int) -> None:
        """Energy per inference and per exit from the windows integrated once samples covered them; this hook
        is the only writer of these summary keys (None when no inference ran)."""
        exits = {k: v for k, v in sums.items() if isinstance(k, int)}
        n = sum(v.n for v in exits.values())
        if not n:
            summary.update(energy_mj_per_inference=None, energy_total_mj_per_inference=None, exit_energy_mj=None,
                           energy_clamped=False, energy_extrapolated_inferences=0, energy_estimated=None)
            return
        marg = math.fsum(v.marginal_j for v in exits.values())
        per_inf = 1e3 * marg / n if math.isfinite(marg) else None
        summary["energy_mj_per_inference"] = None if per_inf is None else max(per_inf, 0.0)
        summary["energy_total_mj_per_inference"] = 1e3 * math.fsum(v.energy_j for v in exits.values()) / n
        per_exit: list[float | None] = []
        cum: float | None = 0.0
        for k in range(num_exits):
            st = sums.get(("stage", k))
            m = st.mean_mj() if st is not None else None
            cum = None if cum is None or m is None else cum + max(m, 0.0)
            per_exit.append(cum)
        summary["exit_energy_mj"] = per_exit
        summary["energy_clamped"] = per_inf is not None and per_inf < 0.0
        summary["energy_extrapolated_inferences"] = sum(v.extrapolated for v in exits.values())
        summary["energy_estimated"] = any(v.estimated for v in exits.values())

    @property
    def baseline_w(self) -> float | None:
        return None if self.sampler is None else self.sampler.baseline_w


def profile_baseline(profile_power: dict[str, Any] | None, info: dict[str, Any]) -> float | None:
    """The idle baseline [W] a device profile measured, when it used the same power source as this run
    (kind, name, rail and, for the estimate, its model); else None. The profile itself only applies
    to this device, software stack and bundle (:func:`edge_ee.profiling.profile.find_profile`)."""
    if not profile_power:
        return None
    base = profile_power.get("baseline_w")
    if not isinstance(base, (int, float)) or isinstance(base, bool) or not math.isfinite(base) or base < 0:
        return None
    model = info.get("model")
    model_name = model.get("name") if isinstance(model, dict) else model
    same = (profile_power.get("source") == info.get("kind") and profile_power.get("name") == info.get("name")
            and profile_power.get("rail") == info.get("rail") and profile_power.get("model") == model_name)
    return float(base) if same else None
