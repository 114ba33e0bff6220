"""Device facts: the hardware and software a profile is keyed by, and what changes while running.

Every file is read under the sysfs root (``$EDGE_EE_SYSFS_ROOT``, default ``/``), every command
with a timeout, and every probe is wrapped: a failure shows as ``{"available": False, "reason": ...}``
("not available: reason" in ``edge-ee doctor``), never an exception. No torch, no onnxruntime
import unless asked for its version.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from ..power import sysfs
from ..power.board import board_model

CMD_TIMEOUT_S = 3.0
CPU_UNKNOWN = "unknown (no model name in /proc/cpuinfo)"

# ARM CPU part numbers (/proc/cpuinfo "CPU part") of the usual edge boards.
_ARM_PARTS = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD41): "Cortex-A78", (0x41, 0xD42): "Cortex-A78AE", (0x41, 0xD4B): "Cortex-A78C",
    (0x4E, 0x004): "NVIDIA Carmel",
}


def run_command(cmd: list[str], timeout: float = CMD_TIMEOUT_S) -> tuple[int, str]:
    """(exit code, stdout+stderr); raises FileNotFoundError when the command is not on PATH."""
    exe = shutil.which(cmd[0])
    if exe is None:
        raise FileNotFoundError(f"{cmd[0]} is not on PATH")
    cp = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout,
                        stdin=subprocess.DEVNULL)
    return cp.returncode, (cp.stdout or "") + (cp.stderr or "")


def probe(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``{"available": True, **fn()}`` or ``{"available": False, "reason": ...}``; never raises."""
    try:
        out = fn()
    except subprocess.TimeoutExpired as e:
        return {"available": False, "reason": f"{e.cmd[0] if e.cmd else 'command'} timed out"}
    except Exception as e:
        return {"available": False, "reason": str(e) or type(e).__name__}
    return {"available": True, **out} if "available" not in out else out


# ---- static facts -----------------------------------------------------------------------------
def cpu_model() -> str | None:
    """CPU model from ``/proc/cpuinfo`` ("model name", or the ARM implementer/part), else platform."""
    text = sysfs.read_text_opt(sysfs.resolve("/proc/cpuinfo"), limit=1 << 20) or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() not in fields:
            fields[k.strip()] = v.strip()
    if fields.get("model name"):
        return fields["model name"]
    try:
        key = (int(fields["CPU implementer"], 16), int(fields["CPU part"], 16))
        if key in _ARM_PARTS:
            return _ARM_PARTS[key]
        return f"ARM implementer {key[0]:#x} part {key[1]:#x}"
    except (KeyError, ValueError):
        pass
    return fields.get("Hardware") or fields.get("cpu model") or platform.processor() or None


def core_counts() -> dict[str, int | None]:
    try:
        import psutil

        phys = psutil.cpu_count(logical=False)
    except Exception:  # pragma: no cover
        phys = None
    return {"logical": os.cpu_count(), "physical": phys}


def onnxruntime_info() -> dict[str, Any]:
    import onnxruntime as ort

    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def python_version() -> str:
    return platform.python_version()


# ---- dynamic state ----------------------------------------------------------------------------
def power_mode() -> str | None:
    """Jetson ``nvpmodel -q`` (e.g. "MAXN (0)", "15W (2)"), None where nvpmodel is absent/unreadable."""
    try:
        rc, out = run_command(["nvpmodel", "-q"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"NV Power Mode:\s*(\S+)", out)
    if rc != 0 or not m:
        return None
    num = re.search(r"^\s*(\d+)\s*$", out[m.end():], re.M)
    return f"{m.group(1)} ({num.group(1)})" if num else m.group(1)


_THROTTLE_BITS = {
    0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit",
    16: "under-voltage occurred", 17: "arm frequency capping occurred", 18: "throttling occurred",
    19: "soft temperature limit occurred",
}


def decode_throttled(value: int) -> list[str]:
    return [name for bit, name in _THROTTLE_BITS.items() if value & (1 << bit)]


def throttling() -> dict[str, Any] | None:
    """Raspberry Pi ``vcgencmd get_throttled``: {"raw": "0x50000", "now": [...], "since_boot": [...]}."""
    try:
        rc, out = run_command(["vcgencmd", "get_throttled"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", out)
    if rc != 0 or not m:
        return None
    v = int(m.group(1), 16)
    flags = decode_throttled(v)
    return {"raw": m.group(1), "now": [f for f in flags if "occurred" not in f],
            "since_boot": [f for f in flags if "occurred" in f]}


def temperatures() -> dict[str, float]:
    """{thermal zone type: °C} from ``/sys/class/thermal/thermal_zone*/temp`` [m°C]."""
    out: dict[str, float] = {}
    for z in sysfs.rglob("/sys/class/thermal/thermal_zone*"):
        t = sysfs.read_int_opt(z / "temp")
        if t is None:
            continue
        name = sysfs.read_text_opt(z / "type") or z.name
        if name in out:
            name = f"{name}-{z.name.removeprefix('thermal_zone')}"
        out[name] = round(t / 1000.0, 1)
    return out


def engine_session_facts(engine: Any) -> tuple[list[str], int]:
    """(providers actually used by ``engine``'s onnxruntime sessions, in order; intra-op threads)."""
    used: list[str] = list(getattr(engine, "providers", None) or [])
    cfg = getattr(engine, "session_config", None)
    if not used:  # not an Engine with live sessions: what its config asks for
        from ..core.sessions import resolve_providers

        used = resolve_providers(getattr(cfg, "providers", None))
    return used, int(getattr(cfg, "intra_op_threads", 1) or 1)


def _default_session() -> tuple[list[str], int]:
    try:
        from ..core.sessions import SessionConfig, resolve_providers  # what a default Engine uses

        cfg = SessionConfig()
        return resolve_providers(cfg.providers), cfg.intra_op_threads
    except Exception:  # noqa: BLE001 - no onnxruntime: the identity still has to be reported
        return [], 1


def device_identity(providers: Sequence[str] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Stable facts that key a profile: board, CPU, cores, arch, power mode, Python, onnxruntime, and the
    execution providers actually used with the intra-op thread count.

    ``providers``/``threads`` default to a default :class:`~edge_ee.core.sessions.SessionConfig` (CPU, 1
    thread); :func:`engine_session_facts` gives them for a built engine (``edge_ee.profiling.profile`` does).
    The providers the onnxruntime build merely offers are ``providers_available``.
    """
    ort = probe(onnxruntime_info)
    if providers is None or threads is None:
        dp, dt = _default_session()
        providers = dp if providers is None else providers
        threads = dt if threads is None else threads
    return {
        "board": board_model(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "power_mode": power_mode(),
        "python": python_version(),
        "onnxruntime": ort.get("version"),
        "providers": list(providers),
        "threads": int(threads),
        "providers_available": ort.get("providers", []),
    }


def device_state() -> dict[str, Any]:
    """Facts that change while running: temperatures, throttling."""
    return {"temperatures_c": temperatures(), "throttling": throttling()}


def device_facts() -> dict[str, Any]:
    return {**device_identity(), **device_state(), "kernel": platform.release()}
