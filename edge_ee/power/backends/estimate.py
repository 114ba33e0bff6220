"""Estimated power from CPU utilisation (psutil) and a device power model. Always ``estimated=True``.

P = idle_w + core_active_w * busy_cores, where busy_cores is the number of fully busy cores over the
last interval. By default (scope ``process``) the busy cores are *this process's* (its CPU time, all
threads, over wall time: ``psutil.Process().cpu_times()``), so the energy above idle is what this
workload adds and other processes on the machine do not leak into it; scope ``system`` counts every
process (``/proc/stat`` deltas via ``psutil.cpu_times``), closer to what a board sensor would see. The
presets are rough whole-board figures (≈); set your own with
``parse_power_model("idle=2.7,core=0.9")`` (append ``,scope=system`` for system-wide utilisation).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from ..base import Candidate, PowerSource
from ..board import DevicePowerModel, board_model
from ..registry import register_backend

PRESETS: dict[str, DevicePowerModel] = {
    "pi4": DevicePowerModel("pi4", idle_w=2.7, core_active_w=0.9),
    "pi5": DevicePowerModel("pi5", idle_w=2.7, core_active_w=1.1),
    "jetson-nano": DevicePowerModel("jetson-nano", idle_w=1.5, core_active_w=0.8),
    "orin-nano": DevicePowerModel("orin-nano", idle_w=4.5, core_active_w=0.6),
    "generic-x86": DevicePowerModel("generic-x86", idle_w=8.0, core_active_w=3.0),
}


def preset_for_board(board: str | None) -> DevicePowerModel:
    """The preset matching a board model string (``/proc/device-tree/model``), else generic-x86."""
    b = (board or "").lower()
    if "raspberry pi 5" in b:
        return PRESETS["pi5"]
    if "raspberry pi" in b:
        return PRESETS["pi4"]
    if "orin" in b:
        return PRESETS["orin-nano"]
    if "jetson" in b or "nvidia" in b:
        return PRESETS["jetson-nano"]
    return PRESETS["generic-x86"]


def parse_power_model(spec: str) -> DevicePowerModel:
    """A preset name (``pi5``) or ``idle=W,core=W`` (optionally starting with a preset to override),
    optionally with ``scope=process|system``."""
    spec = spec.strip()
    if spec in PRESETS:
        return PRESETS[spec]
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    base = PRESETS["generic-x86"]
    name = "custom"
    if parts and "=" not in parts[0]:
        if parts[0] not in PRESETS:
            raise ValueError(f"unknown power model {parts[0]!r}; presets: {', '.join(PRESETS)}")
        base, name = PRESETS[parts[0]], parts[0] + "+custom"
        parts = parts[1:]
    vals = {"idle": base.idle_w, "core": base.core_active_w}
    scope = base.scope
    for p in parts:
        sc = re.fullmatch(r"scope\s*=\s*(process|system)", p)
        if sc:
            scope = sc.group(1)
            continue
        m = re.fullmatch(r"(idle|core)\s*=\s*([0-9.]+)\s*[wW]?", p)
        if not m:
            raise ValueError(f"bad power model item {p!r}: expected idle=W, core=W or scope=process|system")
        vals[m.group(1)] = float(m.group(2))
    return DevicePowerModel(name, vals["idle"], vals["core"], scope)


def _process_times() -> tuple[float, float]:
    """(CPU seconds used by this process, all threads; monotonic wall seconds). ``process_time`` reads the
    process's CPU clock to the nanosecond; /proc's counters (psutil) advance in 10 ms ticks, so a window shorter
    than a tick would see no CPU time at all and its energy above idle would be noise around zero."""
    return time.process_time(), time.monotonic()


def _busy_total(t: Any) -> tuple[float, float]:
    total = sum(t)
    idle = getattr(t, "idle", 0.0) + getattr(t, "iowait", 0.0)
    # guest time is already included in user on Linux
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total - idle, total


@register_backend(order=1000, absent="never absent: the estimate always works", detail="PRESET|idle=W,core=W")
class EstimatedSource(PowerSource):
    """A cumulative energy counter [J] built from CPU time: ``idle_w * wall + core_active_w * busy
    core-seconds``. As a counter (like RAPL), the sampler turns it into the mean power of each sample
    interval, the right reading for a utilisation average (it belongs to the whole interval, not to
    the instant it was read)."""

    kind = "estimate"
    quantity = "energy"
    unit = "J (model: idle + per-core active x busy core-seconds)"
    estimated = True
    update_interval_s = 0.1  # CPU-time accounting ticks are ~10 ms: shorter intervals are noise

    @classmethod
    def candidates(cls, detail: str | None, model: DevicePowerModel | None) -> list[Candidate]:
        return find(parse_power_model(detail) if detail else model)

    @classmethod
    def check_detail(cls, detail: str) -> None:
        parse_power_model(detail)

    def __init__(self, model: DevicePowerModel | None = None,
                 cpu_times: Callable[[], Any] | None = None, ncpu: int | None = None,
                 process_times: Callable[[], tuple[float, float]] = _process_times) -> None:
        if model is None:
            model = preset_for_board(board_model())
        self.model = model
        whose = "this process's" if model.scope == "process" else "system"
        self.name = f"estimate from {whose} CPU utilisation (model {model.name})"
        self.rail = f"whole board (estimated, model {model.name})"
        self.path = None
        import psutil  # here, not at import: the registry imports every back end to build help texts

        self._ncpu = ncpu or psutil.cpu_count() or os.cpu_count() or 1
        read_cpu_times = cpu_times or psutil.cpu_times
        if model.scope == "process":
            self._times: Callable[[], tuple[float, float]] = process_times
        else:
            def system_times() -> tuple[float, float]:
                busy, total = _busy_total(read_cpu_times())
                return busy, total / self._ncpu  # /proc/stat's total counts every CPU's time

            self._times = system_times
        self._origin = self._times()
        self._last = self._origin
        self._last_cores = 0.0
        self.idle_power_w = model.idle_w
        # Scoped to this process, the model's power with this process idle is exactly idle_w: the baseline is
        # known, not measured (a measured one adds the sampler's own noise and can sit above a quiet run).
        self.idle_is_exact = model.scope == "process"

    def read(self) -> float:
        """Cumulative energy [J] since this source was opened."""
        busy, wall = self._times()
        return (self.model.idle_w * (wall - self._origin[1])
                + self.model.core_active_w * max(0.0, busy - self._origin[0]))

    def busy_cores(self) -> float | None:
        """Fully busy cores (0..ncpu) since the previous call, or None if no time passed."""
        busy, wall = self._times()
        db, dt = busy - self._last[0], wall - self._last[1]
        if dt <= 0:
            return None
        self._last = (busy, wall)
        self._last_cores = max(0.0, min(float(self._ncpu), db / dt))
        return self._last_cores

    def power(self) -> float:
        """Mean power [W] since the previous call (the model applied to :meth:`busy_cores`)."""
        b = self.busy_cores()
        return self.model.power(self._last_cores if b is None else b)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["model"] = {"name": self.model.name, "idle_w": self.model.idle_w,
                      "core_active_w": self.model.core_active_w, "scope": self.model.scope}
        return d


def find(model: DevicePowerModel | None = None) -> list[Candidate]:
    return [Candidate("estimate", "estimate from CPU utilisation", None, lambda: EstimatedSource(model))]
