from __future__ import annotations

import pytest

from edge_ee.power import sysfs


def test_paths_resolve_under_root(fake, monkeypatch):
    fake.write("/sys/class/foo/bar", 42)
    assert sysfs.resolve("/sys/class/foo/bar") == fake.path("/sys/class/foo/bar")
    assert sysfs.read_int(sysfs.resolve("/sys/class/foo/bar")) == 42
    assert sysfs.display(fake.path("/sys/class/foo/bar")) == "/sys/class/foo/bar"
    assert [p.name for p in sysfs.rglob("/sys/class/foo/*")] == ["bar"]
    monkeypatch.delenv(sysfs.ROOT_ENV)
    assert str(sysfs.root()) == "/"


def test_clear_errors(fake, deny_read):
    with pytest.raises(sysfs.SensorNotFound, match="/sys/nothing does not exist"):
        sysfs.read_int(sysfs.resolve("/sys/nothing"))
    fake.write("/sys/garbage", "abc")
    with pytest.raises(sysfs.SensorReadError, match="does not hold an integer"):
        sysfs.read_int(sysfs.resolve("/sys/garbage"))
    fake.write("/sys/secret", 1)
    deny_read("secret")
    with pytest.raises(sysfs.SensorPermissionError, match="permission denied reading /sys/secret"):
        sysfs.read_int(sysfs.resolve("/sys/secret"))
    assert sysfs.read_int_opt(sysfs.resolve("/sys/secret")) is None
    assert isinstance(sysfs.SensorPermissionError("x"), OSError)


def test_nul_terminated_device_tree_string(fake):
    f = fake.path("/proc/device-tree/model")
    f.parent.mkdir(parents=True)
    f.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert sysfs.read_text(f) == "Raspberry Pi 5 Model B Rev 1.0"
