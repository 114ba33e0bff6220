"""The ``edge-ee doctor`` report: every probe of the device (board, CPU, power sensors, cameras, audio,
onnxruntime) as a JSON-serialisable dict, and its human-readable form. Every probe is wrapped: a failure
shows as ``{"available": False, "reason": ...}`` ("not available: reason"), never an exception."""

from __future__ import annotations

import platform
import re
import shutil
import sys
from collections.abc import Callable
from typing import Any

from ..power import sysfs
from . import facts


def _board() -> dict[str, Any]:
    b = facts.board_model()
    if not b:
        raise FileNotFoundError("no /proc/device-tree/model or DMI product name")
    return {"model": b}


def _cpu() -> dict[str, Any]:
    return {"model": facts.cpu_model(), **facts.core_counts(), "machine": platform.machine()}


def _power(model: Any = None) -> dict[str, Any]:
    from ..power import list_sensors

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
    rc, out = facts.run_command(["arecord", "-l"])
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
        "board": facts.probe(_board),
        "cpu": facts.probe(_cpu),
        "python": {"available": True, "version": facts.python_version(), "executable": sys.executable},
        "kernel": {"available": True, "release": platform.release()},
        "power_mode": facts.probe(lambda: _need(facts.power_mode(), "nvpmodel not present or unreadable", "mode")),
        "throttling": facts.probe(lambda: _need(facts.throttling(), "vcgencmd get_throttled not available", "state")),
        "temperatures": facts.probe(lambda: _need(facts.temperatures() or None, "no thermal zones", "celsius")),
        "power": facts.probe(lambda: _power(power_model)),
        "camera": {"v4l2": facts.probe(_v4l2), "opencv": facts.probe(_opencv), "picamera2": facts.probe(_picamera2)},
        "audio": {"arecord": facts.probe(_arecord), "sounddevice": facts.probe(_sounddevice)},
        "onnxruntime": facts.probe(facts.onnxruntime_info),
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


def _yn(v: bool | None) -> str:
    return "unknown" if v is None else ("yes" if v else "no")


class _Lines:
    """The printout being built: ``row(key, probe result, format)`` shows a probe or why it is not available."""

    def __init__(self) -> None:
        self.lines: list[str] = ["edge-ee doctor"]

    def add(self, line: str) -> None:
        self.lines.append(line)

    def row(self, k: str, d: dict[str, Any], fmt: Callable[[dict[str, Any]], str]) -> None:
        if not d.get("available"):
            v = _na(d)
        else:
            try:
                v = fmt(d)
            except Exception as e:  # a malformed report never breaks the printout
                v = f"? ({e})"
        self.lines.append(f"  {k:<14}{v}")


def _facts_rows(out: _Lines, r: dict[str, Any]) -> None:
    out.row("board", r.get("board", {}), lambda d: str(d["model"]))
    out.row("cpu", r.get("cpu", {}), lambda d: f"{d['model'] or facts.CPU_UNKNOWN} x{d['logical'] or '?'} "
                                                f"({d['machine'] or 'unknown arch'})")
    out.row("python", r.get("python", {}), lambda d: str(d["version"]))
    out.row("kernel", r.get("kernel", {}), lambda d: str(d["release"]))
    out.row("power mode", r.get("power_mode", {}), lambda d: str(d["mode"]))
    out.row("throttling", r.get("throttling", {}), lambda d: f"{d['state']['raw']} now: "
            f"{', '.join(d['state']['now']) or 'none'}; since boot: {', '.join(d['state']['since_boot']) or 'none'}")
    out.row("temperatures", r.get("temperatures", {}),
            lambda d: ", ".join(f"{k} {v:.1f} C" for k, v in d["celsius"].items()))
    out.row("onnxruntime", r.get("onnxruntime", {}), lambda d: f"{d['version']}, providers: "
            f"{', '.join(d['providers'])}")


def _sensor_lines(s: dict[str, Any]) -> list[str]:
    """One power sensor: readable ([ok] with its reading), present but not readable ([!!]) or absent ([--])."""
    if s.get("readable"):
        est = " (ESTIMATED)" if s.get("estimated") else ""
        out = [f"  [ok] {s['kind']:<10} {s['name']}{est}",
               f"       rail {s.get('rail')}, unit {s.get('unit')}, now {_fmt_w(s.get('value'), s.get('quantity'))}"
               + (f", {s['path']}" if s.get("path") else "")]
        return out + ([f"       note: {s['reason']}"] if s.get("reason") else [])
    if s.get("present", True):
        return [f"  [!!] {s['kind']:<10} {s['name']}: not readable: {s.get('reason')}"
                + (f" ({s['path']})" if s.get("path") else "")]
    return [f"  [--] {s['kind']:<10} not available: {s.get('reason')}"]


def _power_lines(out: _Lines, pw: dict[str, Any]) -> None:
    out.add("power sensors")
    if not pw.get("available"):
        out.add(f"  {_na(pw)}")
        return
    for s in pw.get("sensors", []):
        for line in _sensor_lines(s):
            out.add(line)
    sel = pw.get("selected")
    out.add(f"  selected: {sel['kind']} {sel['name']}, rail {sel['rail']}"
            + (" (ESTIMATED)" if sel.get("estimated") else "") if sel else "  selected: none")


def format_doctor(r: dict[str, Any]) -> str:
    """Human-readable ``edge-ee doctor`` output."""
    out = _Lines()
    _facts_rows(out, r)
    _power_lines(out, r.get("power", {}))
    out.add("camera")
    cam = r.get("camera", {})
    out.row("V4L2", cam.get("v4l2", {}), lambda d: ", ".join(f"{x['path']} ({x['name'] or '?'})"
                                                             for x in d["devices"]))
    out.row("OpenCV", cam.get("opencv", {}), lambda d: f"{d['version']}, GStreamer: {_yn(d['gstreamer'])}, "
            f"V4L2: {_yn(d['v4l2'])}")
    out.row("picamera2", cam.get("picamera2", {}), lambda d: "importable")
    out.add("audio")
    au = r.get("audio", {})
    out.row("arecord", au.get("arecord", {}), lambda d: ", ".join(
        f"{x['device']} ({x['name']})" for x in d["devices"]) or f"no capture devices ({d.get('note', '')})")
    out.row("sounddevice", au.get("sounddevice", {}), lambda d: f"{len(d['input_devices'])} input devices")
    return "\n".join(out.lines)
