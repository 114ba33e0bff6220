from __future__ import annotations

import os

import pytest

from edge_ee.power import discover, list_sensors, sysfs
from edge_ee.power.backends import rapl

PKG = "/sys/class/powercap/intel-rapl:0"
RANGE_UJ = 262_143_328_850


def make_rapl(fake, energy_uj=100_000_000):
    fake.files(PKG, {"name": "package-0", "energy_uj": energy_uj, "max_energy_range_uj": RANGE_UJ})
    fake.files(f"{PKG}/intel-rapl:0:0", {"name": "core", "energy_uj": 5, "max_energy_range_uj": RANGE_UJ})


def test_rapl_reads_joules(fake):
    make_rapl(fake)
    (c,) = rapl.find()
    src = c.open()
    assert src.quantity == "energy" and src.rail == "package-0"
    assert src.read() == pytest.approx(100.0)


def test_rapl_wrap_around_is_unwrapped(fake):
    make_rapl(fake, RANGE_UJ - 1_000_000)  # 1 J below the wrap
    src = rapl.find()[0].open()
    e0 = src.read()
    fake.write(f"{PKG}/energy_uj", 2_000_000)  # wrapped: 1 J + 2 J later
    assert src.read() - e0 == pytest.approx(3.0)
    fake.write(f"{PKG}/energy_uj", 4_000_000)
    assert src.read() - e0 == pytest.approx(5.0)


def test_rapl_permission_denied_simulated(fake, deny_read, caplog):
    make_rapl(fake)
    deny_read("energy_uj")
    with pytest.raises(sysfs.SensorPermissionError, match="CVE-2020-8694"):
        rapl.find()[0].open()
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        src = discover()
    assert src.kind == "estimate"
    assert len([r for r in caplog.records if "CVE-2020-8694" in r.getMessage()]) == 1
    info = next(s for s in list_sensors() if s.kind == "rapl")
    assert info.present and not info.readable and "root-only" in (info.reason or "")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_rapl_permission_denied_chmod(fake):
    make_rapl(fake)
    fake.path(f"{PKG}/energy_uj").chmod(0)
    with pytest.raises(sysfs.SensorPermissionError, match="CVE-2020-8694"):
        rapl.find()[0].open()


def test_psys_not_added_to_packages(fake):
    make_rapl(fake)
    fake.files("/sys/class/powercap/intel-rapl:1", {"name": "psys", "energy_uj": 9_000_000,
                                                    "max_energy_range_uj": RANGE_UJ})
    cands = rapl.find()
    assert [c.auto for c in cands] == [True, False]
    assert discover().rail == "package-0"
