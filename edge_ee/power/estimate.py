"""Estimated power from CPU utilisation (psutil) and a device power model. Always ``estimated=True``.

P = idle_w + core_active_w * busy_cores, where busy_cores is the number of fully busy cores over the
last interval (from ``/proc/stat`` deltas via ``psutil.cpu_times``). The presets are rough
whole-board figures (≈); set your own with ``parse_power_model("idle=2.7,core=0.9")``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from .base import Candidate, PowerSource


@dataclass(frozen=True)
class DevicePowerModel:
    name: str
    idle_w: float  # whole board at idle
    core_active_w: float  # extra per fully busy core

    def power(self, busy_cores: float) -> float:
        return self.idle_w + self.core_active_w * max(0.0, busy_cores)


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
    """A preset name (``pi5``) or ``idle=W,core=W`` (optionally starting with a preset to override)."""
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
    for p in parts:
        m = re.fullmatch(r"(idle|core)\s*=\s*([0-9.]+)\s*[wW]?", p)
        if not m:
            raise ValueError(f"bad power model item {p!r}: expected idle=W or core=W")
        vals[m.group(1)] = float(m.group(2))
    return DevicePowerModel(name, vals["idle"], vals["core"])


def _busy_total(t: Any) -> tuple[float, float]:
    total = sum(t)
    idle = getattr(t, "idle", 0.0) + getattr(t, "iowait", 0.0)
    # guest time is already included in user on Linux
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total - idle, total


class EstimatedSource(PowerSource):
    kind = "estimate"
    unit = "W (model: idle + per-core active x busy cores)"
    estimated = True
    update_interval_s = 0.1  # /proc/stat ticks are 10 ms: shorter intervals are noise

    def __init__(self, model: DevicePowerModel | None = None,
                 cpu_times: Callable[[], Any] = psutil.cpu_times, ncpu: int | None = None) -> None:
        if model is None:
            from ..device import board_model  # local import: device imports power

            model = preset_for_board(board_model())
        self.model = model
        self.name = f"estimate from CPU utilisation (model {model.name})"
        self.rail = f"whole board (estimated, model {model.name})"
        self.path = None
        self._cpu_times = cpu_times
        self._ncpu = ncpu or psutil.cpu_count() or os.cpu_count() or 1
        self._last = _busy_total(cpu_times())
        self._last_w = model.idle_w
        self.idle_power_w = model.idle_w

    def busy_cores(self) -> float | None:
        busy, total = _busy_total(self._cpu_times())
        db, dt = busy - self._last[0], total - self._last[1]
        if dt <= 0:
            return None
        self._last = (busy, total)
        return max(0.0, min(1.0, db / dt)) * self._ncpu

    def read(self) -> float:
        b = self.busy_cores()
        if b is not None:
            self._last_w = self.model.power(b)
        return self._last_w

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["model"] = {"name": self.model.name, "idle_w": self.model.idle_w,
                      "core_active_w": self.model.core_active_w}
        return d


def find(model: DevicePowerModel | None = None) -> list[Candidate]:
    return [Candidate("estimate", "estimate from CPU utilisation", None, lambda: EstimatedSource(model))]
