"""A latest-frame grabber: a thread reads a capture device as fast as it delivers and keeps only the
newest frame with its capture time, so inference never works on a stale frame and no queue grows.

It also keeps the stream alive: empty or failed reads count as a gap; after a few in a row the capture
is released and reopened with exponential back-off, and only when no frame has arrived for
``reconnect_timeout_s`` does :meth:`FrameGrabber.latest` raise (a clear :class:`SourceError`, or
:class:`DeviceNotFoundError` when the device never delivered a single frame).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import DeviceNotFoundError, SourceError

log = logging.getLogger(__name__)


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the grabber uses (fakes in tests implement the same)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


CaptureOpener = Callable[[], "Capture | None"]  # None (or raising SourceError) when the device is not there


class EndOfStream(Exception):
    """Raised by a finite capture (a replayed file) at its end."""


@dataclass
class GrabbedFrame:
    image: np.ndarray
    t_capture: float  # perf_counter() right after the read returned
    seq: int  # index among all frames the device delivered (0, 1, 2, ...)


class FrameGrabber:
    def __init__(self, opener: CaptureOpener, name: str, *, reconnect_timeout_s: float = 30.0,
                 backoff_s: tuple[float, float] = (0.1, 2.0), failed_reads_before_reconnect: int = 5,
                 capture: Capture | None = None, hint: str = "") -> None:
        self.opener = opener
        self.name = name
        self.reconnect_timeout_s = float(reconnect_timeout_s)
        self.backoff_s = backoff_s
        self.failed_reads_before_reconnect = max(1, failed_reads_before_reconnect)
        self.hint = hint
        self._cap = capture
        self._cond = threading.Condition()
        self._latest: GrabbedFrame | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._eos = False
        self._interrupted = False
        self._last_consumed = -1
        # counters (read by the source and the telemetry hook)
        self.delivered = 0  # frames the device produced
        self.dropped = 0  # frames overwritten before the consumer took them
        self.empty_frames = 0  # reads that returned ok but no image
        self.failed_reads = 0
        self.reconnects = 0  # successful reopenings
        self.reconnect_attempts = 0
        self.gaps = 0  # periods without frames that ended with frames again
        self.gap_s = 0.0  # total time without frames
        self._gap_start: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"grabber[{name}]", daemon=True)

    def start(self) -> FrameGrabber:
        self._thread.start()
        return self

    # ------------------------------------------------------------------ grabber thread
    def _fail(self, err: Exception) -> None:
        with self._cond:
            self._error = err
            self._cond.notify_all()

    def _give_up_error(self, since: float) -> Exception:
        waited = time.perf_counter() - since
        if self.delivered == 0:
            return DeviceNotFoundError(
                f"{self.name}: opened but delivered no frame in {waited:.1f} s "
                f"({self.reconnect_attempts} reopen attempts)",
                self.hint or "check the device; or run on a file: --source video:FILE",
            )
        return SourceError(
            f"{self.name}: no frames for {waited:.1f} s after {self.delivered} good frames "
            f"({self.reconnect_attempts} reconnect attempts); giving up",
            "check the cable/power/network of the camera; raise --reconnect-timeout to wait longer",
        )

    def _reopen(self) -> bool:
        """Try to reopen with back-off until it works, the stop flag, or the reconnect timeout."""
        assert self._gap_start is not None
        delay = self.backoff_s[0]
        while not self._stop.is_set():
            if time.perf_counter() - self._gap_start >= self.reconnect_timeout_s:
                self._fail(self._give_up_error(self._gap_start))
                return False
            self.reconnect_attempts += 1
            try:
                cap = self.opener()
            except SourceError as e:
                log.debug("%s: reopen failed: %s", self.name, e)
                cap = None
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                log.warning("%s: reconnected after %.1f s", self.name, time.perf_counter() - self._gap_start)
                return True
            remaining = self.reconnect_timeout_s - (time.perf_counter() - self._gap_start)
            self._stop.wait(max(0.0, min(delay, remaining)))
            delay = min(delay * 2, self.backoff_s[1])
        return False

    def _run(self) -> None:
        consecutive = 0
        try:
            while not self._stop.is_set():
                if self._cap is None:
                    if self._gap_start is None:
                        self._gap_start = time.perf_counter()
                    if not self._reopen():
                        return
                    consecutive = 0
                try:
                    ok, img = self._cap.read()  # type: ignore[union-attr]
                except EndOfStream:
                    with self._cond:
                        self._eos = True
                        self._cond.notify_all()
                    return
                t = time.perf_counter()
                if not ok or img is None or getattr(img, "size", 0) == 0:
                    if ok:
                        self.empty_frames += 1
                    else:
                        self.failed_reads += 1
                    consecutive += 1
                    if self._gap_start is None:
                        self._gap_start = t
                    if consecutive >= self.failed_reads_before_reconnect:
                        log.warning("%s: %d failed/empty reads in a row; reconnecting", self.name, consecutive)
                        self._release()
                    elif t - self._gap_start >= self.reconnect_timeout_s:
                        self._fail(self._give_up_error(self._gap_start))
                        return
                    else:
                        self._stop.wait(min(0.01 * consecutive, 0.2))
                    continue
                consecutive = 0
                if self._gap_start is not None:
                    if self.delivered > 0 or self.reconnects > 0:
                        self.gaps += 1
                        self.gap_s += t - self._gap_start
                    self._gap_start = None
                with self._cond:
                    if self._latest is not None and self._latest.seq > self._last_consumed:
                        self.dropped += 1  # overwritten before anyone took it
                    self._latest = GrabbedFrame(img, t, self._seq)
                    self._seq += 1
                    self.delivered += 1
                    self._cond.notify_all()
        except Exception as e:  # a bug in a capture backend must not hang the consumer
            self._fail(SourceError(f"{self.name}: capture failed: {e}"))
        finally:
            self._release()

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:  # noqa: BLE001 - releasing a dead device
                pass

    # ------------------------------------------------------------------ consumer side
    def latest(self, timeout_s: float | None = None) -> GrabbedFrame | None:
        """The newest frame not returned before (waits for one). ``None`` at the end of a finite
        stream. Raises when the grabber gave up."""
        limit = self.reconnect_timeout_s + 5.0 if timeout_s is None else timeout_s
        t0 = time.perf_counter()
        with self._cond:
            while True:
                f = self._latest
                if f is not None and f.seq > self._last_consumed:
                    self._last_consumed = f.seq
                    return f
                if self._error is not None:
                    raise self._error
                if self._eos or self._interrupted:
                    return None
                waited = time.perf_counter() - t0
                if waited >= limit:  # the backend blocks in read(): treat as lost
                    raise self._give_up_error(t0)
                self._cond.wait(min(0.2, limit - waited))

    def interrupt(self) -> None:
        """Make a waiting (and every later) :meth:`latest` return None: a stop was requested."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    @property
    def in_gap(self) -> bool:
        return self._gap_start is not None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
