from __future__ import annotations

import pytest

from edge_ee.power import discover, list_sensors
from edge_ee.power.backends import hwmon


def test_ina219_power_in_microwatts_matched_by_name(fake):
    fake.files("/sys/class/hwmon/hwmon0", {"name": "cpu_thermal", "temp1_input": 45000})
    fake.files("/sys/class/hwmon/hwmon5", {"name": "ina219", "power1_input": 2_500_000, "in1_input": 5000,
                                           "curr1_input": 500, "update_interval": 2})
    (c,) = hwmon.find()
    src = c.open()
    assert src.hwname == "ina219" and src.quantity == "power"
    assert src.read() == pytest.approx(2.5)
    assert src.path == "/sys/class/hwmon/hwmon5/power1_input"
    assert hwmon.find(name="ina219")[0].open().read() == pytest.approx(2.5)
    assert hwmon.find(name="ina226") == []


def test_ina226_without_power_file_uses_mv_times_ma(fake):
    fake.files("/sys/class/hwmon/hwmon1", {"name": "ina226", "in1_input": 5100, "curr1_input": 400})
    src = hwmon.find()[0].open()
    assert src.read() == pytest.approx(5.1 * 0.4)
    assert src.rail == "ina226 bus"


def test_generic_energy_counter_and_power_average(fake):
    fake.files("/sys/class/hwmon/hwmon2", {"name": "power_meter", "power1_average": 12_000_000})
    fake.files("/sys/class/hwmon/hwmon3", {"name": "zenergy", "energy1_input": 7_000_000, "energy1_label": "Esocket0"})
    cands = hwmon.find()
    assert [c.name for c in cands] == ["hwmon power_meter", "hwmon zenergy"]  # power before energy
    p, e = (c.open() for c in cands)
    assert p.read() == pytest.approx(12.0) and p.quantity == "power"
    assert e.read() == pytest.approx(7.0) and e.quantity == "energy" and e.rail == "zenergy Esocket0"


def test_gpu_only_sensor_not_picked_automatically(fake):
    fake.files("/sys/class/hwmon/hwmon0", {"name": "amdgpu", "power1_average": 30_000_000})
    assert discover().kind == "estimate"
    src = discover("hwmon:amdgpu")
    assert src.kind == "hwmon" and src.read() == pytest.approx(30.0)
    info = next(s for s in list_sensors() if s.kind == "hwmon")
    assert info.readable and not info.auto and "GPU-only" in (info.reason or "")


def test_ina3221_left_to_jetson_module(fake):
    fake.files("/sys/class/hwmon/hwmon0", {"name": "ina3221", "in1_label": "VDD_IN", "in1_input": 5000,
                                           "curr1_input": 100})
    assert hwmon.find() == []
    assert discover().kind == "jetson"  # found through /sys/class/hwmon by name
