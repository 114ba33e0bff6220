"""The board's model name: power presets (the CPU-utilisation estimate) and the device identity both key on it."""

from __future__ import annotations

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
