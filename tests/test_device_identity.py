"""The device identity keys profiles on the execution providers actually used and the intra-op threads;
``edge-ee doctor`` says "unknown" rather than "None" for a CPU it cannot name."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_ee import device
from edge_ee.core.engine import Engine
from edge_ee.core.sessions import SessionConfig
from edge_ee.device import facts
from edge_ee.power import sysfs


@pytest.fixture
def empty_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv(sysfs.ROOT_ENV, str(root))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no nvpmodel/vcgencmd
    return root


def test_default_identity_is_the_default_session_not_the_available_providers(empty_root: Path) -> None:
    ident = device.device_identity()
    assert ident["providers"] == ["CPUExecutionProvider"] and ident["threads"] == 1
    assert "CPUExecutionProvider" in ident["providers_available"]


def test_explicit_providers_and_threads(empty_root: Path) -> None:
    ident = device.device_identity(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], threads=4)
    assert ident["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"] and ident["threads"] == 4
    assert device.device_identity(threads=3)["threads"] == 3
    assert device.device_identity()["threads"] == 1  # the default session again


def test_profile_keys_differ_by_providers_in_use(empty_root: Path) -> None:
    from edge_ee.profiling import profile

    cpu = device.device_identity(providers=["CPUExecutionProvider"], threads=1)
    cuda = device.device_identity(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], threads=1)
    assert profile.device_key(cpu) != profile.device_key(cuda)


def test_engine_session_facts(bundle: Path) -> None:
    e = Engine(bundle, session=SessionConfig(providers=["cpu"], intra_op_threads=2), warmup=0)
    assert device.engine_session_facts(e) == (["CPUExecutionProvider"], 2)


def test_doctor_names_an_unknown_cpu(empty_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facts.platform, "processor", lambda: "")
    assert device.cpu_model() is None
    r = device.doctor_report()
    text = device.format_doctor(r)
    cpu_line = next(x for x in text.splitlines() if x.strip().startswith("cpu "))
    assert "None" not in cpu_line
    assert "unknown (no model name in /proc/cpuinfo)" in cpu_line


def test_profile_keyed_on_the_engines_threads(bundle: Path, empty_root: Path) -> None:
    """A profile measured with 2 intra-op threads does not match a run with 1 (latencies differ)."""
    from edge_ee.core.bundle import load_bundle
    from edge_ee.profiling import profile

    two = Engine(bundle, session=SessionConfig(intra_op_threads=2), warmup=0)
    one = Engine(bundle, session=SessionConfig(intra_op_threads=1), warmup=0)
    made = {"bundle": {"hash": load_bundle(bundle).content_hash()}, "device": profile.device_identity(two)}
    assert made["device"]["threads"] == 2
    assert profile.mismatch(made, load_bundle(bundle), profile.device_identity(two)) == []
    why = profile.mismatch(made, load_bundle(bundle), profile.device_identity(one))
    assert len(why) == 1 and "threads: 2 here 1" in why[0]
