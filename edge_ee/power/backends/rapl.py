"""Intel RAPL (powercap) package energy counters.

``/sys/class/powercap/intel-rapl:N/energy_uj`` [uJ] is cumulative and wraps at
``max_energy_range_uj``. Since CVE-2020-8694 (PLATYPUS) ``energy_uj`` is readable by root only.
Top-level ``package-N`` zones are summed; ``psys`` (platform, a superset of the packages) and DRAM
subzones are not added to avoid double counting. Each counter is unwrapped here, so ``read()`` is
monotonic and the source declares no ``energy_range_j``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .. import sysfs
from ..base import Candidate, CounterUnwrapper, PowerSource
from ..registry import register_backend

if TYPE_CHECKING:
    from ..board import DevicePowerModel

CVE_HINT = ("RAPL energy_uj is root-only since CVE-2020-8694: run as root, or grant read access "
            "(e.g. a udev rule or `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`)")


@register_backend(order=50, absent="no /sys/class/powercap/intel-rapl:N/energy_uj")
class RaplSource(PowerSource):
    kind = "rapl"
    name = "Intel RAPL (powercap)"
    unit = "uJ cumulative (energy_uj)"
    quantity = "energy"
    update_interval_s = 0.01

    @classmethod
    def candidates(cls, detail: str | None, model: DevicePowerModel | None) -> list[Candidate]:
        return find()

    def __init__(self, zones: list[Path]) -> None:
        if not zones:
            raise sysfs.SensorNotFound("no RAPL package zones")
        self.zones = zones
        names = [sysfs.read_text_opt(z / "name") or z.name for z in zones]
        self.rail = "+".join(names)
        self.path = sysfs.display(zones[0] / "energy_uj")
        self._unwrap = []
        for z in zones:
            rng = sysfs.read_int_opt(z / "max_energy_range_uj")
            self._unwrap.append(CounterUnwrapper(rng / 1e6 if rng else None))
        self.read()

    def read(self) -> float:
        total = 0.0
        for z, unwrap in zip(self.zones, self._unwrap):
            try:
                raw = sysfs.read_int(z / "energy_uj") / 1e6
            except sysfs.SensorPermissionError as e:
                raise sysfs.SensorPermissionError(f"{e}: {CVE_HINT}") from e
            total += unwrap(raw)
        return total


def _zones() -> tuple[list[Path], list[Path]]:
    """(package zones, other top-level zones such as psys)."""
    pkgs: list[Path] = []
    other: list[Path] = []
    for z in sysfs.rglob("/sys/class/powercap/intel-rapl:*"):
        if not re.fullmatch(r"intel-rapl:\d+", z.name) or not (z / "energy_uj").exists():
            continue
        name = sysfs.read_text_opt(z / "name") or ""
        (pkgs if name.startswith("package") or not name else other).append(z)
    return pkgs, other


def find() -> list[Candidate]:
    pkgs, other = _zones()
    out = []
    if pkgs:
        out.append(Candidate("rapl", RaplSource.name, sysfs.display(pkgs[0] / "energy_uj"),
                             lambda: RaplSource(pkgs)))
    for z in other:
        out.append(Candidate("rapl", f"{RaplSource.name} {sysfs.read_text_opt(z / 'name')}",
                             sysfs.display(z / "energy_uj"), lambda z=z: RaplSource([z]), auto=not pkgs,
                             note="platform domain (includes the packages): not added to them"))
    return out
