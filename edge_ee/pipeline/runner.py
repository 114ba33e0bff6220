"""The run loop: source -> preprocess -> engine -> telemetry, with a live status line and a summary.

Extensions (power sampling, the budget controller, metrics, systemd notification) plug in as
:class:`RunHook` objects; the loop itself stays small. A stop request (SIGINT/SIGTERM, ``--duration``,
``--max-frames``, end of stream) is checked between frames, so the current frame always finishes and
its telemetry line is complete.

With a latency budget and no hook controlling it (``--no-controller``, or a mode other than adaptive),
the runner itself warns once when the deadline guard predicts that the first stage alone takes longer
than the budget: the budget cannot be met (the budget controller gives the same warning when it runs).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TextIO

import numpy as np

from ..core.budget import Budget
from ..core.engine import Engine, Mode, Result
from ..errors import UsageError
from ..sources.base import Frame, Source
from .preprocess import make_preprocessor
from .stats import RunStats
from .telemetry import TelemetryWriter

log = logging.getLogger("edge_ee.runner")


@dataclass
class RunConfig:
    budget: Budget | None = None
    max_frames: int | None = None
    duration_s: float | None = None
    mode: Mode = "adaptive"
    exit_at: int | None = None
    fps: float | None = None  # pace the loop to at most this rate
    status_interval_s: float = 0.5
    status: bool = True


@dataclass(frozen=True)
class ExtraWork:
    """Work a hook did on a frame's input after the engine answered (the audit's full-model run): it is
    counted in that frame's latency, MACs and energy. Times are ``time.perf_counter()`` seconds."""

    name: str  # telemetry prefix, e.g. "audit" -> audit_energy_mj
    t_start: float
    t_end: float
    macs: int


PHASES = ("settings", "measure", "control", "report")


class RunHook:
    """Override what you need. ``record`` may be extended in ``on_result`` before it is written.

    ``phase`` places the hook in the run, whatever the order hooks were added in: ``settings`` (apply new run
    settings before anything else sees the frame: the SIGHUP reload), ``measure`` (add what was measured on the
    frame: energy, the audit, keyword detections, stream counters), ``control`` (act on the measurements: the
    budget controller), ``report`` (read the finished record and summary: metrics, systemd, MQTT, the
    comparison with the profile). Within a phase, hooks keep the order they were added in.
    ``handles_budget``: the budget kind (``latency``, ``energy``, ``power``) this hook controls, if any."""

    phase: ClassVar[str] = "report"
    handles_budget: str | None = None

    def on_start(self, runner: Runner) -> None: ...

    def before_infer(self, runner: Runner, frame: Frame) -> None: ...

    def extra_work(self, runner: Runner, x: np.ndarray, result: Result) -> ExtraWork | None:
        """Right after the engine answered, on the same preprocessed input ``x``: run more inference if
        needed and describe it (it then counts in the frame's cost); None when nothing was run."""
        return None

    def on_result(self, runner: Runner, frame: Frame, result: Result, record: dict[str, Any]) -> None: ...

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None: ...

    def on_reload(self, runner: Runner, settings: dict[str, Any], changed: set[str]) -> set[str]:
        """SIGHUP, between frames: ``settings`` are the new effective run options, ``changed`` their
        names that differ. Re-read what you own (e.g. a device profile); return the keys you applied."""
        return set()


@dataclass
class Runner:
    engine: Engine
    source: Source
    config: RunConfig = field(default_factory=RunConfig)
    telemetry: TelemetryWriter | None = None
    hooks: list[RunHook] = field(default_factory=list)
    status_stream: TextIO = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self.preprocess = make_preprocessor(self.engine.manifest.input)
        m = self.engine.manifest
        self.stats = RunStats(num_exits=m.num_exits, full_macs=m.full_model_macs())
        self.order_hooks()
        self.check_budget(self.config.budget)
        self.extra: list[ExtraWork] = []  # the current frame's extra work (hooks read it in on_result)
        self._workers: list[RunHook] | None = None  # hooks that override extra_work, found at the first frame
        self._before: list[RunHook] = []  # ... before_infer
        self._after: list[RunHook] = []  # ... on_result
        self._warned_budget: str | None = None  # the latency budget already warned about as infeasible
        self._tty = hasattr(self.status_stream, "isatty") and self.status_stream.isatty()

    def order_hooks(self) -> None:
        """Sort the hooks by their declared phase (stable: within a phase, the order they were added in)."""
        self.hooks.sort(key=lambda h: PHASES.index(h.phase))

    def budget_hook(self, kind: str) -> RunHook | None:
        """The hook that controls budgets of ``kind`` (``RunHook.handles_budget``), if any."""
        return next((h for h in self.hooks if h.handles_budget == kind), None)

    def check_budget(self, budget: Budget | None) -> None:
        """An energy or power budget needs a hook that controls it (the budget controller, fed by a power
        source); a latency budget is also held by the engine's deadline guard alone."""
        if budget is not None and budget.kind != "latency" and self.budget_hook(budget.kind) is None:
            raise UsageError(
                f"a {budget.kind} budget ({budget.text}) needs the budget controller and a power source",
                "use a latency budget (e.g. 20ms), or see `edge-ee doctor` for power sensors",
            )

    def stop(self, reason: str = "stopped") -> None:
        if not self.stop_event.is_set():
            self.stop_reason = reason
        self.stop_event.set()
        self.source.interrupt()  # live sources: end a blocking read() now (a no-op for the others)

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.order_hooks()  # hooks may have been added since the runner was made
        for h in self.hooks:
            h.on_start(self)
        self._workers = None
        t_start = time.perf_counter()
        next_status = t_start + cfg.status_interval_s
        period = 1.0 / cfg.fps if cfg.fps else None
        next_due = t_start
        try:
            while not self.stop_event.is_set():
                if cfg.max_frames is not None and self.stats.frames >= cfg.max_frames:
                    self.stop_reason = "max frames reached"
                    break
                if cfg.duration_s is not None and time.perf_counter() - t_start >= cfg.duration_s:
                    self.stop_reason = "duration reached"
                    break
                if period is not None:
                    wait = next_due - time.perf_counter()
                    if wait > 0 and self.stop_event.wait(wait):
                        break
                    next_due = max(next_due + period, time.perf_counter() - period)
                frame = self.source.read()
                if frame is None:
                    if not self.stop_event.is_set():  # else an interrupted live read: keep the stop reason
                        self.stop_reason = "end of stream"
                    break
                self.process(frame)
                now = time.perf_counter()
                if cfg.status and now >= next_status:
                    self._status(now - t_start)
                    next_status = now + cfg.status_interval_s
        finally:
            self.stats.wall_s = time.perf_counter() - t_start
            self.stats.dropped = getattr(self.source, "dropped", 0)
            if self.telemetry is not None:
                self.stats.telemetry_dropped = self.telemetry.dropped
            if cfg.status and self._tty:
                self.status_stream.write("\r\x1b[K")
                self.status_stream.flush()
        summary = self.stats.summary()
        summary["stop_reason"] = self.stop_reason or "stopped"
        for h in self.hooks:
            h.on_stop(self, summary)
        return summary

    def process(self, frame: Frame) -> Result:
        if self._workers is None:
            self._find_steps()
        cfg = self.config
        for h in self._before:
            h.before_infer(self, frame)
        # hooks may change the budget between frames (SIGHUP reload): the config's budget is the one in force
        budget_s = cfg.budget.seconds if cfg.budget is not None else None
        t0 = time.perf_counter()
        x = self.preprocess(frame.data)
        t1 = time.perf_counter()
        r = self.engine.infer(x, mode=cfg.mode, exit_at=cfg.exit_at,
                              deadline_s=None if budget_s is None else budget_s - (t1 - t0))
        if self._workers:
            macs, infer_ms = self._extra_work(x, r)
        else:
            macs, infer_ms = r.macs, r.total_ms
            if self.extra:
                self.extra = []
        t2 = time.perf_counter()
        total_ms = (t2 - t0) * 1e3
        e2e_ms = (t2 - frame.t_capture) * 1e3
        met = None if budget_s is None else total_ms <= budget_s * 1e3
        # the telemetry record is built only when something reads it (a telemetry file or a hook's on_result)
        record = None
        if self.telemetry is not None or self._after:
            record = self._record(frame, r, (t1 - t0) * 1e3, infer_ms, total_ms, e2e_ms, macs, met)
            for h in self._after:
                h.on_result(self, frame, r, record)
            correct = record.get("correct")
        else:
            correct = self._correct(frame, r)
        self.stats.add(r.exit_index, total_ms, macs, e2e_ms=e2e_ms, deadline_met=met,
                       deadline_stop=r.deadline_stop, correct=correct, infer_ms=infer_ms)
        if budget_s is not None and cfg.budget is not None and self._warned_budget != cfg.budget.text:
            self._check_feasible(budget_s)
        if self.telemetry is not None:
            self.telemetry.write(record)
        return r

    @staticmethod
    def _correct(frame: Frame, r: Result) -> bool | None:
        """Whether the answer matches the frame's ground truth (None: the frame has none)."""
        truth = frame.meta.get("truth")
        return None if truth is None else truth == r.label

    def _find_steps(self) -> None:
        """The hooks that do something at each per-frame step (a hook that keeps RunHook's no-op is not called
        per frame); found at the first frame of a run, after every hook was added and ordered."""
        def overriding(step: str) -> list[RunHook]:
            return [h for h in self.hooks if getattr(type(h), step) is not getattr(RunHook, step)]

        self._before, self._after = overriding("before_infer"), overriding("on_result")
        self._workers = overriding("extra_work")

    def _extra_work(self, x: np.ndarray, r: Result) -> tuple[int, float]:
        """Run the hooks' extra work on this input: (the frame's MACs, its engine time in ms), both with it."""
        self.extra = [w for h in self._workers or () if (w := h.extra_work(self, x, r)) is not None]
        if not self.extra:
            return r.macs, r.total_ms
        return (r.macs + sum(w.macs for w in self.extra),
                (max(w.t_end for w in self.extra) - r.t_start) * 1e3)

    def _record(self, frame: Frame, r: Result, preprocess_ms: float, infer_ms: float, total_ms: float,
                e2e_ms: float, macs: int, met: bool | None) -> dict[str, Any]:
        """The frame's telemetry record, before the hooks add to it."""
        cfg = self.config
        record: dict[str, Any] = {
            "ts": frame.wall_time,
            "frame": frame.index,
            "exit": r.exit_index,
            "label": r.label,
            "confidence": round(r.confidence, 6),
            "score": r.score,
            "preprocess_ms": round(preprocess_ms, 4),
            "segment_ms": [round(v, 4) for v in r.segment_ms],
            "head_ms": [None if v is None else round(v, 4) for v in r.head_ms],
            "infer_ms": round(infer_ms, 4),  # engine time, extra work (audit) included
            "total_ms": round(total_ms, 4),
            "e2e_ms": round(e2e_ms, 4),
            "macs": macs,
            "mode": cfg.mode,
            "thresholds": list(r.thresholds),
            "budget": cfg.budget.text if cfg.budget else None,
            "deadline_met": met,
            "deadline_stop": r.deadline_stop,
            "energy_mj": None,  # above the idle baseline (energy hook)
            "energy_total_mj": None,  # idle power included
            "stage_energy_mj": None,
            "power_source": None,
            "energy_estimated": None,
        }
        correct = self._correct(frame, r)
        if correct is not None:
            record["truth"] = frame.meta["truth"]
            record["correct"] = correct
        if "path" in frame.meta:
            record["input"] = frame.meta["path"]
        return record

    def _check_feasible(self, budget_s: float) -> None:
        """Warn once per budget when the guard predicts that stage 0 alone (segment + head) exceeds a
        latency budget that no hook controls (the budget controller warns itself)."""
        b = self.config.budget
        if b is None or b.kind != "latency" or self.budget_hook("latency") is not None:
            return
        first_s = self.engine.latency.predict_stage(0)
        if first_s <= budget_s:
            return
        self._warned_budget = b.text
        mode = self.config.mode
        then = ("answering from the first exit" if mode == "adaptive"
                else f"mode {mode} does not stop early, so frames will miss it")
        log.warning("budget %s cannot be met: the first exit alone takes %.3f ms here; %s",
                    b.text, first_s * 1e3, then)

    @property
    def warned_infeasible(self) -> bool:
        return self._warned_budget is not None

    def _status(self, elapsed: float) -> None:
        s = self.stats
        n = s.frames
        ex = "/".join(str(c) for c in s.exits)
        line = (f"[{elapsed:7.1f}s] frames {n}  exits {ex}  p50 {s.latency.quantile(0.5):.2f} ms  "
                f"p99 {s.latency.quantile(0.99):.2f} ms")
        if s.budget_frames:
            line += f"  hit {100 * s.deadline_hits / s.budget_frames:.1f}%"
        if s.labelled:
            line += f"  acc {100 * s.correct / s.labelled:.1f}%"
        if self._tty:
            self.status_stream.write("\r\x1b[K" + line[:200])
        else:
            self.status_stream.write(line + "\n")
        self.status_stream.flush()
