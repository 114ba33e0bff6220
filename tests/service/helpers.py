"""Shared bits for the service tests: the CLI as a subprocess, a notify socket, waiting on conditions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CLI = [sys.executable, "-m", "edge_ee"]


def ee(*args: object, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


def popen(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_for(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def records(log: Path) -> list[dict]:
    if not log.exists():
        return []
    raw = log.read_text()
    return [json.loads(x) for x in raw.splitlines() if x.strip()]


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET (short path: AF_UNIX limit is 108)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="eenot")
        self.path = os.path.join(self.dir, "n")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def collect(self, seconds: float) -> list[str]:
        """Messages received during ``seconds`` (also kept in ``self.messages``)."""
        got: list[str] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        self.messages += got
        return got

    def until(self, pred: Callable[[list[str]], bool], timeout: float = 30.0) -> list[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.collect(0.05)
            if pred(self.messages):
                return self.messages
        raise AssertionError(f"notify messages so far: {self.messages[-10:]}")

    def fields(self) -> list[str]:
        return [f for m in self.messages for f in m.split("\n")]

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass
