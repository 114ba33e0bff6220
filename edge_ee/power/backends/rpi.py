"""Raspberry Pi 5 PMIC ADC via ``vcgencmd pmic_read_adc``.

Lines such as ``VDD_CORE_A current(7)=0.75012000A`` and ``VDD_CORE_V volt(15)=0.86173300V`` are
paired by rail name (the ADC indices differ) and power = sum of V*I over the paired rails. This is
the PMIC side only: conversion losses and USB loads are not included. Every read spawns a process,
so reads are rate limited to <= 10 Hz. Older Pis answer ``error=1 error_msg="Command not registered"``;
the command needs the ``video`` group.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import sysfs
from ..base import Candidate, PowerSource
from ..registry import register_backend

if TYPE_CHECKING:
    from ..board import DevicePowerModel

_LINE_RE = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=\s*([-+0-9.eE]+)\s*[AV]\s*$")
MIN_INTERVAL_S = 0.1  # <= 10 Hz
_PERMISSION_HINTS = ("vchi", "/dev/vcio", "/dev/vchiq", "permission denied", "can't open device")


def parse_pmic(text: str) -> dict[str, float]:
    """{rail: W} for every rail that has both a current (``_A``) and a voltage (``_V``) line."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE_RE.match(line)
        if not m:
            continue
        rail, kind, val = m.group(1), m.group(2), float(m.group(3))
        (amps if kind == "A" else volts)[rail] = val
    return {r: volts[r] * amps[r] for r in amps if r in volts}


@register_backend(order=30, absent="vcgencmd is not on PATH")
class Pi5PmicSource(PowerSource):
    kind = "pi5"
    name = "Raspberry Pi 5 PMIC (vcgencmd pmic_read_adc)"
    unit = "V x A (vcgencmd pmic_read_adc)"
    update_interval_s = MIN_INTERVAL_S

    @classmethod
    def candidates(cls, detail: str | None, model: DevicePowerModel | None) -> list[Candidate]:
        return find()

    def __init__(self, exe: str = "vcgencmd", timeout_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        path = shutil.which(exe)
        if path is None:
            raise sysfs.SensorNotFound(f"{exe} is not on PATH")
        self.path = path
        self._timeout = timeout_s
        self._clock = clock
        self._last_t: float | None = None
        self._last_w = 0.0
        self.rails: dict[str, float] = {}
        self._query()  # fail now if unsupported or not permitted
        self.rail = f"PMIC total (sum of {len(self.rails)} rails; excludes conversion losses and USB loads)"

    def _query(self) -> float:
        try:
            cp = subprocess.run([self.path or "vcgencmd", "pmic_read_adc"], capture_output=True, text=True,
                                timeout=self._timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise sysfs.SensorReadError(f"vcgencmd pmic_read_adc timed out after {self._timeout:.0f} s") from e
        except PermissionError as e:
            raise sysfs.SensorPermissionError(f"cannot execute {self.path}: permission denied") from e
        except OSError as e:
            raise sysfs.SensorReadError(f"cannot run {self.path}: {e}") from e
        out = (cp.stdout or "") + (cp.stderr or "")
        if "Command not registered" in out:
            raise sysfs.SensorNotFound("vcgencmd has no pmic_read_adc (not a Raspberry Pi 5, or old firmware)")
        low = out.lower()
        if cp.returncode != 0 and any(h in low for h in _PERMISSION_HINTS):
            raise sysfs.SensorPermissionError(
                "vcgencmd cannot open the VideoCore device (permission denied): add the user to the "
                "'video' group (sudo usermod -aG video $USER, then log in again)")
        rails = parse_pmic(out)
        if cp.returncode != 0 or not rails:
            first = out.strip().splitlines()[0][:160] if out.strip() else "no output"
            raise sysfs.SensorReadError(f"vcgencmd pmic_read_adc failed (exit {cp.returncode}): {first}")
        self.rails = rails
        self._last_w = sum(rails.values())
        self._last_t = self._clock()
        return self._last_w

    def read(self) -> float:
        if self._last_t is not None and self._clock() - self._last_t < MIN_INTERVAL_S:
            return self._last_w  # rate limit: each read spawns a process
        return self._query()

    def read_rails(self) -> dict[str, float]:
        self.read()
        return dict(self.rails)


def find() -> list[Candidate]:
    path = shutil.which("vcgencmd")
    if path is None:
        return []
    return [Candidate("pi5", Pi5PmicSource.name, path, Pi5PmicSource)]
