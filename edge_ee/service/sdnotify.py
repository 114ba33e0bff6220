"""sd_notify(3) without extra packages: one datagram per message to ``$NOTIFY_SOCKET``.

A leading ``@`` in the socket path names an abstract socket (the ``@`` becomes a NUL byte). Sending
never raises: a service manager that went away must not take inference down with it.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("edge_ee.service")


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


class Notifier:
    """Talks to the service manager. ``enabled`` is False when not started by systemd (no socket)."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self._warned = False
        if self.path:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError as e:  # pragma: no cover - AF_UNIX always exists on Linux
                log.warning("sd_notify: cannot create a socket (%s); systemd notification disabled", e)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; True when it was delivered."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), _address(self.path))
            return True
        except OSError as e:
            if not self._warned:
                log.warning("sd_notify: cannot send to %s (%s); continuing without it", self.path, e)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_usec(environ: dict[str, str] | None = None) -> int | None:
    """``$WATCHDOG_USEC`` when the watchdog is meant for this process (``$WATCHDOG_PID`` unset or ours)."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec if usec > 0 else None
