"""``tegrastats`` output parsing: a fallback power source on Jetson when sysfs is not readable.

JetPack 4 prints ``VDD_IN 1038/1134`` (mW current/average), JetPack 5/6 ``VDD_GPU_SOC 2390mW/2390mW``.
The source runs ``tegrastats --interval N`` as a subprocess and keeps the newest line's reading.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import weakref
from typing import TYPE_CHECKING

from .. import sysfs
from ..base import Candidate, PowerSource
from ..registry import register_backend
from .jetson import TOTAL_RAILS

if TYPE_CHECKING:
    from ..board import DevicePowerModel

_RAIL_RE = re.compile(r"(?:(?<=\s)|^)([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "LFB"}


def parse_line(line: str) -> dict[str, float]:
    """Rails of one tegrastats line: {rail: current power [W]} (the running average is ignored)."""
    return {m.group(1): int(m.group(2)) / 1e3 for m in _RAIL_RE.finditer(line) if m.group(1) not in _NOT_RAILS}


def total_power(rails: dict[str, float], rail: str | None = None) -> tuple[str, float]:
    """(rail name, W): the requested rail, else VDD_IN/POM_5V_IN, else the sum of all rails."""
    if not rails:
        raise ValueError("no power rails in tegrastats output")
    if rail and rail.lower() not in ("total", "auto"):
        if rail not in rails:
            raise KeyError(f"no rail {rail!r} in tegrastats output; rails: {', '.join(rails)}")
        return rail, rails[rail]
    for t in TOTAL_RAILS:
        if t in rails:
            return t, rails[t]
    return "sum(" + "+".join(rails) + ")", sum(rails.values())


@register_backend(order=20, absent="tegrastats is not on PATH", detail="RAIL")
class TegrastatsSource(PowerSource):
    kind = "tegrastats"
    name = "tegrastats"
    unit = "mW (tegrastats)"

    @classmethod
    def candidates(cls, detail: str | None, model: DevicePowerModel | None) -> list[Candidate]:
        return find(rail=detail)

    def __init__(self, interval_ms: int = 100, rail: str | None = None, first_line_timeout_s: float = 3.0,
                 exe: str = "tegrastats") -> None:
        path = shutil.which(exe)
        if path is None:
            raise sysfs.SensorNotFound(f"{exe} is not on PATH")
        self.path = path
        self.update_interval_s = interval_ms / 1e3
        self._want = rail
        self._lock = threading.Lock()
        self._latest: float | None = None
        self._rail = "unknown"
        self._error: str | None = None
        self._got_line = threading.Event()
        try:
            self._proc = subprocess.Popen([path, "--interval", str(int(interval_ms))], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                          bufsize=1, start_new_session=True)
        except OSError as e:
            raise sysfs.SensorReadError(f"cannot run {path}: {e}") from e
        self._finalizer = weakref.finalize(self, _terminate, self._proc)  # also at interpreter exit
        self._thread = threading.Thread(target=self._pump, name="edge-ee-tegrastats", daemon=True)
        self._thread.start()
        if not self._got_line.wait(first_line_timeout_s + 2 * self.update_interval_s):
            self.close()
            raise sysfs.SensorReadError(f"tegrastats printed nothing within {first_line_timeout_s:.0f} s")
        with self._lock:
            if self._latest is None:
                err = self._error or "no power rails in its output"
                self.close()
                raise sysfs.SensorReadError(f"tegrastats: {err}")
        self.rail = self._rail

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            rails = parse_line(line)
            with self._lock:
                if rails:
                    try:
                        self._rail, self._latest = total_power(rails, self._want)
                        self._error = None
                    except (KeyError, ValueError) as e:
                        self._error = str(e).strip("'\"")
                else:
                    self._error = "no power rails in its output: " + line.strip()[:120]
            self._got_line.set()
        self._got_line.set()

    def read(self) -> float:
        if self._proc.poll() is not None:
            raise sysfs.SensorReadError(f"tegrastats exited (code {self._proc.returncode})")
        with self._lock:
            if self._latest is None:
                raise sysfs.SensorReadError(f"tegrastats: {self._error or 'no reading yet'}")
            return self._latest

    def close(self) -> None:
        fin = getattr(self, "_finalizer", None)
        if fin is not None:
            fin()
        thread = getattr(self, "_thread", None)
        t0 = time.monotonic()
        while thread is not None and thread.is_alive() and time.monotonic() - t0 < 1.0:
            thread.join(0.1)


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    """Signal tegrastats' own process group (it runs in a new session: only it and its children)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _terminate(proc: subprocess.Popen[str]) -> None:
    """Stop the subprocess; also registered to run at interpreter exit (weakref.finalize)."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=2)


def find(rail: str | None = None, interval_ms: int = 100) -> list[Candidate]:
    path = shutil.which("tegrastats")
    if path is None:
        return []
    return [Candidate("tegrastats", "tegrastats", path, lambda: TegrastatsSource(interval_ms, rail))]
