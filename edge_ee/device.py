"""Device facts (telemetry and profile keys) and the ``edge-ee doctor`` report.

Every file is read under the sysfs root (``$EDGE_EE_SYSFS_ROOT``, default ``/``), every command
with a timeout, and every probe is wrapped: a failure shows as ``{"available": False, "reason": ...}``
("not available: reason" in :func:`format_doctor`), never an exception. No torch, no onnxruntime
import unless asked for its version.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .power import sysfs
from .power.board import board_model

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


def _run(cmd: list[str], timeout: float = CMD_TIMEOUT_S) -> tuple[int, str]:
    """(exit code, stdout+stderr); raises FileNotFoundError when the command is not on PATH."""
    exe = shutil.which(cmd[0])
    if exe is None:
        raise FileNotFoundError(f"{cmd[0]} is not on PATH")
    cp = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout,
                        stdin=subprocess.DEVNULL)
    return cp.returncode, (cp.stdout or "") + (cp.stderr or "")


def _probe(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
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
        rc, out = _run(["nvpmodel", "-q"])
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
        rc, out = _run(["vcgencmd", "get_throttled"])
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
        from .core.sessions import resolve_providers

        used = resolve_providers(getattr(cfg, "providers", None))
    return used, int(getattr(cfg, "intra_op_threads", 1) or 1)


def _default_session() -> tuple[list[str], int]:
    try:
        from .core.sessions import SessionConfig, resolve_providers  # what a default Engine uses

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
    ort = _probe(onnxruntime_info)
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


# ---- doctor -----------------------------------------------------------------------------------
def _board() -> dict[str, Any]:
    b = board_model()
    if not b:
        raise FileNotFoundError("no /proc/device-tree/model or DMI product name")
    return {"model": b}


def _cpu() -> dict[str, Any]:
    return {"model": cpu_model(), **core_counts(), "machine": platform.machine()}


def _power(model: Any = None) -> dict[str, Any]:
    from .power import list_sensors

    sensors = [s.to_dict() for s in list_sensors(model)]
    selected = next((s for s in sensors if s["readable"] and s.get("auto", True)), None)
    return {"sensors": sensors, "selected": selected}


def _v4l2() -> dict[str, Any]:
    devs = []
    for p in sysfs.rglob("/dev/video*"):
        if not re.fullmatch(r"video\d+", p.name):
            continue
        name = sysfs.read_text_opt(sysfs.resolve(f"/sys/class/video4linux/{p.name}/name"))
        devs.append({"path": f"/dev/{p.name}", "name": name})
    if not devs:
        return {"available": False, "reason": "no /dev/video* devices", "devices": []}
    return {"devices": devs}


def parse_cv2_build_info(info: str) -> dict[str, bool | None]:
    def flag(key: str) -> bool | None:
        m = re.search(rf"^\s*{key}:\s*(\S+)", info, re.M | re.I)
        return None if not m else m.group(1).upper() != "NO"

    return {"gstreamer": flag("GStreamer"), "v4l2": flag(r"v4l/v4l2")}


def _opencv() -> dict[str, Any]:
    import cv2

    flags = parse_cv2_build_info(cv2.getBuildInformation())
    return {"version": cv2.__version__, "module": getattr(cv2, "__file__", None), **flags}


def _picamera2() -> dict[str, Any]:
    import picamera2  # noqa: F401

    return {"module": getattr(picamera2, "__file__", None)}


def parse_arecord_l(text: str) -> list[dict[str, Any]]:
    """Capture devices from ``arecord -l``: [{"device": "plughw:1,0", "name": "..."}]."""
    out = []
    for m in re.finditer(r"^card (\d+): (\S+) \[(.*?)\], device (\d+): (.*?) \[(.*?)\]", text, re.M):
        out.append({"device": f"plughw:{m.group(1)},{m.group(4)}", "card": m.group(2),
                    "name": f"{m.group(3)}: {m.group(6)}"})
    return out


def _arecord() -> dict[str, Any]:
    path = shutil.which("arecord")
    if path is None:
        raise FileNotFoundError("arecord is not on PATH (apt install alsa-utils)")
    rc, out = _run(["arecord", "-l"])
    devs = parse_arecord_l(out)
    res: dict[str, Any] = {"path": path, "devices": devs}
    if not devs:
        res["note"] = out.strip().splitlines()[0][:160] if out.strip() else "no capture devices"
    return res


def _sounddevice() -> dict[str, Any]:
    try:
        import sounddevice as sd
    except OSError as e:  # the module exists but libportaudio does not
        raise OSError(f"{e} (apt install libportaudio2)") from e
    inputs = [d["name"] for d in sd.query_devices() if d.get("max_input_channels", 0) > 0]
    return {"version": getattr(sd, "__version__", None), "input_devices": inputs}


def doctor_report(power_model: Any = None) -> dict[str, Any]:
    """Everything ``edge-ee doctor`` shows, as a JSON-serialisable dict; every probe is wrapped."""
    return {
        "board": _probe(_board),
        "cpu": _probe(_cpu),
        "python": {"available": True, "version": python_version(), "executable": sys.executable},
        "kernel": {"available": True, "release": platform.release()},
        "power_mode": _probe(lambda: _need(power_mode(), "nvpmodel not present or unreadable", "mode")),
        "throttling": _probe(lambda: _need(throttling(), "vcgencmd get_throttled not available", "state")),
        "temperatures": _probe(lambda: _need(temperatures() or None, "no thermal zones", "celsius")),
        "power": _probe(lambda: _power(power_model)),
        "camera": {"v4l2": _probe(_v4l2), "opencv": _probe(_opencv), "picamera2": _probe(_picamera2)},
        "audio": {"arecord": _probe(_arecord), "sounddevice": _probe(_sounddevice)},
        "onnxruntime": _probe(onnxruntime_info),
    }


def _need(value: Any, reason: str, key: str) -> dict[str, Any]:
    if value is None:
        raise FileNotFoundError(reason)
    return {key: value}


def _na(d: dict[str, Any]) -> str:
    return f"not available: {d.get('reason', 'unknown')}"


def _fmt_w(v: float | None, quantity: str | None) -> str:
    if v is None:
        return ""
    return f"{v:.3f} W" if quantity == "power" else f"{v:.3f} J (counter)"


def format_doctor(r: dict[str, Any]) -> str:
    """Human-readable ``edge-ee doctor`` output."""
    lines: list[str] = ["edge-ee doctor"]

    def row(k: str, v: str) -> None:
        lines.append(f"  {k:<14}{v}")

    def sec(d: dict[str, Any], fmt: Callable[[dict[str, Any]], str]) -> str:
        if not d.get("available"):
            return _na(d)
        try:
            return fmt(d)
        except Exception as e:  # a malformed report never breaks the printout
            return f"? ({e})"

    row("board", sec(r.get("board", {}), lambda d: str(d["model"])))
    row("cpu", sec(r.get("cpu", {}), lambda d: f"{d['model'] or CPU_UNKNOWN} x{d['logical'] or '?'} "
                                                f"({d['machine'] or 'unknown arch'})"))
    row("python", sec(r.get("python", {}), lambda d: str(d["version"])))
    row("kernel", sec(r.get("kernel", {}), lambda d: str(d["release"])))
    row("power mode", sec(r.get("power_mode", {}), lambda d: str(d["mode"])))
    row("throttling", sec(r.get("throttling", {}), lambda d: f"{d['state']['raw']} now: "
                          f"{', '.join(d['state']['now']) or 'none'}; since boot: "
                          f"{', '.join(d['state']['since_boot']) or 'none'}"))
    row("temperatures", sec(r.get("temperatures", {}),
                            lambda d: ", ".join(f"{k} {v:.1f} C" for k, v in d["celsius"].items())))
    row("onnxruntime", sec(r.get("onnxruntime", {}), lambda d: f"{d['version']}, providers: "
                           f"{', '.join(d['providers'])}"))

    lines.append("power sensors")
    pw = r.get("power", {})
    if not pw.get("available"):
        lines.append(f"  {_na(pw)}")
    else:
        for s in pw.get("sensors", []):
            if s.get("readable"):
                est = " (ESTIMATED)" if s.get("estimated") else ""
                lines.append(f"  [ok] {s['kind']:<10} {s['name']}{est}")
                lines.append(f"       rail {s.get('rail')}, unit {s.get('unit')}, "
                             f"now {_fmt_w(s.get('value'), s.get('quantity'))}"
                             + (f", {s['path']}" if s.get("path") else ""))
                if s.get("reason"):
                    lines.append(f"       note: {s['reason']}")
            elif s.get("present", True):
                lines.append(f"  [!!] {s['kind']:<10} {s['name']}: not readable: {s.get('reason')}"
                             + (f" ({s['path']})" if s.get("path") else ""))
            else:
                lines.append(f"  [--] {s['kind']:<10} not available: {s.get('reason')}")
        sel = pw.get("selected")
        lines.append(f"  selected: {sel['kind']} {sel['name']}, rail {sel['rail']}"
                     + (" (ESTIMATED)" if sel.get("estimated") else "") if sel else "  selected: none")

    lines.append("camera")
    cam = r.get("camera", {})
    row("V4L2", sec(cam.get("v4l2", {}), lambda d: ", ".join(
        f"{x['path']} ({x['name'] or '?'})" for x in d["devices"])))

    def yn(v: bool | None) -> str:
        return "unknown" if v is None else ("yes" if v else "no")

    row("OpenCV", sec(cam.get("opencv", {}), lambda d: f"{d['version']}, GStreamer: {yn(d['gstreamer'])}, "
                      f"V4L2: {yn(d['v4l2'])}"))
    row("picamera2", sec(cam.get("picamera2", {}), lambda d: "importable"))
    lines.append("audio")
    au = r.get("audio", {})
    row("arecord", sec(au.get("arecord", {}), lambda d: ", ".join(
        f"{x['device']} ({x['name']})" for x in d["devices"]) or f"no capture devices ({d.get('note', '')})"))
    row("sounddevice", sec(au.get("sounddevice", {}), lambda d: f"{len(d['input_devices'])} input devices"))
    return "\n".join(lines)
