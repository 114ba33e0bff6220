"""A real mosquitto broker on a free loopback port, and a subscriber that records what arrives.

mosquitto comes from Debian (scripts/install-system-deps.sh installs it); without it the MQTT broker
tests are skipped locally and fail in CI (CI=true), so a missing install step cannot hide.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def need_mosquitto() -> str:
    if MOSQUITTO is None:
        msg = "mosquitto is not installed (apt-get install mosquitto, or bash scripts/install-system-deps.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return MOSQUITTO


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    """``mosquitto -c CONF`` listening on 127.0.0.1:port only; start/stop/restart on the same port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.exe = need_mosquitto()
        self.port = port or free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             "log_dest stderr\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # like a crash or a pulled cable: clients see the connection drop
            self.proc.wait(10)
        self.proc = None


class Subscriber:
    """Records (topic, payload, retain) of everything under the given filters."""

    def __init__(self, port: int, *filters: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.c.reconnect_delay_set(1, 1)

        def on_connect(client, userdata, flags, rc, props):  # noqa: ANN001
            client.subscribe([(f, 0) for f in filters])

        def on_subscribe(*_a):  # noqa: ANN002
            self._subscribed.set()

        def on_message(client, userdata, msg):  # noqa: ANN001
            with self._lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

        self.c.on_connect, self.c.on_subscribe, self.c.on_message = on_connect, on_subscribe, on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber did not subscribe")

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
