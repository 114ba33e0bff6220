from __future__ import annotations

import pytest

from edge_ee.power import discover, list_sensors, sysfs
from edge_ee.power.backends import rpi

PMIC = """\
 3V7_WL_SW_A current(0)=0.00000000A
   3V3_SYS_A current(1)=0.05000000A
     VDD_CORE_A current(7)=0.75012000A
   3V7_WL_SW_V volt(8)=3.74487400V
     3V3_SYS_V volt(9)=3.30000000V
    VDD_CORE_V volt(15)=0.86173300V
      EXT5V_V volt(24)=5.12658000V
       BATT_V volt(25)=0.00000000V
"""
EXPECTED_W = 0.05 * 3.3 + 0.75012 * 0.861733


def fake_vcgencmd(fake, pmic=PMIC, rc=0):
    out = fake.bin / "pmic.txt"
    out.write_text(pmic)
    count = fake.bin / "count"
    fake.script("vcgencmd", f"""echo x >> {count}
case "$1" in
  pmic_read_adc) cat {out}; exit {rc};;
  get_throttled) echo "throttled=0x50005";;
  *) echo 'error=1 error_msg="Command not registered"'; exit 1;;
esac
""")
    return count


def test_parse_pairs_current_and_voltage_by_rail_name():
    rails = rpi.parse_pmic(PMIC)
    assert set(rails) == {"3V7_WL_SW", "3V3_SYS", "VDD_CORE"}  # EXT5V/BATT have no current line
    assert sum(rails.values()) == pytest.approx(EXPECTED_W)


def test_fake_vcgencmd_source_and_rate_limit(fake, clock):
    count = fake_vcgencmd(fake)
    src = rpi.Pi5PmicSource(clock=clock)
    assert src.update_interval_s == pytest.approx(0.1)
    assert src.read() == pytest.approx(EXPECTED_W)
    assert "sum of 3 rails" in src.rail
    for _ in range(5):  # within 100 ms: cached, no process spawned
        clock.advance(0.01)
        src.read()
    assert len(count.read_text().split()) == 1
    clock.advance(0.1)
    src.read()
    assert len(count.read_text().split()) == 2


def test_older_pi_command_not_registered_is_not_found(fake, caplog):
    fake_vcgencmd(fake, pmic='error=1 error_msg="Command not registered"\n', rc=1)
    with pytest.raises(sysfs.SensorNotFound, match="not a Raspberry Pi 5"):
        rpi.Pi5PmicSource()
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        src = discover()
    assert src.kind == "estimate"
    assert not [r for r in caplog.records if "PMIC" in r.getMessage()]  # absent feature: no warning
    info = next(s for s in list_sensors() if s.kind == "pi5")
    assert not info.readable and not info.present and "Raspberry Pi 5" in (info.reason or "")


def test_permission_error_explains_video_group(fake, caplog):
    fake_vcgencmd(fake, pmic="VCHI initialization failed\n", rc=255)
    with pytest.raises(sysfs.SensorPermissionError, match="video"):
        rpi.Pi5PmicSource()
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        assert discover().kind == "estimate"
    assert len([r for r in caplog.records if "video" in r.getMessage()]) == 1
    info = next(s for s in list_sensors() if s.kind == "pi5")
    assert info.present and not info.readable and "usermod -aG video" in (info.reason or "")


def test_pi5_discovered(fake):
    fake_vcgencmd(fake)
    src = discover()
    assert src.kind == "pi5" and src.read() == pytest.approx(EXPECTED_W)
