"""systemd readiness, status and watchdog as a :class:`~edge_ee.pipeline.runner.RunHook`.

- ``READY=1`` when the run starts (the bundle is loaded and the source opened by then);
- ``STATUS=`` every few seconds: frames, rate, exits, latency; "no frame for N s" when stalled; hooks'
  ``status_note()`` (the audit's drift alarm), sent at once when a hook's ``status_version`` changes;
- ``WATCHDOG=1`` every half ``$WATCHDOG_USEC``, but **only while the loop makes progress**: a pinger
  thread pings only if a frame was read or an inference finished within the last ping interval
  (plus the ``--fps`` pacing period). A source whose ``read()`` hangs, or an inference that never
  returns, stops the pings and systemd's watchdog restarts the service;
- ``STOPPING=1`` when the loop ends.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..pipeline.runner import RunHook, Runner
from ..sources.base import Frame
from .sdnotify import Notifier


class SystemdHook(RunHook):
    def __init__(self, notifier: Notifier, watchdog_usec: int | None = None, status_interval_s: float = 5.0,
                 pacing_s: float = 0.0) -> None:
        self.notifier = notifier
        self.ping_interval_s = watchdog_usec / 2e6 if watchdog_usec else None
        self.status_interval_s = status_interval_s
        # how long without progress still counts as "alive": one ping interval, plus the pacing sleep
        self.stall_limit_s = (self.ping_interval_s or status_interval_s) + max(0.0, pacing_s)
        self.last_progress = time.monotonic()
        self.pings = 0
        self.runner: Runner | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping_sent = False
        self._last_frames = 0
        self._last_status_t = time.monotonic()
        self._notes_version = 0

    # ------------------------------------------------------------------ hook
    def on_start(self, runner: Runner) -> None:
        self.runner = runner
        self.last_progress = self._last_status_t = time.monotonic()
        self.notifier.ready(status=f"running {runner.engine.manifest.name} on {runner.source.description}")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="edge-ee-sd-notify", daemon=True)
            self._thread.start()

    def before_infer(self, runner: Runner, frame: Frame) -> None:
        self.last_progress = time.monotonic()

    def on_result(self, runner: Runner, frame: Frame, result: Any, record: dict[str, Any]) -> None:
        self.last_progress = time.monotonic()
        version = sum(getattr(h, "status_version", 0) for h in runner.hooks)
        if version != self._notes_version:  # a hook's note changed (drift alarm): STATUS= now, not in 5 s
            self._notes_version = version
            self.notifier.status(self.status_text())

    def _notes(self) -> list[str]:
        """Notes of hooks that have one now (``status_note()``, e.g. the audit's drift alarm)."""
        r = self.runner
        notes = [getattr(h, "status_note", lambda: None)() for h in (r.hooks if r is not None else [])]
        return [n for n in notes if n]

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None:
        self._halt()
        self.notifier.stopping(status=f"stopping ({summary.get('stop_reason', 'stopped')}) after "
                                      f"{summary.get('frames', 0)} frames")
        self._stopping_sent = True

    def close(self) -> None:
        """Stop the pinger; also after an error, where ``on_stop`` does not run."""
        self._halt()
        if not self._stopping_sent and self.runner is not None:
            self.notifier.stopping()
            self._stopping_sent = True

    # ------------------------------------------------------------------ pinger thread
    def progressing(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self.last_progress <= self.stall_limit_s

    def status_text(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        r = self.runner
        if r is None:
            return "starting"
        s = r.stats
        dt = now - self._last_status_t
        rate = (s.frames - self._last_frames) / dt if dt > 0 else 0.0
        self._last_frames, self._last_status_t = s.frames, now
        text = f"frames {s.frames} ({rate:.1f}/s), exits {'/'.join(map(str, s.exits))}"
        if s.frames:
            text += f", p50 {s.latency.quantile(0.5):.2f} ms, p99 {s.latency.quantile(0.99):.2f} ms"
        if s.budget_frames:
            text += f", deadline hit {100 * s.deadline_hits / s.budget_frames:.1f}%"
        if r.telemetry is not None and r.telemetry.dropped:
            text += f", telemetry dropped {r.telemetry.dropped}"
        for note in self._notes():
            text += f"; {note}"
        idle = now - self.last_progress
        if idle > self.stall_limit_s:
            text += f"; NO PROGRESS for {idle:.0f} s (source or inference stalled)"
        return text

    def _loop(self) -> None:
        tick = min(x for x in (self.ping_interval_s, self.status_interval_s) if x)
        next_status = time.monotonic()
        while not self._stop.wait(tick):
            now = time.monotonic()
            if self.ping_interval_s and self.progressing(now) and self.notifier.watchdog():
                self.pings += 1
            if now >= next_status:
                self.notifier.status(self.status_text(now))
                next_status = now + self.status_interval_s

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
