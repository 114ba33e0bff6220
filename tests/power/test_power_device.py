from __future__ import annotations

import json

import pytest

from edge_ee import device
from edge_ee.device import facts

PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd0b

Revision\t: d04170
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
CV2_INFO = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
    GStreamer:                   YES (1.16.3)
    v4l/v4l2:                    YES (linux/videodev2.h)
"""
ARECORD_L = """**** List of CAPTURE Hardware Devices ****
card 1: Device [USB PnP Sound Device], device 0: USB Audio [USB Audio]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
"""


def test_board_cpu_and_temperatures_from_fake_tree(fake):
    fake.write("/proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0")
    fake.write("/proc/cpuinfo", PI5_CPUINFO)
    fake.files("/sys/class/thermal/thermal_zone0", {"type": "cpu-thermal", "temp": 47600})
    fake.files("/sys/class/thermal/thermal_zone1", {"type": "cpu-thermal", "temp": 40000})
    assert device.board_model() == "Raspberry Pi 5 Model B Rev 1.0"
    assert device.cpu_model() == "Cortex-A76"
    assert device.temperatures() == {"cpu-thermal": 47.6, "cpu-thermal-1": 40.0}


def test_x86_cpu_and_dmi_board(fake):
    fake.write("/proc/cpuinfo", "processor : 0\nmodel name : Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz\n")
    fake.write("/sys/class/dmi/id/sys_vendor", "LENOVO")
    fake.write("/sys/class/dmi/id/product_name", "20KN")
    assert device.cpu_model() == "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz"
    assert device.board_model() == "LENOVO 20KN"


def test_nvpmodel_and_get_throttled(fake):
    assert device.power_mode() is None and device.throttling() is None
    fake.script("nvpmodel", 'echo "NV Power Mode: 15W"; echo 2\n')
    fake.script("vcgencmd", 'echo "throttled=0x50005"\n')
    assert device.power_mode() == "15W (2)"
    th = device.throttling()
    assert th == {"raw": "0x50005", "now": ["under-voltage", "throttled"],
                  "since_boot": ["under-voltage occurred", "throttling occurred"]}


def test_parsers():
    assert device.parse_cv2_build_info(CV2_INFO) == {"gstreamer": True, "v4l2": True}
    assert device.parse_cv2_build_info("GStreamer: NO\n") == {"gstreamer": False, "v4l2": None}
    assert device.parse_arecord_l(ARECORD_L) == [
        {"device": "plughw:1,0", "card": "Device", "name": "USB PnP Sound Device: USB Audio"}]


def test_doctor_report_is_robust_and_json(fake, monkeypatch):
    fake.write("/proc/device-tree/model", "NVIDIA Jetson Orin Nano Developer Kit")
    fake.write("/dev/video0", "")
    fake.write("/sys/class/video4linux/video0/name", "USB Camera")
    fake.script("arecord", f"cat <<'X'\n{ARECORD_L}X\n")
    fake.files("/sys/class/hwmon/hwmon0", {"name": "ina219", "power1_input": 2_000_000})

    def boom() -> str:
        raise RuntimeError("cpuinfo exploded")

    monkeypatch.setattr(facts, "cpu_model", boom)  # the doctor reads the facts module
    r = device.doctor_report()
    json.dumps(r)
    assert r["board"] == {"available": True, "model": "NVIDIA Jetson Orin Nano Developer Kit"}
    assert r["cpu"] == {"available": False, "reason": "cpuinfo exploded"}
    assert r["camera"]["v4l2"]["devices"] == [{"path": "/dev/video0", "name": "USB Camera"}]
    assert r["audio"]["arecord"]["devices"][0]["device"] == "plughw:1,0"
    assert r["power"]["selected"]["kind"] == "hwmon"
    assert r["power_mode"]["available"] is False
    text = device.format_doctor(r)
    assert "not available: cpuinfo exploded" in text
    assert "/dev/video0 (USB Camera)" in text and "[ok] hwmon" in text and "rail ina219 power1" in text
    assert "selected: hwmon" in text


def test_format_doctor_survives_a_malformed_report():
    text = device.format_doctor({"board": {"available": True}, "power": {"available": True, "sensors": []}})
    assert text.startswith("edge-ee doctor") and "selected: none" in text


def test_device_identity_keys(fake):
    fake.write("/proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4")
    ident = device.device_identity()
    assert ident["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert set(ident) >= {"board", "cpu", "cores", "power_mode", "python", "onnxruntime", "providers"}
    facts = device.device_facts()
    assert "temperatures_c" in facts and "throttling" in facts
    pytest.importorskip("onnxruntime")
    assert "CPUExecutionProvider" in ident["providers"]
