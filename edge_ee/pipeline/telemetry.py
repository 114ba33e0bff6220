"""JSON-lines telemetry: one record per inference.

Each record is serialised first and written with a single ``write`` of a complete line followed by
``flush``, so a crash or Ctrl-C never leaves a half line. Files rotate by size (``FILE.1`` ...
``FILE.N``). When the disk is full (or any write fails) the record is dropped and counted, with one
warning, and inference goes on; lines already written stay intact.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from ..errors import OutputError

log = logging.getLogger("edge_ee.telemetry")


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def encode(record: dict[str, Any]) -> str:
    """One JSON line (NaN/inf become null so every line is valid JSON)."""
    return json.dumps(_clean(record), separators=(",", ":"), allow_nan=False) + "\n"


class TelemetryWriter:
    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 0, keep: int = 5) -> None:
        if max_bytes < 0:  # rotating before every record would delete all but the last few
            raise OutputError(f"telemetry rotation size {max_bytes} bytes is negative", "give 0 (never) or a size")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self.written = 0
        self.dropped = 0
        self._warned = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = self._open()
        except OSError as e:
            raise OutputError(
                f"cannot open telemetry log {self.path}: {e.strerror}",
                "choose a writable path with --log, or check the directory's permissions",
            ) from e
        self._size = self._f.tell()

    def _open(self) -> Any:
        return open(self.path, "a", encoding="utf-8", buffering=1)

    def write(self, record: dict[str, Any]) -> bool:
        line = encode(record)
        try:
            if self.max_bytes and self._size + len(line) > self.max_bytes and self._size > 0:
                self._rotate()
            self._f.write(line)
            self._f.flush()
        except OSError as e:
            self.dropped += 1
            self._recover()
            if not self._warned:
                why = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
                log.warning("telemetry: cannot write %s (%s); dropping records and counting them", self.path, why)
                self._warned = True
            return False
        self._size += len(line)
        self.written += 1
        return True

    def _recover(self) -> None:
        """After a failed write the buffer may hold a partial line: reopen so it is never flushed."""
        try:
            self._f.close()
        except OSError:
            pass
        try:
            # truncate back to the last complete line written by us
            with open(self.path, "r+b") as f:
                f.truncate(self._size)
        except OSError:
            pass
        try:
            self._f = self._open()
        except OSError:
            self._f = open(os.devnull, "w")

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        old = self.path.with_name(f"{self.path.name}.{self.keep + 1}")
        if old.exists():
            old.unlink()
        self._f = self._open()
        self._size = 0

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass
