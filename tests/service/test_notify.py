"""sd_notify: READY / STATUS / WATCHDOG / STOPPING from a real `edge-ee run`; pings stop when the source stalls;
SIGTERM leaves complete JSON lines and exit code 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

from helpers import NotifySocket, popen, records, wait_for

from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.pipeline.runner import RunConfig, Runner
from edge_ee.service.sdnotify import Notifier, watchdog_usec
from edge_ee.service.watchdog import SystemdHook
from edge_ee.sources import open_source
from edge_ee.sources.base import Frame, Source


def test_run_notifies_systemd_and_stops_cleanly_on_sigterm(bundle: Path, tmp_path: Path,
                                                             notify_socket: NotifySocket) -> None:
    log = tmp_path / "t.jsonl"
    p = popen("run", "--model", bundle, "-s", "synthetic", "--fps", "100", "--log", log, "-q",
              env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "200000"})
    try:
        notify_socket.until(lambda m: sum("WATCHDOG=1" in x for x in m) >= 2 and any("STATUS=frames" in x for x in m))
        wait_for(lambda: len(records(log)) >= 5, what="some telemetry")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    notify_socket.collect(0.2)
    assert p.returncode == 0, err
    fields = notify_socket.fields()
    assert fields.count("READY=1") == 1 and fields.index("READY=1") < fields.index("WATCHDOG=1")
    assert "STOPPING=1" in fields and fields.index("STOPPING=1") > fields.index("WATCHDOG=1")
    status = [f for f in fields if f.startswith("STATUS=frames")]
    assert status and "exits" in status[-1] and "p50" in status[-1]
    raw = log.read_text()
    assert raw.endswith("\n")
    n = len([json.loads(x) for x in raw.splitlines()])  # every line complete JSON
    assert f"frames: {n}" in out


class StallingSource(Source):
    """Delivers ``n`` synthetic frames, then blocks in read() like a hung camera, until released."""

    description = "stalling"

    def __init__(self, inner: Source, n: int) -> None:
        self.inner, self.n, self.count = inner, n, 0
        self.blocked, self.release = threading.Event(), threading.Event()

    def read(self) -> Frame | None:
        if self.count >= self.n:
            self.blocked.set()
            self.release.wait(30)
            return None
        self.count += 1
        return self.inner.read()


def test_watchdog_pings_stop_when_the_source_stalls(bundle: Path, notify_socket: NotifySocket) -> None:
    b = load_bundle(bundle)
    src = StallingSource(open_source("synthetic", b.manifest), n=40)
    hook = SystemdHook(Notifier(notify_socket.path), watchdog_usec=100_000, status_interval_s=0.05)
    runner = Runner(Engine(b), src, RunConfig(status=False, fps=200), hooks=[hook])
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        notify_socket.until(lambda m: any("WATCHDOG=1" in x for x in m))  # alive while frames flow
        assert src.blocked.wait(30)
        # past the stall limit (one ping interval) pings must stop, status must say so
        wait_for(lambda: not hook.progressing(), what="stall detected")
        notify_socket.collect(0.15)
        quiet = notify_socket.collect(0.5)
        assert not any("WATCHDOG=1" in m for m in quiet), quiet
        assert any("NO PROGRESS" in m for m in quiet), quiet
        pings = hook.pings
        notify_socket.collect(0.2)
        assert hook.pings == pings
    finally:
        src.release.set()
        t.join(30)
    notify_socket.collect(0.1)
    assert "STOPPING=1" in notify_socket.fields()


def test_pings_follow_progress_in_process(bundle: Path, notify_socket: NotifySocket) -> None:
    """While frames flow at a steady rate, pings keep coming (the watchdog never fires)."""
    b = load_bundle(bundle)
    hook = SystemdHook(Notifier(notify_socket.path), watchdog_usec=100_000)
    runner = Runner(Engine(b), open_source("synthetic", b.manifest), RunConfig(status=False, fps=100), hooks=[hook])
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        notify_socket.until(lambda m: sum(x == "WATCHDOG=1" for x in m) >= 5)
    finally:
        runner.stop()
        t.join(30)
    assert notify_socket.fields()[0] == "READY=1"


def test_abstract_socket_and_env_parsing(monkeypatch) -> None:
    name = f"edge-ee-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        n = Notifier("@" + name)
        assert n.enabled and n.send("READY=1", "STATUS=hello")
        assert s.recv(100) == b"READY=1\nSTATUS=hello"
        n.close()
    finally:
        s.close()
    assert not Notifier("").enabled and not Notifier("").send("READY=1")
    # a socket that went away: no exception, just False
    assert Notifier("/nonexistent/sock").send("WATCHDOG=1") is False
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # meant for another process
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "x"}) is None and watchdog_usec({}) is None
