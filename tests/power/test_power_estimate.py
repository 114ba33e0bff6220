from __future__ import annotations

from collections import namedtuple

import pytest

from edge_ee.power import PRESETS, EstimatedSource, discover, parse_power_model, preset_for_board

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


class FakeTimes:
    def __init__(self) -> None:
        self.busy = 0.0
        self.idle = 0.0

    def advance(self, wall: float, busy_cores: float, ncpu: int = 4) -> None:
        self.busy += wall * busy_cores
        self.idle += wall * (ncpu - busy_cores)

    def __call__(self) -> Times:
        return Times(self.busy, 0, 0, self.idle, 0, 0, 0, 0, 0, 0)


def test_estimate_from_system_cpu_utilisation():
    ft = FakeTimes()
    src = EstimatedSource(parse_power_model("pi5,scope=system"), cpu_times=ft, ncpu=4)
    assert src.estimated and src.kind == "estimate" and "estimated" in src.rail
    assert src.quantity == "energy" and src.read() == pytest.approx(0.0)
    ft.advance(1.0, busy_cores=2.0)
    assert src.power() == pytest.approx(2.7 + 2 * 1.1)
    assert src.read() == pytest.approx(2.7 + 2 * 1.1)  # joules after 1 s
    ft.advance(1.0, busy_cores=0.0)
    assert src.power() == pytest.approx(2.7)
    assert src.power() == pytest.approx(2.7)  # no time passed: last value
    assert src.read() == pytest.approx(2 * 2.7 + 2 * 1.1)


def test_estimate_from_this_process_only():
    """Default scope: only this process's CPU time counts, so other load on the machine does not leak in."""
    clock = {"cpu": 0.0, "wall": 0.0}
    system = FakeTimes()
    src = EstimatedSource(PRESETS["pi5"], cpu_times=system, ncpu=4,
                          process_times=lambda: (clock["cpu"], clock["wall"]))
    assert PRESETS["pi5"].scope == "process" and "this process" in src.name
    system.advance(1.0, busy_cores=3.0)  # another process keeps 3 cores busy
    clock["wall"] += 1.0
    clock["cpu"] += 0.5  # we used half a core
    assert src.power() == pytest.approx(2.7 + 0.5 * 1.1)
    clock["wall"] += 1.0
    clock["cpu"] += 2.0  # two threads busy
    assert src.power() == pytest.approx(2.7 + 2 * 1.1)
    assert src.power() == pytest.approx(2.7 + 2 * 1.1)  # no time passed: last value
    assert src.read() == pytest.approx(2 * 2.7 + 2.5 * 1.1)  # cumulative joules
    assert src.describe()["model"]["scope"] == "process"


def test_power_model_parsing():
    assert parse_power_model("pi4") is PRESETS["pi4"]
    m = parse_power_model("idle=3.1,core=0.5W")
    assert (m.idle_w, m.core_active_w) == (3.1, 0.5)
    m = parse_power_model("orin-nano,idle=5")
    assert (m.idle_w, m.core_active_w) == (5.0, PRESETS["orin-nano"].core_active_w)
    with pytest.raises(ValueError, match="unknown power model"):
        parse_power_model("pi9")
    with pytest.raises(ValueError, match="idle=W"):
        parse_power_model("idle=3,cores=2")
    assert parse_power_model("pi4,scope=system").scope == "system"
    assert parse_power_model("idle=2,core=1").scope == "process"
    with pytest.raises(ValueError, match="scope=process"):
        parse_power_model("pi4,scope=board")


def test_presets_by_board():
    assert preset_for_board("Raspberry Pi 5 Model B Rev 1.0").name == "pi5"
    assert preset_for_board("Raspberry Pi 4 Model B Rev 1.4").name == "pi4"
    assert preset_for_board("NVIDIA Jetson Nano Developer Kit").name == "jetson-nano"
    assert preset_for_board("NVIDIA Jetson Orin Nano Developer Kit").name == "orin-nano"
    assert preset_for_board(None).name == "generic-x86"


def test_estimate_picks_preset_from_fake_device_tree(fake):
    fake.write("/proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4")
    src = discover()
    assert src.kind == "estimate" and src.model.name == "pi4"
    assert discover("estimate:idle=1,core=1").model.idle_w == 1.0
