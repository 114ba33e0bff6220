"""Power and energy measurement for edge-ee (no torch; stdlib, numpy and psutil only).

Typical use::

    from edge_ee.power import discover, PowerSampler

    sampler = PowerSampler(discover()).start()   # discover() never raises for a sensor problem
    sampler.measure_baseline(2.0)                # device idle meanwhile
    t0 = sampler.clock(); ...inference...; t1 = sampler.clock()
    w = sampler.window(t0, t1)                   # w.energy_j, w.marginal_j, w.estimated, w.rail
    sampler.stop()
"""

from .base import Candidate, PowerSource, SensorInfo
from .discovery import ORDER, PREFER_HELP, candidates, discover, list_sensors, parse_prefer
from .estimate import PRESETS, DevicePowerModel, EstimatedSource, parse_power_model, preset_for_board
from .sampler import EnergyWindow, PowerSampler
from .sysfs import ROOT_ENV, SensorError, SensorNotFound, SensorPermissionError, SensorReadError

__all__ = [
    "ORDER",
    "PREFER_HELP",
    "PRESETS",
    "ROOT_ENV",
    "Candidate",
    "DevicePowerModel",
    "EnergyWindow",
    "EstimatedSource",
    "PowerSampler",
    "PowerSource",
    "SensorError",
    "SensorInfo",
    "SensorNotFound",
    "SensorPermissionError",
    "SensorReadError",
    "candidates",
    "discover",
    "list_sensors",
    "parse_power_model",
    "parse_prefer",
    "preset_for_board",
]
