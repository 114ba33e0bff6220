"""Jetson detection reads /etc and /proc under $EDGE_EE_SYSFS_ROOT, like every other sysfs/procfs path."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_ee.power import sysfs
from edge_ee.sources import camera as cam


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(sysfs.ROOT_ENV, str(tmp_path))
    return tmp_path


def _write(root: Path, path: str, data: bytes) -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(data)


def test_not_jetson_in_an_empty_root(root: Path) -> None:
    assert cam.is_jetson() is False


def test_jetson_from_device_tree_compatible_under_root(root: Path) -> None:
    _write(root, "/proc/device-tree/compatible", b"nvidia,p3768-0000+p3767-0005\x00nvidia,tegra234\x00")
    assert cam.is_jetson() is True


def test_other_board_device_tree(root: Path) -> None:
    _write(root, "/proc/device-tree/compatible", b"raspberrypi,5-model-b\x00brcm,bcm2712\x00")
    assert cam.is_jetson() is False


def test_jetson_from_nv_tegra_release_under_root(root: Path) -> None:
    _write(root, "/etc/nv_tegra_release", b"# R35 (release), REVISION: 4.1\n")
    assert cam.is_jetson() is True
