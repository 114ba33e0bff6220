"""NVIDIA Jetson INA3221 power monitors, JetPack 4 (IIO ``ina3221x``) and JetPack 5/6 (hwmon ``ina3221``).

JetPack 4: ``/sys/bus/i2c/drivers/ina3221x/<bus>-0040/iio:deviceN/`` with ``rail_name_N`` and
``in_powerN_input`` [mW], N = 0..2.
JetPack 5/6: ``/sys/bus/i2c/drivers/ina3221/<bus>-0040/hwmon/hwmonX/`` with ``inN_label``,
``inN_input`` [mV] and ``currN_input`` [mA]; P [mW] = mV * mA / 1000. Channels labelled
"sum of shunt voltages" or "NC" are skipped.
Total rail: ``VDD_IN`` or ``POM_5V_IN`` when present, else the sum of all rails.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import sysfs
from ..base import Candidate, PowerSource
from ..registry import register_backend

if TYPE_CHECKING:
    from ..board import DevicePowerModel

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
SKIP_LABELS = ("sum of shunt voltages", "nc")
IIO_DEFAULT_INTERVAL_S = 0.02  # the IIO driver exposes no update_interval


@dataclass(frozen=True)
class Rail:
    name: str
    files: tuple[Path, ...]  # IIO: (in_powerN_input,), hwmon: (inN_input, currN_input)


def _iio_devices() -> list[Path]:
    return sysfs.rglob("/sys/bus/i2c/drivers/ina3221x/*/iio:device*")


def _hwmon_devices() -> list[Path]:
    found = sysfs.rglob("/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")
    for d in sysfs.rglob("/sys/class/hwmon/hwmon*"):
        if sysfs.read_text_opt(d / "name") == "ina3221":
            found.append(d)
    out: list[Path] = []
    seen: set[str] = set()
    for d in found:  # the class entry is a symlink to the driver's: keep one of each
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _iio_rails(dev: Path) -> list[Rail]:
    rails = []
    for f in sorted(dev.glob("rail_name_*")):
        n = f.name.rsplit("_", 1)[1]
        name = sysfs.read_text(f)
        if not name or name.lower() in SKIP_LABELS:
            continue
        p = dev / f"in_power{n}_input"
        if p.exists():
            rails.append(Rail(name, (p,)))
    return rails


def _hwmon_rails(dev: Path) -> list[Rail]:
    rails = []
    for f in sorted(dev.glob("in*_label")):
        m = re.fullmatch(r"in(\d+)_label", f.name)
        if not m:
            continue
        n = m.group(1)
        name = sysfs.read_text(f)
        if not name or name.strip().lower() in SKIP_LABELS:
            continue
        v, c = dev / f"in{n}_input", dev / f"curr{n}_input"
        if v.exists() and c.exists():
            rails.append(Rail(name, (v, c)))
    return rails


@register_backend(order=10, detail="RAIL",
                  absent="no INA3221 under /sys/bus/i2c/drivers/ina3221x (JetPack 4) or ina3221 (JetPack 5/6)")
class JetsonINA3221Source(PowerSource):
    kind = "jetson"

    @classmethod
    def candidates(cls, detail: str | None, model: DevicePowerModel | None) -> list[Candidate]:
        return find(rail=detail)

    def __init__(self, layout: str, rails: list[Rail], rail: str | None = None,
                 update_interval_s: float | None = None, path: str | None = None) -> None:
        if not rails:
            raise sysfs.SensorNotFound("INA3221 found but it lists no usable rails")
        self.layout = layout
        self.all_rails = rails
        self.name = "INA3221 (JetPack 4 IIO)" if layout == "iio" else "INA3221 (JetPack 5/6 hwmon)"
        self.unit = "mW (in_powerN_input)" if layout == "iio" else "mV x mA (inN_input, currN_input)"
        self.path = path
        by_name = {r.name: r for r in rails}
        if rail and rail.lower() not in ("total", "auto"):
            if rail not in by_name:
                raise sysfs.SensorNotFound(f"no Jetson rail {rail!r}; rails: {', '.join(by_name)}")
            self._selected = [by_name[rail]]
            self.rail = rail
        else:
            total = next((by_name[t] for t in TOTAL_RAILS if t in by_name), None)
            if total is not None:
                self._selected = [total]
                self.rail = total.name
            else:
                self._selected = list(rails)
                self.rail = "sum(" + "+".join(r.name for r in rails) + ")"
        if update_interval_s is None:
            update_interval_s = IIO_DEFAULT_INTERVAL_S
        self.update_interval_s = update_interval_s

    def _rail_w(self, r: Rail) -> float:
        if self.layout == "iio":
            return sysfs.read_int(r.files[0]) / 1e3
        return sysfs.read_int(r.files[0]) * sysfs.read_int(r.files[1]) / 1e6

    def read(self) -> float:
        return sum(self._rail_w(r) for r in self._selected)

    def read_rails(self) -> dict[str, float]:
        """Power of every rail [W] (for telemetry detail; reads every file)."""
        return {r.name: self._rail_w(r) for r in self.all_rails}

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d["rails"] = [r.name for r in self.all_rails]
        return d


def find(rail: str | None = None) -> list[Candidate]:
    """INA3221 devices present under the sysfs root (JetPack 4 layout first)."""
    out: list[Candidate] = []
    iio = _iio_devices()
    hw = _hwmon_devices()
    if iio:
        out.append(Candidate("jetson", "INA3221 (JetPack 4 IIO)", sysfs.display(iio[0]),
                             lambda: _open_iio(iio, rail)))
    if hw:
        out.append(Candidate("jetson", "INA3221 (JetPack 5/6 hwmon)", sysfs.display(hw[0]),
                             lambda: _open_hwmon(hw, rail)))
    return out


def _open_iio(devs: list[Path], rail: str | None) -> JetsonINA3221Source:
    rails = [r for d in devs for r in _iio_rails(d)]
    return JetsonINA3221Source("iio", rails, rail, path=sysfs.display(devs[0]))


def _open_hwmon(devs: list[Path], rail: str | None) -> JetsonINA3221Source:
    rails = [r for d in devs for r in _hwmon_rails(d)]
    ms = [v for d in devs if (v := sysfs.read_int_opt(d / "update_interval")) is not None]
    interval = max(ms) / 1e3 if ms else None
    return JetsonINA3221Source("hwmon", rails, rail, update_interval_s=interval, path=sysfs.display(devs[0]))
