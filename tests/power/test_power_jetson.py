from __future__ import annotations

import pytest

from edge_ee.power import discover, sysfs
from edge_ee.power.backends import jetson

JP4 = "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
JP5 = "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"


def jp4_nano(fake):
    return fake.files(JP4, {
        "rail_name_0": "POM_5V_IN", "in_power0_input": 3234, "in_current0_input": 650, "in_voltage0_input": 4976,
        "rail_name_1": "POM_5V_GPU", "in_power1_input": 120,
        "rail_name_2": "POM_5V_CPU", "in_power2_input": 617,
    })


def jp5_orin_nano(fake, base=JP5):
    return fake.files(base, {
        "name": "ina3221", "update_interval": 50,
        "in1_label": "VDD_IN", "in1_input": 5000, "curr1_input": 900,  # 4.5 W
        "in2_label": "VDD_CPU_GPU_CV", "in2_input": 5000, "curr2_input": 100,  # 0.5 W
        "in3_label": "VDD_SOC", "in3_input": 5000, "curr3_input": 300,  # 1.5 W
        "in4_label": "NC", "in4_input": 0, "curr4_input": 0,
        "in7_label": "sum of shunt voltages", "in7_input": 999, "curr7_input": 999,
    })


def test_jp4_iio_total_rail_is_pom_5v_in(fake):
    jp4_nano(fake)
    (c,) = jetson.find()
    assert c.name == "INA3221 (JetPack 4 IIO)" and c.path == JP4
    src = c.open()
    assert src.rail == "POM_5V_IN"
    assert src.read() == pytest.approx(3.234)  # mW -> W
    assert src.read_rails() == pytest.approx({"POM_5V_IN": 3.234, "POM_5V_GPU": 0.12, "POM_5V_CPU": 0.617})
    fake.write(f"{JP4}/in_power0_input", 5000)
    assert src.read() == pytest.approx(5.0)


def test_jp4_specific_rail_and_unknown_rail(fake):
    jp4_nano(fake)
    assert jetson.find(rail="POM_5V_GPU")[0].open().read() == pytest.approx(0.12)
    with pytest.raises(sysfs.SensorNotFound, match="no Jetson rail 'GPU'.*POM_5V_IN"):
        jetson.find(rail="GPU")[0].open()


def test_jp5_hwmon_power_from_mv_ma_skips_nc_and_shunt_sum(fake):
    jp5_orin_nano(fake)
    (c,) = jetson.find()
    src = c.open()
    assert [r.name for r in src.all_rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert src.rail == "VDD_IN"
    assert src.read() == pytest.approx(4.5)  # 5000 mV * 900 mA / 1e6
    assert src.update_interval_s == pytest.approx(0.05)
    assert src.unit.startswith("mV x mA")


def test_jp5_without_total_rail_sums_rails_of_both_monitors(fake):
    # AGX Orin: two INA3221 (0x40, 0x41), no VDD_IN
    fake.files(JP5, {"name": "ina3221", "in1_label": "VDD_GPU_SOC", "in1_input": 5000, "curr1_input": 478,
                     "in2_label": "VDD_CPU_CV", "in2_input": 5000, "curr2_input": 80,
                     "in3_label": "VIN_SYS_5V0", "in3_input": 5000, "curr3_input": 584,
                     "in7_label": "sum of shunt voltages", "in7_input": 1, "curr7_input": 1})
    fake.files("/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon4",
               {"name": "ina3221", "in1_label": "NC", "in1_input": 0, "curr1_input": 0,
                "in2_label": "VDDQ_VDD2_1V8AO", "in2_input": 5000, "curr2_input": 20})
    src = jetson.find()[0].open()
    assert src.rail == "sum(VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO)"
    assert src.read() == pytest.approx(5 * (478 + 80 + 584 + 20) / 1000)


def test_jetson_first_in_discovery(fake):
    jp5_orin_nano(fake)
    fake.files("/sys/class/hwmon/hwmon0", {"name": "ina219", "power1_input": 1_000_000})
    src = discover()
    assert src.kind == "jetson" and src.rail == "VDD_IN" and not src.estimated


def test_unreadable_jetson_warns_once_and_falls_back(fake, deny_read, caplog):
    jp5_orin_nano(fake)
    deny_read("in1_input")
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        src = discover()
    assert src.kind == "estimate" and src.estimated
    warns = [r for r in caplog.records if "INA3221" in r.getMessage()]
    assert len(warns) == 1 and "permission denied" in warns[0].getMessage()
