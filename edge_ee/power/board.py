"""The board: its model name (power presets of the CPU-utilisation estimate and the device identity key on it) and
the power model the estimate uses for it."""

from __future__ import annotations

from dataclasses import dataclass

from . import sysfs


def board_model() -> str | None:
    """``/proc/device-tree/model`` (Pi, Jetson), else DMI vendor + product (x86), else None."""
    for p in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        s = sysfs.read_text_opt(sysfs.resolve(p))
        if s:
            return s
    vendor = sysfs.read_text_opt(sysfs.resolve("/sys/class/dmi/id/sys_vendor"))
    product = sysfs.read_text_opt(sysfs.resolve("/sys/class/dmi/id/product_name"))
    dmi = " ".join(x for x in (vendor, product) if x and x.lower() not in ("to be filled by o.e.m.", "default string"))
    return dmi or None


@dataclass(frozen=True)
class DevicePowerModel:
    """A board's power draw as a function of busy CPU cores (the CPU-utilisation estimate's model)."""

    name: str
    idle_w: float  # whole board at idle
    core_active_w: float  # extra per fully busy core
    scope: str = "process"  # whose CPU time counts: "process" (this one) or "system" (all)

    def power(self, busy_cores: float) -> float:
        return self.idle_w + self.core_active_w * max(0.0, busy_cores)
