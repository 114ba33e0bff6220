"""Reading sysfs/procfs files under a configurable root, with clear errors.

Every path is resolved under the root taken from the environment variable ``EDGE_EE_SYSFS_ROOT``
(default ``/``), read on every call so tests and users can point discovery at a fake tree.
Errors are subclasses of :class:`SensorError` (itself an ``OSError``) whose message names the file.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

ROOT_ENV = "EDGE_EE_SYSFS_ROOT"


class SensorError(OSError):
    """A power/energy sensor cannot be used; ``str(e)`` says why (file and cause)."""


class SensorNotFound(SensorError):
    """The sensor (file, command, feature) does not exist on this machine."""


class SensorPermissionError(SensorError):
    """The sensor exists but this user may not read it."""


class SensorReadError(SensorError):
    """The sensor exists but reading or parsing it failed (I/O error, garbage, device gone)."""


def root() -> Path:
    """The current sysfs root (``$EDGE_EE_SYSFS_ROOT`` or ``/``)."""
    return Path(os.environ.get(ROOT_ENV) or "/")


def resolve(path: str | os.PathLike[str]) -> Path:
    """``path`` (absolute, e.g. ``/sys/class/hwmon``) resolved under :func:`root`."""
    p = str(path)
    return root() / p.lstrip("/")


def rglob(pattern: str) -> list[Path]:
    """Sorted paths matching an absolute glob ``pattern`` under the root."""
    base = str(root())
    return [Path(p) for p in sorted(glob.glob(os.path.join(base, pattern.lstrip("/"))))]


def display(path: Path) -> str:
    """``path`` as the user would see it on the device (root prefix removed)."""
    r = root()
    try:
        return "/" + str(Path(path).relative_to(r))
    except ValueError:
        return str(path)


def read_text(path: Path, limit: int = 4096) -> str:
    """Contents of ``path`` (first ``limit`` bytes) stripped of whitespace and NULs, or a :class:`SensorError`."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except FileNotFoundError as e:
        raise SensorNotFound(f"{display(path)} does not exist") from e
    except PermissionError as e:
        raise SensorPermissionError(f"permission denied reading {display(path)}") from e
    except OSError as e:
        raise SensorReadError(f"cannot read {display(path)}: {e.strerror or e}") from e
    return data.decode("utf-8", "replace").strip().strip("\x00").strip()


def read_int(path: Path) -> int:
    """Integer contents of ``path`` (sysfs attributes are decimal), or a :class:`SensorError`."""
    s = read_text(path)
    try:
        return int(s)
    except ValueError:
        raise SensorReadError(f"{display(path)} does not hold an integer: {s[:40]!r}") from None


def read_int_opt(path: Path) -> int | None:
    """Like :func:`read_int` but ``None`` when the file is missing or unreadable."""
    try:
        return read_int(path)
    except SensorError:
        return None


def read_text_opt(path: Path, limit: int = 4096) -> str | None:
    """Like :func:`read_text` but ``None`` when the file is missing or unreadable."""
    try:
        return read_text(path, limit)
    except SensorError:
        return None
