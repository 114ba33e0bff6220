from __future__ import annotations

import shutil

import pytest

from edge_ee.errors import UsageError
from edge_ee.power import ORDER, discover, list_sensors, parse_prefer

from .test_power_jetson import JP5, jp5_orin_nano
from .test_power_rapl import make_rapl
from .test_power_rpi import fake_vcgencmd


def everything(fake):
    jp5_orin_nano(fake)
    fake_vcgencmd(fake)
    fake.files("/sys/class/hwmon/hwmon7", {"name": "ina219", "power1_input": 1_250_000})
    make_rapl(fake)


def test_discovery_order(fake):
    everything(fake)
    assert discover().kind == "jetson"
    shutil.rmtree(fake.path("/sys/bus/i2c/drivers/ina3221"))
    assert discover().kind == "pi5"
    (fake.bin / "vcgencmd").unlink()
    assert discover().kind == "hwmon"
    shutil.rmtree(fake.path("/sys/class/hwmon"))
    assert discover().kind == "rapl"
    shutil.rmtree(fake.path("/sys/class/powercap"))
    src = discover()
    assert src.kind == "estimate" and src.estimated


def test_prefer(fake, caplog):
    everything(fake)
    assert discover("rapl").kind == "rapl"
    assert discover("hwmon:ina219").read() == pytest.approx(1.25)
    assert discover("jetson:VDD_SOC").rail == "VDD_SOC"
    assert discover("estimate:pi5").model.name == "pi5"
    assert discover("auto").kind == "jetson"
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        assert discover("tegrastats").kind == "jetson"  # not available: falls back in order
    assert any("preferred source 'tegrastats'" in r.getMessage() for r in caplog.records)
    with pytest.raises(UsageError, match="unknown power source"):
        discover("battery")
    with pytest.raises(UsageError, match="bad power model"):
        parse_prefer("estimate:pi9")


def test_list_sensors_reports_every_candidate(fake, deny_read):
    everything(fake)
    deny_read("energy_uj")
    infos = {i.kind: i for i in list_sensors()}
    assert set(infos) == set(ORDER)
    j = infos["jetson"]
    assert j.readable and j.rail == "VDD_IN" and j.value == pytest.approx(4.5) and j.path == JP5
    assert j.unit and j.quantity == "power"
    assert not infos["tegrastats"].present and "PATH" in (infos["tegrastats"].reason or "")
    assert infos["pi5"].readable and infos["hwmon"].readable
    r = infos["rapl"]
    assert r.present and not r.readable and "permission denied" in (r.reason or "")
    e = infos["estimate"]
    assert e.readable and e.estimated
    assert all(isinstance(i.to_dict(), dict) for i in infos.values())
