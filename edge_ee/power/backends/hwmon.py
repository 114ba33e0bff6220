"""Generic hwmon power/energy sensors (INA219/INA226 ``ina2xx`` boards and any hwmon with power/energy).

Units (kernel hwmon ABI): power*_input / power*_average [uW], energy*_input [uJ, cumulative],
curr*_input [mA], in*_input [mV]. Devices are matched by their ``name`` file, never by the hwmonN
number (it changes across reboots). The Jetson ``ina3221`` is handled by :mod:`.jetson`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .. import sysfs
from ..base import Candidate, PowerSource
from ..registry import register_backend

if TYPE_CHECKING:
    from ..board import DevicePowerModel

INA2XX = {"ina209", "ina219", "ina220", "ina226", "ina230", "ina231", "ina233", "ina238", "ina260"}
EXCLUDED = {"ina3221"}  # handled by the Jetson module
# GPU-only sensors: listed, usable when asked for by name, never picked automatically as "the" power.
NOT_SYSTEM = {"amdgpu", "radeon", "nouveau", "i915", "xe"}
DEFAULT_INTERVAL_S = 0.05


def _attr_dir(dev: Path) -> Path:
    """Old kernels keep the attributes under ``device/``."""
    if not any(dev.glob("power*_*")) and not any(dev.glob("energy*_input")) and (dev / "device").is_dir():
        return dev / "device"
    return dev


@register_backend(order=40, detail="NAME",
                  absent="no hwmon device with power*_input/power*_average/energy*_input under /sys/class/hwmon")
class HwmonSource(PowerSource):
    kind = "hwmon"

    @classmethod
    def candidates(cls, detail: str | None, model: DevicePowerModel | None) -> list[Candidate]:
        return find(name=detail)

    def __init__(self, dev: Path, hwname: str, files: tuple[Path, ...], quantity: str, label: str,
                 unit: str, update_interval_s: float) -> None:
        self.dev = dev
        self.hwname = hwname
        self.name = f"hwmon {hwname}"
        self.files = files
        self.quantity = "energy" if quantity == "energy" else "power"
        self.rail = label
        self.unit = unit
        self.update_interval_s = update_interval_s
        self.path = sysfs.display(files[0])

    def read(self) -> float:
        if self.quantity == "energy":
            return sysfs.read_int(self.files[0]) / 1e6  # uJ -> J
        if len(self.files) == 2:  # in1_input [mV] * curr1_input [mA]
            return sysfs.read_int(self.files[0]) * sysfs.read_int(self.files[1]) / 1e6
        return sysfs.read_int(self.files[0]) / 1e6  # uW -> W


def _channels(dev: Path, hwname: str) -> list[tuple[tuple[Path, ...], str, str, str]]:
    """(files, quantity, label, unit) for every power/energy channel of one hwmon device."""
    a = _attr_dir(dev)
    out: list[tuple[tuple[Path, ...], str, str, str]] = []

    def label(prefix: str, n: str) -> str:
        lab = sysfs.read_text_opt(a / f"{prefix}{n}_label")
        return f"{hwname} {lab}" if lab else f"{hwname} {prefix}{n}"

    for f in sorted(a.glob("power*_*")):
        m = re.fullmatch(r"power(\d+)_(input|average)", f.name)
        if m and not (m.group(2) == "average" and (a / f"power{m.group(1)}_input").exists()):
            out.append(((f,), "power", label("power", m.group(1)), f"uW ({f.name})"))
    if hwname in INA2XX and not out:
        v, c = a / "in1_input", a / "curr1_input"
        if v.exists() and c.exists():
            out.append(((v, c), "power", f"{hwname} bus", "mV x mA (in1_input, curr1_input)"))
    for f in sorted(a.glob("energy*_input")):
        m = re.fullmatch(r"energy(\d+)_input", f.name)
        if m:
            out.append(((f,), "energy", label("energy", m.group(1)), f"uJ cumulative ({f.name})"))
    return out


def find(name: str | None = None) -> list[Candidate]:
    """Every hwmon power/energy channel; ``name`` restricts to hwmon devices with that ``name`` file.

    Order: INA2xx boards, then other power channels, then energy counters; GPU-only sensors are
    marked ``auto=False`` unless asked for by name.
    """
    cands: list[tuple[int, Candidate]] = []
    for dev in sysfs.rglob("/sys/class/hwmon/hwmon*"):
        hwname = sysfs.read_text_opt(dev / "name") or sysfs.read_text_opt(dev / "device" / "name")
        if not hwname or hwname in EXCLUDED or (name is not None and hwname != name):
            continue
        ms = sysfs.read_int_opt(_attr_dir(dev) / "update_interval")
        interval = ms / 1e3 if ms else DEFAULT_INTERVAL_S
        for files, quantity, lab, unit in _channels(dev, hwname):
            rank = 0 if hwname in INA2XX else (1 if quantity == "power" else 2)

            def opener(dev: Path = dev, hwname: str = hwname, files: tuple[Path, ...] = files,
                       quantity: str = quantity, lab: str = lab, unit: str = unit,
                       interval: float = interval) -> HwmonSource:
                src = HwmonSource(dev, hwname, files, quantity, lab, unit, interval)
                src.read()
                return src

            auto = name is not None or hwname not in NOT_SYSTEM
            note = None if auto else "GPU-only sensor: not used automatically (ask for it by name)"
            cands.append((rank, Candidate("hwmon", f"hwmon {hwname}", sysfs.display(files[0]), opener,
                                          auto=auto, note=note)))
    cands.sort(key=lambda rc: rc[0])
    return [c for _, c in cands]
