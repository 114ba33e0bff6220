"""Unreadable sensors give ONE warning listing each sensor and why, and what is used instead."""

from __future__ import annotations

import logging

import pytest

from edge_ee.power import discover

from .test_power_rapl import make_rapl


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "edge_ee.power"]


def _ina219(fake, n: int = 3) -> None:
    fake.files(f"/sys/class/hwmon/hwmon{n}", {"name": "ina219", "power1_input": 1_250_000})


def test_two_unreadable_sensors_one_warning_then_estimate(fake, deny_read, caplog):
    _ina219(fake)
    make_rapl(fake)
    deny_read("power1_input")
    deny_read("energy_uj")
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        src = discover()
    assert src.kind == "estimate" and src.estimated
    (msg,) = _warnings(caplog)
    assert msg.startswith("power sensors not readable: hwmon ina219 (permission denied")
    assert "udev rule" in msg  # what to do about hwmon
    assert "CVE-2020-8694" in msg  # rapl: root-only
    assert msg.index("hwmon ina219") < msg.index("RAPL")
    assert msg.endswith("using the CPU-utilisation estimate (labelled estimated)")


def test_unreadable_sensor_then_a_working_one(fake, deny_read, caplog):
    _ina219(fake)
    make_rapl(fake)
    deny_read("power1_input")
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        src = discover()
    assert src.kind == "rapl" and not src.estimated
    (msg,) = _warnings(caplog)
    assert "hwmon ina219 (permission denied" in msg and "RAPL" in msg.split("; using ")[-1]
    assert "estimate" not in msg


def test_missing_preferred_and_unreadable_sensor_in_one_warning(fake, deny_read, caplog):
    make_rapl(fake)
    deny_read("energy_uj")
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        src = discover("tegrastats")
    assert src.kind == "estimate"
    (msg,) = _warnings(caplog)
    assert "preferred source 'tegrastats' is not available (tegrastats is not on PATH)" in msg
    assert "power sensors not readable:" in msg and "CVE-2020-8694" in msg
    assert "CPU-utilisation estimate" in msg


def test_no_warning_when_sensors_are_simply_absent(fake, caplog):
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        assert discover().kind == "estimate"
    assert _warnings(caplog) == []


def test_no_warning_when_the_first_sensor_works(fake, deny_read, caplog):
    _ina219(fake)
    make_rapl(fake)
    deny_read("energy_uj")  # rapl is never tried: hwmon comes first
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        assert discover().kind == "hwmon"
    assert _warnings(caplog) == []


def test_a_failing_probe_is_listed_not_raised(fake, caplog, monkeypatch):
    from edge_ee.power.backends import hwmon

    def boom(name=None):
        raise RuntimeError("hwmon tree is garbage")

    monkeypatch.setattr(hwmon, "find", boom)
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        assert discover().kind == "estimate"
    (msg,) = _warnings(caplog)
    assert "hwmon (probe failed: hwmon tree is garbage)" in msg
