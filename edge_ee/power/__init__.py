"""Power and energy measurement for edge-ee (no torch; stdlib, numpy and psutil only).

Typical use::

    from edge_ee.power import discover, PowerSampler

    sampler = PowerSampler(discover()).start()   # discover() never raises for a sensor problem
    sampler.measure_baseline(2.0)                # device idle meanwhile
    t0 = sampler.clock(); ...inference...; t1 = sampler.clock()
    w = sampler.window(t0, t1)                   # w.energy_j, w.marginal_j, w.estimated, w.rail
    sampler.stop()
"""

from typing import TYPE_CHECKING, Any

from .backends.estimate import PRESETS, EstimatedSource, parse_power_model, preset_for_board
from .base import Candidate, PowerSource, SensorInfo
from .board import DevicePowerModel
from .discovery import (
    ORDER,
    PREFER_HELP,
    PowerPreference,
    candidates,
    discover,
    list_sensors,
    parse_prefer,
    power_source_help,
)
from .registry import Backend, all_backends, register_backend
from .sysfs import ROOT_ENV, SensorError, SensorNotFound, SensorPermissionError, SensorReadError

if TYPE_CHECKING:
    from .sampler import EnergyWindow, PowerSampler


def __getattr__(name: str) -> Any:
    """The sampler (numpy) is imported on first use: the CLI imports this package for its help texts."""
    if name in ("EnergyWindow", "PowerSampler"):
        from . import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ORDER",
    "PREFER_HELP",
    "PRESETS",
    "ROOT_ENV",
    "Backend",
    "Candidate",
    "DevicePowerModel",
    "EnergyWindow",
    "EstimatedSource",
    "PowerPreference",
    "PowerSampler",
    "PowerSource",
    "SensorError",
    "SensorInfo",
    "SensorNotFound",
    "SensorPermissionError",
    "SensorReadError",
    "all_backends",
    "candidates",
    "discover",
    "list_sensors",
    "parse_power_model",
    "parse_prefer",
    "power_source_help",
    "preset_for_board",
    "register_backend",
]
