"""Automatic choice of the power source, and the full sensor list for ``edge-ee doctor``."""

from __future__ import annotations

import logging
from typing import NamedTuple

from ..errors import UsageError
from . import registry, sysfs
from .backends.estimate import EstimatedSource
from .base import Candidate, PowerSource, SensorInfo
from .board import DevicePowerModel

log = logging.getLogger("edge_ee.power")

def auto_order() -> tuple[str, ...]:
    """The kinds in the order discovery tries them (the registry's order, read at each call)."""
    return tuple(b.kind for b in registry.all_backends())


ORDER = auto_order()  # the back ends shipped in edge_ee/power/backends/
OFF = "none"  # --power-source none: no power measurement


def power_source_help(*, allow_off: bool = True) -> str:
    """The accepted ``--power-source`` values, generated from the registry (for every help text)."""
    text = "auto, " + ", ".join(b.syntax for b in registry.all_backends())
    return text + (f", or {OFF} (no energy measurement)" if allow_off else "")


PREFER_HELP = power_source_help(allow_off=False)


class PowerPreference(NamedTuple):
    """A parsed ``--power-source``: ``kind`` ``None`` = auto, ``"none"`` = off, else a registered kind."""

    kind: str | None
    detail: str | None

    @property
    def off(self) -> bool:
        return self.kind == OFF

    @property
    def auto(self) -> bool:
        return self.kind is None

    @property
    def spec(self) -> str | None:
        """What :func:`discover` takes: ``None`` for auto (and off), else ``kind[:detail]``."""
        if self.kind is None or self.off:
            return None
        return self.kind if self.detail is None else f"{self.kind}:{self.detail}"


def parse_prefer(prefer: str | None) -> PowerPreference:
    """The one reading of a power-source string (``--power-source``, the config file, ``profile``):
    ``"hwmon:ina219"`` -> ("hwmon", "ina219"); ``None``/``""``/``"auto"`` -> (None, None);
    ``"none"`` -> ("none", None). An unknown kind or a bad detail raises :class:`UsageError`."""
    if prefer is None or prefer.strip().lower() in ("", "auto"):
        return PowerPreference(None, None)
    kind, _, detail = prefer.strip().partition(":")
    kind = kind.lower()
    if kind == OFF and not detail:
        return PowerPreference(OFF, None)
    backend = registry.get(kind)
    if backend is None:
        raise UsageError(f"unknown power source {prefer!r}", hint=f"use one of: {power_source_help()}")
    if detail:
        try:
            backend.check_detail(detail)
        except ValueError as e:
            raise UsageError(f"bad power model in {prefer!r}: {e}") from None
    return PowerPreference(kind, detail or None)


def candidates(kind: str, detail: str | None = None,
               model: DevicePowerModel | None = None) -> list[Candidate]:
    """Sensors of one kind present on this machine (under the sysfs root / on PATH)."""
    backend = registry.get(kind)
    if backend is None:
        raise ValueError(f"unknown power source kind {kind!r}")
    return backend.candidates(detail, model)


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


def _absent(kind: str) -> str:
    backend = registry.get(kind)
    return backend.absent if backend is not None else "not available"


def _why(e: BaseException) -> str:
    """Why a sensor cannot be used, with what to do about a permission problem."""
    msg = str(e) or type(e).__name__
    if isinstance(e, (PermissionError, sysfs.SensorPermissionError)) and "root" not in msg:
        msg = f"{msg}: {PERMISSION_HINT}"
    return msg


def _first_of_kind(kind: str, detail: str | None, model: DevicePowerModel | None, preferred: bool,
                   problems: list[str]) -> tuple[PowerSource | None, str]:
    """The first sensor of ``kind`` that opens and reads, or None and why not; unreadable sensors and failed
    probes are added to ``problems``. Sensors with ``auto=False`` are tried only when ``preferred``."""
    try:
        cands = candidates(kind, detail, model)
    except Exception as e:  # a probe must never crash discovery
        problems.append(f"{kind} (probe failed: {_why(e)})")
        cands = []
    reason = _absent(kind)
    for c in cands:
        if not c.auto and not preferred:
            continue
        try:
            return _open(c), reason
        except sysfs.SensorNotFound as e:
            reason = str(e)
            log.debug("power: %s not usable: %s", c.name, e)
        except Exception as e:
            reason = _why(e)
            problems.append(f"{c.name} ({reason})")
    return None, reason


def discover(prefer: str | None = None, *, model: DevicePowerModel | None = None) -> PowerSource:
    """The first working power source, trying ``prefer`` first, then the registered back ends in
    the registry's order (:func:`auto_order`), the CPU-utilisation estimate (which always works) last.

    Sensors that exist but cannot be read (permission denied, I/O error), a probe that fails and a
    ``prefer``-red source that is not available are gathered into ONE warning on the ``edge_ee.power``
    logger, naming each sensor and why, and the source used instead; discovery never raises for a
    sensor problem. Sensors that simply do not exist are only logged at debug level. An unknown
    ``prefer`` kind raises :class:`~edge_ee.errors.UsageError`. ``model`` is the power model of the
    estimate (default: a preset chosen from the board model).
    """
    kind, detail = parse_prefer(prefer)
    if kind == OFF:
        raise UsageError(f"power source {prefer!r} switches power measurement off, and this needs one",
                         hint=f"use one of: {power_source_help(allow_off=False)}")
    order = auto_order()
    kinds = list(order) if kind is None else [kind] + [k for k in order if k != kind]
    problems: list[str] = []  # "sensor (why)", in the order tried
    missing_preferred: str | None = None
    chosen: PowerSource | None = None
    for k in kinds:
        preferred = k == kind
        chosen, reason = _first_of_kind(k, detail if preferred else None, model, preferred, problems)
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
    for k in auto_order():
        try:
            cands = candidates(k, None, model)
        except Exception as e:
            out.append(SensorInfo(kind=k, name=k, present=False, reason=f"probe failed: {e}"))
            continue
        if not cands and include_absent:
            out.append(SensorInfo(kind=k, name=k, present=False, reason=_absent(k)))
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
