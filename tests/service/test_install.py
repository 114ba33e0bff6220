"""`edge-ee service install`, the unit file, and `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ee

from edge_ee.service.install import DEFAULT_EXEC, render_unit

REPO = Path(__file__).resolve().parents[2]


def test_shipped_unit_is_the_rendered_one() -> None:
    assert (REPO / "systemd" / "edge-ee.service").read_text() == render_unit(DEFAULT_EXEC)


def test_unit_contents() -> None:
    unit = render_unit("/opt/edge-ee/bin/edge-ee")
    lines = set(unit.splitlines())
    for want in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure", "RestartSec=5",
                 "DynamicUser=yes", "SupplementaryGroups=video audio render", "StateDirectory=edge-ee",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "DevicePolicy=closed", "DeviceAllow=char-video4linux rw", "DeviceAllow=char-alsa rw",
                 "DeviceAllow=/dev/nvmap rw", "DeviceAllow=/dev/nvhost-ctrl-gpu rw",
                 "ExecReload=/bin/kill -HUP $MAINPID",
                 "ExecStart=/opt/edge-ee/bin/edge-ee run --config /etc/edge-ee/edge-ee.toml"):
        assert want in lines, want
    assert not any(x.startswith("PrivateDevices") for x in lines)  # would hide /dev/video*
    u = render_unit("/opt/x", user="edge")
    assert "User=edge" in u and "DynamicUser" not in u


def test_install_writes_unit_and_keeps_existing_config(tmp_path: Path) -> None:
    r = ee("service", "install", "--prefix", tmp_path, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would write" in r.stdout and "Type=notify" in r.stdout and "systemctl enable --now edge-ee" in r.stdout
    assert not any(tmp_path.iterdir())  # dry run writes nothing
    r = ee("service", "install", "--prefix", tmp_path, "--exec", "/opt/edge-ee/bin/edge-ee")
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "etc/systemd/system/edge-ee.service"
    cfg = tmp_path / "etc/edge-ee/edge-ee.toml"
    assert "ExecStart=/opt/edge-ee/bin/edge-ee run --config /etc/edge-ee/edge-ee.toml" in unit.read_text()
    assert 'source = "synthetic"' in cfg.read_text()
    cfg.write_text('source = "camera:0"\n')
    r = ee("service", "install", "--prefix", tmp_path)
    assert r.returncode == 0 and "kept existing" in r.stdout
    assert cfg.read_text() == 'source = "camera:0"\n'
    r = ee("service", "install", "--prefix", tmp_path, "--exec", "edge-ee")
    assert r.returncode == 2 and "absolute path" in r.stderr


def test_install_unwritable_prefix_is_output_error(tmp_path: Path) -> None:
    (tmp_path / "etc").write_text("a file where the directory should be (fails even as root)")
    r = ee("service", "install", "--prefix", tmp_path)
    assert r.returncode == 6, r.stderr
    assert "cannot write" in r.stderr and "sudo" in r.stderr and "Traceback" not in r.stderr


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (no systemd on this machine)")
    exe = Path(sys.executable).parent / "edge-ee"
    if not exe.is_file():
        pytest.skip(f"{exe} missing: install the package (pip install -e .) so ExecStart points at a real file")
    unit = tmp_path / "edge-ee.service"
    unit.write_text(render_unit(str(exe)))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    problems = [x for x in (r.stdout + r.stderr).splitlines() if "edge-ee.service" in x]
    assert not problems, problems
    # the check has teeth: a broken key is reported
    unit.write_text(render_unit(str(exe)).replace("Type=notify", "Type=notfy"))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "notfy" in r.stdout + r.stderr
