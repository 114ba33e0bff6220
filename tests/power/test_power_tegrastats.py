from __future__ import annotations

import pytest

from edge_ee.power import sysfs
from edge_ee.power.backends import tegrastats

JP4_LINE = ("RAM 2127/3964MB (lfb 97x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
            "CPU [12%@1479,3%@1479,off,off] EMC_FREQ 0% GR3D_FREQ 0% PLL@26C CPU@29.5C "
            "POM_5V_IN 1038/1134 POM_5V_GPU 0/0 POM_5V_CPU 166/170")
JP5_LINE = ("08-08-2024 10:00:00 RAM 2000/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,0%@729] "
            "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] VIC_FREQ 729 APE 200 CPU@47.5C tj@48C "
            "VDD_GPU_SOC 2390mW/2390mW VDD_CPU_CV 399mW/399mW VIN_SYS_5V0 2919mW/2919mW")


def test_parse_jp4_and_jp5_lines():
    assert tegrastats.parse_line(JP4_LINE) == pytest.approx({"POM_5V_IN": 1.038, "POM_5V_GPU": 0.0,
                                                             "POM_5V_CPU": 0.166})
    assert tegrastats.parse_line(JP5_LINE) == pytest.approx({"VDD_GPU_SOC": 2.39, "VDD_CPU_CV": 0.399,
                                                             "VIN_SYS_5V0": 2.919})
    assert tegrastats.total_power(tegrastats.parse_line(JP4_LINE)) == ("POM_5V_IN", pytest.approx(1.038))
    name, w = tegrastats.total_power(tegrastats.parse_line(JP5_LINE))
    assert name == "sum(VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0)" and w == pytest.approx(5.708)
    assert tegrastats.parse_line("RAM 2127/3964MB SWAP 0/1982MB") == {}


def test_fake_tegrastats_on_path(fake):
    fake.script("tegrastats", f'while true; do echo "{JP5_LINE}"; sleep 0.05; done\n')
    (c,) = tegrastats.find()
    src = c.open()
    try:
        assert src.kind == "tegrastats"
        assert src.read() == pytest.approx(5.708)
        assert src.rail.startswith("sum(")
    finally:
        src.close()
    assert src._proc.poll() is not None  # the subprocess is gone
    with pytest.raises(sysfs.SensorReadError, match="exited"):
        src.read()


def test_tegrastats_without_power_fields(fake):
    fake.script("tegrastats", 'echo "RAM 2127/3964MB CPU [1%@100]"; sleep 5\n')
    with pytest.raises(sysfs.SensorReadError, match="no power rails"):
        tegrastats.TegrastatsSource(interval_ms=50, first_line_timeout_s=1.0)


def test_no_tegrastats(fake):
    assert tegrastats.find() == []
