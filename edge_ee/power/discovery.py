"""Automatic choice of the power source, and the full sensor list for ``edge-ee doctor``."""

from __future__ import annotations

import logging

from ..errors import UsageError
from . import estimate, hwmon, jetson, rapl, rpi, sysfs, tegrastats
from .base import Candidate, PowerSource, SensorInfo
from .estimate import DevicePowerModel, EstimatedSource, parse_power_model

log = logging.getLogger("edge_ee.power")

ORDER = ("jetson", "tegrastats", "pi5", "hwmon", "rapl", "estimate")
ABSENT = {
    "jetson": "no INA3221 under /sys/bus/i2c/drivers/ina3221x (JetPack 4) or ina3221 (JetPack 5/6)",
    "tegrastats": "tegrastats is not on PATH",
    "pi5": "vcgencmd is not on PATH",
    "hwmon": "no hwmon device with power*_input/power*_average/energy*_input under /sys/class/hwmon",
    "rapl": "no /sys/class/powercap/intel-rapl:N/energy_uj",
}
PREFER_HELP = ("auto, jetson[:RAIL], tegrastats[:RAIL], pi5, hwmon[:NAME], rapl, "
               "estimate[:PRESET|idle=W,core=W]")


def parse_prefer(prefer: str | None) -> tuple[str | None, str | None]:
    """``"hwmon:ina219"`` -> ("hwmon", "ina219"); ``None``/``"auto"`` -> (None, None)."""
    if prefer is None or prefer.strip().lower() in ("", "auto"):
        return None, None
    kind, _, detail = prefer.strip().partition(":")
    kind = kind.lower()
    if kind not in ORDER:
        raise UsageError(f"unknown power source {prefer!r}", hint=f"use one of: {PREFER_HELP}")
    if kind == "estimate" and detail:
        try:
            parse_power_model(detail)
        except ValueError as e:
            raise UsageError(f"bad power model in {prefer!r}: {e}") from None
    return kind, (detail or None)


def candidates(kind: str, detail: str | None = None,
               model: DevicePowerModel | None = None) -> list[Candidate]:
    """Sensors of one kind present on this machine (under the sysfs root / on PATH)."""
    if kind == "jetson":
        return jetson.find(rail=detail)
    if kind == "tegrastats":
        return tegrastats.find(rail=detail)
    if kind == "pi5":
        return rpi.find()
    if kind == "hwmon":
        return hwmon.find(name=detail)
    if kind == "rapl":
        return rapl.find()
    if kind == "estimate":
        return estimate.find(parse_power_model(detail) if detail else model)
    raise ValueError(f"unknown power source kind {kind!r}")


def _open(c: Candidate) -> PowerSource:
    src = c.open()
    try:
        src.read()
    except BaseException:
        src.close()
        raise
    return src


PERMISSION_HINT = "run as root, or grant read access with a udev rule (see `edge-ee doctor`)"
ESTIMATE_NOTE = "using the CPU-utilisation estimate (labelled estimated)"


def _why(e: BaseException) -> str:
    """Why a sensor cannot be used, with what to do about a permission problem."""
    msg = str(e) or type(e).__name__
    if isinstance(e, (PermissionError, sysfs.SensorPermissionError)) and "root" not in msg:
        msg = f"{msg}: {PERMISSION_HINT}"
    return msg


def discover(prefer: str | None = None, *, model: DevicePowerModel | None = None) -> PowerSource:
    """The first working power source, trying ``prefer`` first, then jetson, tegrastats, pi5, hwmon,
    rapl and finally the CPU-utilisation estimate (which always works).

    Sensors that exist but cannot be read (permission denied, I/O error), a probe that fails and a
    ``prefer``-red source that is not available are gathered into ONE warning on the ``edge_ee.power``
    logger, naming each sensor and why, and the source used instead; discovery never raises for a
    sensor problem. Sensors that simply do not exist are only logged at debug level. An unknown
    ``prefer`` kind raises :class:`~edge_ee.errors.UsageError`. ``model`` is the power model of the
    estimate (default: a preset chosen from the board model).
    """
    kind, detail = parse_prefer(prefer)
    kinds = list(ORDER) if kind is None else [kind] + [k for k in ORDER if k != kind]
    problems: list[str] = []  # "sensor (why)", in the order tried
    missing_preferred: str | None = None
    chosen: PowerSource | None = None
    for k in kinds:
        preferred = k == kind
        try:
            cands = candidates(k, detail if preferred else None, model)
        except Exception as e:  # a probe must never crash discovery
            problems.append(f"{k} (probe failed: {_why(e)})")
            cands = []
        reason = ABSENT.get(k, "not available")
        for c in cands:
            if not c.auto and not preferred:
                continue
            try:
                chosen = _open(c)
                break
            except sysfs.SensorNotFound as e:
                reason = str(e)
                log.debug("power: %s not usable: %s", c.name, e)
            except Exception as e:
                reason = _why(e)
                problems.append(f"{c.name} ({reason})")
        if chosen is not None:
            break
        if preferred:
            missing_preferred = reason
    if chosen is None:  # pragma: no cover - the estimate always opens
        chosen = EstimatedSource(model)
    if problems or missing_preferred is not None:
        parts = []
        if missing_preferred is not None:
            parts.append(f"preferred source {prefer!r} is not available ({missing_preferred})")
        if problems:
            parts.append("power sensors not readable: " + "; ".join(problems))
        using = ESTIMATE_NOTE if chosen.estimated else f"using {chosen.name}, rail {chosen.rail}"
        log.warning("%s; %s", "; ".join(parts), using)
    return chosen


def list_sensors(model: DevicePowerModel | None = None, *, include_absent: bool = True) -> list[SensorInfo]:
    """Every candidate sensor with one reading, or why it cannot be read (for ``edge-ee doctor``).

    Kinds with nothing present appear once with ``present=False`` when ``include_absent``.
    """
    out: list[SensorInfo] = []
    for k in ORDER:
        try:
            cands = candidates(k, None, model)
        except Exception as e:
            out.append(SensorInfo(kind=k, name=k, present=False, reason=f"probe failed: {e}"))
            continue
        if not cands and include_absent:
            out.append(SensorInfo(kind=k, name=k, present=False, reason=ABSENT.get(k, "not present")))
        for c in cands:
            info = SensorInfo(kind=k, name=c.name, path=c.path, reason=c.note, auto=c.auto)
            try:
                src = _open(c)
            except Exception as e:
                info.reason = str(e) or type(e).__name__
                info.present = not isinstance(e, sysfs.SensorNotFound)
                out.append(info)
                continue
            try:
                info.name, info.rail, info.unit = src.name, src.rail, src.unit
                info.quantity, info.estimated, info.path = src.quantity, src.estimated, src.path or c.path
                info.readable = True
                try:
                    info.value = round(src.read(), 6)
                except Exception as e:  # readable a moment ago: report, do not crash
                    info.readable, info.reason = False, str(e)
            finally:
                src.close()
            out.append(info)
    return out
