from __future__ import annotations

import builtins
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_ee.power import sysfs


class FakeRoot:
    """A fake sysfs/procfs tree; ``write("/sys/...", 5)`` creates the file under the root."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.bin = bin_dir

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def write(self, p: str, value: object) -> Path:
        f = self.path(p)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"{value}\n")
        return f

    def files(self, base: str, items: dict[str, object]) -> Path:
        for k, v in items.items():
            self.write(f"{base.rstrip('/')}/{k}", v)
        return self.path(base)

    def script(self, name: str, body: str) -> Path:
        """A fake command on PATH (POSIX sh)."""
        f = self.bin / name
        f.write_text("#!/bin/sh\n" + body)
        f.chmod(f.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return f


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRoot:
    root = tmp_path / "root"
    root.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv(sysfs.ROOT_ENV, str(root))
    # only our fakes plus the basic tools the fake scripts use (sleep, cat)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]))
    return FakeRoot(root, bin_dir)


@pytest.fixture
def deny_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``deny_read("energy_uj")``: opening any path containing that text raises PermissionError.

    Simulates a root-only file in a way that also works when the tests run as root."""
    patterns: list[str] = []
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if any(p in str(file) for p in patterns):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(sysfs, "open", fake_open, raising=False)
    yield patterns.append


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
