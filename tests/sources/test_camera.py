"""Camera sources: the newest-frame grabber, reconnects, empty frames, missing devices, GStreamer
detection, real-time replay of a generated video with a slow model, and --fps pacing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.errors import DeviceNotFoundError, ExitCode, SourceError
from edge_ee.pipeline.runner import RunConfig, RunHook, Runner
from edge_ee.pipeline.streams import stream_hooks
from edge_ee.pipeline.telemetry import TelemetryWriter
from edge_ee.sources import open_source
from edge_ee.sources.camera import CameraSource, gstreamer_support
from edge_ee.sources.grabber import FrameGrabber

cv2 = pytest.importorskip("cv2")
FAST = {"backoff_s": (0.005, 0.02)}
ABORT = threading.Event()


def shut(src) -> None:
    ABORT.set()  # fakes blocked in read() return, as a camera would at its next frame
    src.close()


@pytest.fixture(autouse=True)
def _unblock_fakes():
    ABORT.clear()
    yield
    ABORT.set()


def wait_until(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


class GatedCapture:
    """Delivers frame k (an 8x8 image filled with k) each time the test releases one; can be told to
    fail (ok=False), to return empty images, or to die (every later read fails)."""

    def __init__(self, start: int = 0) -> None:
        self.k = start
        self.gate = threading.Semaphore(0)
        self.mode = "ok"
        self.released = False

    def give(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.release()

    def read(self):
        if self.mode == "dead":
            time.sleep(0.001)
            return False, None
        while not self.gate.acquire(timeout=0.02):  # blocks like a camera waiting for its next frame
            if self.released or ABORT.is_set() or self.mode == "dead":
                return False, None
        if self.mode == "empty":
            return True, np.zeros((0, 0, 3), np.uint8)
        img = np.full((8, 8, 3), self.k % 256, np.uint8)
        self.k += 1
        return True, img

    def release(self) -> None:
        self.released = True


def test_newest_frame_with_a_slow_consumer() -> None:
    cap = GatedCapture()
    src = CameraSource(lambda: cap, "fake", **FAST)
    try:
        cap.give(5)  # five frames arrive while the model is busy
        wait_until(lambda: src.grabber.delivered == 5)
        f = src.read()
        assert f.meta["capture_seq"] == 4 and int(f.data[0, 0, 0]) == 4  # the newest, not the oldest
        assert src.dropped == 4
        cap.give(1)
        f = src.read()
        assert f.meta["capture_seq"] == 5 and src.dropped == 4
        cap.give(3)
        wait_until(lambda: src.grabber.delivered == 9)
        f = src.read()
        assert f.meta["capture_seq"] == 8 and src.dropped == 6
        assert f.t_capture <= time.perf_counter()
    finally:
        shut(src)


def test_reconnects_after_the_camera_disappears_and_counts_the_gap() -> None:
    caps = [GatedCapture(), None, None, GatedCapture(start=100)]
    calls = {"n": 0}

    def opener():
        c = caps[min(calls["n"], len(caps) - 1)]
        calls["n"] += 1
        return c

    src = CameraSource(opener, "fake", reconnect_timeout_s=10, failed_reads_before_reconnect=3, **FAST)
    try:
        caps[0].give(2)
        wait_until(lambda: src.grabber.delivered == 2)
        assert src.read().meta["capture_seq"] == 1
        caps[0].mode = "dead"  # unplugged: reads fail, two reopen attempts fail, the third works
        wait_until(lambda: src.grabber.reconnects == 1)
        caps[3].give(1)
        f = src.read()
        assert int(f.data[0, 0, 0]) == 100 and f.meta["capture_seq"] == 2
        st = src.stream_stats()
        assert st["reconnects"] == 1 and st["capture_gaps"] == 1 and st["capture_gap_s"] > 0
        assert src.grabber.reconnect_attempts == 3 and caps[0].released
    finally:
        shut(src)


def test_gives_up_after_the_reconnect_timeout() -> None:
    cap = GatedCapture()
    state = {"first": True}

    def opener():
        if state["first"]:
            state["first"] = False
            return cap
        return None

    src = CameraSource(opener, "camera:7", reconnect_timeout_s=0.3, failed_reads_before_reconnect=2, **FAST)
    try:
        cap.give(1)
        src.read()
        cap.mode = "dead"
        with pytest.raises(SourceError) as ei:
            src.read()
        assert not isinstance(ei.value, DeviceNotFoundError)
        assert "camera:7" in str(ei.value) and "giving up" in str(ei.value) and "--reconnect-timeout" in str(ei.value)
    finally:
        shut(src)


def test_empty_frames_are_counted_and_trigger_a_reconnect() -> None:
    first, second = GatedCapture(), GatedCapture(start=50)
    seq = iter([first, second])
    src = CameraSource(lambda: next(seq, None), "fake", failed_reads_before_reconnect=3, **FAST)
    try:
        first.mode = "empty"
        first.give(3)
        wait_until(lambda: src.grabber.reconnects == 1)
        second.give(1)
        f = src.read()
        assert int(f.data[0, 0, 0]) == 50
        assert src.stream_stats()["empty_frames"] == 3
    finally:
        shut(src)


def test_a_device_that_never_delivers_is_not_found() -> None:
    cap = GatedCapture()
    cap.mode = "dead"
    src = CameraSource(lambda: cap, "camera:1", reconnect_timeout_s=0.2, **FAST)
    try:
        with pytest.raises(DeviceNotFoundError, match="delivered no frame"):
            src.read()
    finally:
        shut(src)


def test_grabber_stops_promptly() -> None:
    cap = GatedCapture()
    cap.give(10_000)  # a camera streaming away
    g = FrameGrabber(lambda: cap, "fake", capture=cap).start()
    wait_until(lambda: g.delivered > 10)
    g.stop()
    assert not g._thread.is_alive()


def test_missing_camera_one_clear_message_exit_7(image_bundle: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edge_ee", "run", "--model", str(image_bundle), "--source",
                        "camera:/dev/video99"], capture_output=True, text=True, timeout=60)
    assert r.returncode == ExitCode.DEVICE == 7, r.stderr
    assert "/dev/video99" in r.stderr and "--source video:FILE" in r.stderr and "Traceback" not in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("edge-ee: device not found")]) == 1


def test_gst_without_gstreamer_says_so(image_bundle: Path) -> None:
    if gstreamer_support(cv2) is not False:
        pytest.skip("this cv2 has GStreamer")
    m = load_bundle(image_bundle).manifest
    with pytest.raises(SourceError, match="without GStreamer") as ei:
        open_source("gst:videotestsrc ! videoconvert ! appsink", m, {})
    assert "--system-site-packages" in str(ei.value)


def test_csi_without_a_camera_stack(image_bundle: Path, monkeypatch) -> None:
    import edge_ee.sources.camera as cam

    monkeypatch.setattr(cam, "has_picamera2", lambda: False)
    monkeypatch.setattr(cam, "is_jetson", lambda: False)
    with pytest.raises(DeviceNotFoundError, match="picamera2"):
        open_source("csi", load_bundle(image_bundle).manifest, {})


# ---------------------------------------------------------------- generated video, real-time replay
@pytest.fixture
def clip(tmp_path: Path) -> Path:
    p = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    assert w.isOpened()
    for i in range(45):
        img = np.zeros((48, 64, 3), np.uint8)
        img[:, : (i % 64) + 1] = 255
        w.write(img)
    w.release()
    return p


class SlowModel(RunHook):
    def before_infer(self, runner, frame) -> None:
        time.sleep(0.1)  # three 30 fps frame periods


def test_replayed_camera_with_a_slow_model_drops_not_queues(image_bundle: Path, clip: Path, tmp_path: Path) -> None:
    b = load_bundle(image_bundle)
    src = open_source(f"camera:{clip}", b.manifest, {})
    assert src.live and "replayed" in src.description
    log = tmp_path / "t.jsonl"
    tw = TelemetryWriter(log)
    runner = Runner(Engine(b), src, RunConfig(status=False), telemetry=tw,
                    hooks=[SlowModel(), *stream_hooks(src, b.manifest)])
    try:
        summary = runner.run()
    finally:
        shut(src)
        tw.close()
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    seqs = [r["capture_seq"] for r in recs]
    assert seqs == sorted(set(seqs))  # every frame is newer than the last one; none twice
    assert summary["stop_reason"] == "end of stream"
    assert summary["dropped_frames"] > 0 and summary["stream"]["dropped_frames"] == summary["dropped_frames"]
    assert len(recs) + summary["dropped_frames"] <= 45
    assert any(b2 - a > 1 for a, b2 in zip(seqs, seqs[1:]))  # skipped to the newest frame
    assert all(r["e2e_ms"] >= r["total_ms"] for r in recs)  # capture-to-answer includes the wait
    assert recs[-1]["dropped_frames"] <= summary["dropped_frames"]


def test_fps_paces_the_loop(image_bundle: Path, clip: Path) -> None:
    b = load_bundle(image_bundle)
    src = open_source(f"camera:{clip}", b.manifest, {"loop": True})
    runner = Runner(Engine(b), src, RunConfig(status=False, fps=4, duration_s=0.6))
    try:
        s = runner.run()
    finally:
        shut(src)
    assert 1 <= s["frames"] <= 4  # at most one frame per 250 ms, whatever the camera delivers
    assert s["dropped_frames"] > 0  # the camera kept going at 30 fps in between


def test_source_failing_mid_stream_keeps_telemetry_intact(image_bundle: Path, tmp_path: Path) -> None:
    b = load_bundle(image_bundle)
    cap = GatedCapture()
    src = CameraSource(lambda: cap if not cap.released else None, "fake", reconnect_timeout_s=0.2,
                       failed_reads_before_reconnect=1, **FAST)

    class FailAfter(RunHook):
        def on_result(self, runner, frame, result, record) -> None:
            if frame.index == 2:
                cap.mode = "dead"
            else:
                cap.give(1)

    log = tmp_path / "t.jsonl"
    tw = TelemetryWriter(log)
    cap.give(1)
    runner = Runner(Engine(b), src, RunConfig(status=False), telemetry=tw, hooks=[FailAfter()])
    try:
        with pytest.raises(SourceError, match="giving up"):
            runner.run()
    finally:
        shut(src)
        tw.close()
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["frame"] for r in recs] == [0, 1, 2]


def test_stop_request_ends_a_read_waiting_through_a_gap(image_bundle: Path) -> None:
    cap = GatedCapture()  # delivers one frame, then nothing: the runner waits in read()
    src = CameraSource(lambda: cap, "fake", reconnect_timeout_s=60, **FAST)
    b = load_bundle(image_bundle)
    cap.give(1)
    runner = Runner(Engine(b), src, RunConfig(status=False))
    t = threading.Timer(0.3, runner.stop, args=("SIGTERM",))
    t.start()
    try:
        s = runner.run()  # returns long before the 60 s reconnect timeout
    finally:
        t.cancel()
        shut(src)
    assert s["frames"] == 1 and s["stop_reason"] == "SIGTERM"
