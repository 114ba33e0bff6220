"""Run-time audit, label-free: ``edge-ee run --audit 2%`` (with ``--audit-target``, ``--recalibrate``).

On a random fraction of the frames that were answered before the final exit, the audit also runs the whole
model on the same preprocessed input (``Engine.infer_all_exits``) and compares the answer given with the
final exit's. That gives, without labels:

* the *conditional* disagreement ``d`` = P(answer != final | answered early), estimated from the audited
  frames (each early frame is audited independently with the same probability, so they are a uniform sample);
* the fraction ``f`` of frames answered early, counted exactly;
* the policy's disagreement with the final exit ``D = f x d`` (frames answered by the final exit agree with
  it by definition), and the agreement ``1 - D``.

**Drift alarm.** The alarm tests ``D > target`` with exact binomial tails on *sliding windows* of the last
25, 50, 100, 200, 400 and 800 audits (short windows react to an abrupt change, long ones to a small one;
``f`` is counted over the frames each window spans). After every audit, each window is tested at level
``false_alarm / 6`` (Bonferroni over the six lengths): the alarm goes off when, for some window, a
disagreement at the target would make that many disagreements less likely than that level, i.e. when the
window's one-sided Clopper-Pearson lower bound on ``D`` exceeds the target. So each check raises a false
alarm with probability at most ``false_alarm`` (default 1e-3) while the disagreement stays at or below the
target; checks are repeated after every audit, so over a stream of N checks the expected number of false
alarms is at most ``N x false_alarm`` (windows overlap, so the true rate is far lower). This is the
sliding-window design, not a confidence sequence: a confidence sequence over the whole stream would have
to out-vote all the clean history before it sees a change.

**Boost.** A 2% audit sees few frames: after a change that sends most inputs to the final exit, a few
dozen audits in 3,000 frames, too few to tell a 4% disagreement from a 1% one at that false-alarm level.
The share of frames answered early is known for every frame, and a change of the inputs usually moves it:
when the share over the last 300 frames differs from the 5,000 before them (exact binomial test at 1e-4,
every 50 frames), the audit rate rises ``boost``-fold (default 10: 20%) for ``boost_frames`` (3,000) frames,
tested by a second monitor of its own (same windows and level); the base monitor keeps its uniform 2%
sample. One uniform draw per frame decides both, so the base audits are part of the boosted ones. The
extra audits are counted in the reported cost like every other.

The alarm stays on until the thresholds change (the windows restart), or until the base monitor's longest
window, a full 800 audits after the last window that exceeded the target, lies below it (90% interval).
The reported estimate (telemetry, summary, metrics) is ``D`` over the longest window with a Wilson interval
(at ``confidence``, 90%): the boosted monitor's while a boost runs (its audits all follow the change), else
the base monitor's.

**Recalibration** (``--recalibrate``): on an alarm, every input goes to the final exit at once (the safe point)
and any frame is audited with the boosted probability until ``recal_samples`` (1,000) are collected: every
exit's output on a uniform sample of the frames as they are now. The calibration core's label-free
risk-controlled selection (``select_risk_controlled``: Learn-then-Test along the frontier, the target at
``confidence``) on that sample sets the new thresholds ("never exit early" when nothing is certified); each
step is logged. The audit windows restart with the new thresholds.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.engine import Result
from ..core.exit_rules import get_rule
from ..errors import UsageError
from ..pipeline.runner import ExtraWork, RunHook, Runner
from ..sources.base import Frame
from .risk import binom_cdf
from .select import MIN_FRAMES, select_risk_controlled
from .table import ExitTable

log = logging.getLogger("edge_ee.audit")

WINDOWS = (25, 50, 100, 200, 400, 800)
FALSE_ALARM = 1e-3


# ---------------------------------------------------------------------------------------------- settings


def parse_audit_fraction(text: str | float) -> float:
    """``--audit``: ``2%`` or ``0.02`` -> 0.02, above 0 and at most 100% (``--audit-target`` is parsed like
    ``--target-drop``, by :func:`edge_ee.calibration.select.parse_fraction`)."""
    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise UsageError(f"--audit {text!r}: give a percentage (2%) or a fraction (0.02)") from None
    if not (math.isfinite(v) and 0 < v <= 1):
        raise UsageError(f"--audit {text!r} must be above 0 and at most 100%",
                         "e.g. --audit 2% (audit 2% of the frames answered early)")
    return v


@dataclass(frozen=True)
class AuditSettings:
    fraction: float  # of the frames answered early that are audited
    target: float  # largest acceptable disagreement with the final exit (fraction of all frames)
    target_source: str = "--audit-target"  # where the target came from (for the log and the summary)
    recalibrate: bool = False
    confidence: float = 0.9  # of the reported interval and of the recalibration's guarantee
    false_alarm: float = FALSE_ALARM  # per check, over all windows
    windows: tuple[int, ...] = WINDOWS
    boost: float = 10.0  # audit rate multiplier after the share of early answers moved
    boost_frames: int = 3000  # for this many frames
    recal_samples: int = 1000  # --recalibrate: frames audited after an alarm before the thresholds are re-selected
    seed: int | None = None


def default_target(manifest: Any, profile: dict[str, Any] | None) -> tuple[float, str]:
    """The disagreement target when ``--audit-target`` is not given, from the calibration of the thresholds in
    force: the device profile's when the run uses one, else the bundle's.

    * a label-free calibration (its risk *is* the disagreement with the final exit): its target;
    * a calibration on labelled accuracy: the target drop plus the disagreement the calibration measured at the
      chosen point. Disagreement is not the risk that calibration controlled (an early exit may be right where the
      final one is wrong), and the calibration frames already showed that much of it; the alarm goes off when
      the share of answers that differ from the final exit's grows by more than the target drop."""
    if profile is not None:
        g = profile.get("guarantee") or {}
        chosen = profile.get("chosen") or {}
        labelled = g.get("risk") == "accuracy_drop" if g else profile.get("quality_metric") == "accuracy"
        t, agree, where = profile.get("target_drop"), chosen.get("agreement"), "the device profile"
    else:
        cal = manifest.calibration
        g = cal.guarantee.to_dict() if cal.guarantee is not None else {}
        labelled = g.get("risk") == "accuracy_drop" if g else cal.full_accuracy is not None
        agree = cal.chosen.agreement if cal.chosen is not None else None
        t, where = cal.target_drop, "the bundle's calibration"
    if g.get("target") is not None:
        t = g["target"]
    if not (isinstance(t, (int, float)) and 0 < t < 1):
        raise UsageError("--audit needs a disagreement target: neither a device profile nor the bundle's calibration "
                         "gives one", "give it with --audit-target, e.g. --audit-target 1%")
    if not labelled:
        return float(t), f"{where}'s label-free target"
    if isinstance(agree, (int, float)) and 0 <= 1 - agree < 1 - t:
        return float(t) + (1.0 - float(agree)), (f"{where}: target drop {100 * t:.3g}% + the {100 * (1 - agree):.3g}% "
                                                  "disagreement its calibration measured")
    return float(t), f"{where}'s target drop"


# ---------------------------------------------------------------------------------------------- statistics


def binom_sf(x: int, n: int, p: float) -> float:
    """P(Bin(n, p) >= x)."""
    return 1.0 - binom_cdf(x - 1, n, p) if x > 0 else 1.0


def wilson(x: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion (two-sided, ``confidence``); (0, 1) without data."""
    if n <= 0:
        return 0.0, 1.0
    z = _z(0.5 + confidence / 2)
    p = x / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _z(q: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    if q < 0.02425:
        t = math.sqrt(-2 * math.log(q))
        return (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) / \
            ((((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1)
    if q > 1 - 0.02425:
        return -_z(1 - q)
    t = q - 0.5
    r = t * t
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * t / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


@dataclass(frozen=True)
class Estimate:
    """Disagreement with the final exit over one window of audits."""

    samples: int  # audited frames
    disagreements: int
    frames: int  # frames the window spans
    early_fraction: float  # of those frames, answered before the final exit (exact)
    disagreement: float  # D = early_fraction x disagreements / samples
    lower: float  # interval on D (Wilson at the monitor's confidence)
    upper: float

    @property
    def agreement(self) -> float:
        return 1.0 - self.disagreement


class DisagreementMonitor:
    """Sliding-window estimate of the disagreement with the final exit and its alarm test (module docstring).

    Feed every frame of its span to :meth:`count` (early or not) and each of those frames it audited to
    :meth:`add` (after counting the frame); :meth:`add` returns the shortest window that says the disagreement
    exceeds the target, if any. The audited frames' outputs are kept (``samples``) for recalibration."""

    def __init__(self, target: float, false_alarm: float = FALSE_ALARM, windows: Sequence[int] = WINDOWS,
                 confidence: float = 0.9) -> None:
        if not 0 < target < 1:
            raise ValueError("target must be in (0, 1)")
        self.target = target
        self.windows = tuple(sorted(windows))
        self.level = false_alarm / len(self.windows)  # per window and check
        self.confidence = confidence
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self.early = 0
        self.n = 0
        self.disagreements = 0
        # (frames, early, disagreements) counted when each audit was added, oldest first; one more than the
        # longest window so that every window's span starts right after the audit before it
        self._marks: deque[tuple[int, int, int]] = deque([(0, 0, 0)], maxlen=self.windows[-1] + 1)
        self.samples: deque[Any] = deque(maxlen=self.windows[-1])

    def count(self, early: bool) -> None:
        self.frames += 1
        self.early += int(early)

    def _span(self, w: int) -> tuple[int, int, int, int]:
        """(audits, disagreements, frames, early frames) of the last ``w`` audits (fewer at the start)."""
        m = self._marks
        w = min(w, len(m) - 1)
        f0, e0, d0 = m[-1 - w]
        return w, self.disagreements - d0, self.frames - f0, self.early - e0

    def p_value(self, w: int) -> float:
        """P(at least this many disagreements in the window | D = target): small = D above the target."""
        n, x, frames, early = self._span(w)
        if n == 0 or early == 0:
            return 1.0
        p0 = self.target * frames / early  # the conditional disagreement at which D = target
        return 0.0 if p0 >= 1.0 else binom_sf(x, n, p0)

    def exceeds(self, w: int) -> bool:
        """The window's test: ``p_value(w) <= level`` (no p-value needed at or below the expected count, where
        it is above one half)."""
        n, x, frames, early = self._span(w)
        if n == 0 or early == 0 or x <= n * self.target * frames / early:
            return False
        return self.p_value(w) <= self.level

    def add(self, disagree: bool, sample: Any = None) -> int | None:
        """One audited frame (already counted). Returns the shortest window that now exceeds the target."""
        self.n += 1
        self.disagreements += int(disagree)
        self._marks.append((self.frames, self.early, self.disagreements))
        self.samples.append(sample)
        return next((w for w in self.windows if self.exceeds(w)), None)

    def estimate(self, w: int | None = None) -> Estimate:
        n, x, frames, early = self._span(self.windows[-1] if w is None else w)
        f = early / frames if frames else 0.0
        lo, hi = wilson(x, n, self.confidence)
        d = f * x / n if n else 0.0
        return Estimate(n, x, frames, f, d, f * lo, f * hi if n else f)


class ShiftDetector:
    """Label-free sign that the inputs changed: the share of frames answered early in the last ``recent``
    frames differs from that of the ``reference`` frames before them (two-sided exact binomial test at
    ``level``, every ``step`` frames, once ``warmup`` frames were seen since the last restart)."""

    def __init__(self, recent: int = 300, reference: int = 5000, step: int = 50, warmup: int = 500,
                 level: float = 1e-4) -> None:
        self.recent, self.reference, self.step, self.warmup, self.level = recent, reference, step, warmup, level
        self.restart()

    def restart(self) -> None:
        self.frames = 0
        self.early = 0
        self._marks: deque[tuple[int, int]] = deque([(0, 0)], maxlen=(self.recent + self.reference) // self.step + 1)
        self.last_shares = (math.nan, math.nan)  # (reference, recent) share of early answers at the last test

    def count(self, early: bool) -> bool:
        """One frame; True when the test says the early share moved (checked every ``step`` frames)."""
        self.frames += 1
        self.early += int(early)
        if self.frames % self.step:
            return False
        self._marks.append((self.frames, self.early))
        if self.frames < self.warmup + self.recent:
            return False
        m = self._marks
        r = self.recent // self.step
        f1, e1 = m[-1 - r]
        f0, e0 = m[0]
        if f1 <= f0:
            return False
        ref = (e1 - e0) / (f1 - f0)
        x = self.early - e1
        n = self.frames - f1
        if not 0 < ref < 1:
            return False
        self.last_shares = (ref, x / n)
        p = 2 * min(binom_sf(x, n, ref), binom_cdf(x, n, ref))
        return p <= self.level


# ---------------------------------------------------------------------------------------------- recalibration


@dataclass
class AuditSample:
    """One audited frame: every exit's logits and learned confidence, and the answer given."""

    logits: list[np.ndarray]
    confidence: list[float | None]
    exit_index: int
    label_index: int

    @property
    def final_label(self) -> int:
        return int(np.argmax(self.logits[-1]))

    @property
    def disagree(self) -> bool:
        return self.label_index != self.final_label


@dataclass
class Recalibration:
    thresholds: list[float]
    disagreement: float  # of the chosen point on the audited frames that tested it
    upper: float  # its upper confidence bound (NaN when nothing was tested)
    samples: int
    certified: bool  # an early-exit point passed (else: never exit early)
    note: str = ""


def select_from_audits(samples: Sequence[AuditSample], rules: Sequence[str], temperatures: Sequence[float],
                       cum_macs: Sequence[float], target: float, confidence: float) -> Recalibration:
    """Label-free risk-controlled thresholds from frames audited while every input went to the final exit, a
    uniform sample of all frames: the calibration core's Learn-then-Test selection on their outputs."""
    never = [float(get_rule(r).never) for r in rules[:-1]]
    n = len(samples)
    if n < MIN_FRAMES:
        return Recalibration(never, 0.0, math.nan, n, False,
                             f"{n} audited frames are too few for a guarantee (at least {MIN_FRAMES}): "
                             "never exit early")
    k = len(rules)
    logits = [np.stack([np.asarray(sm.logits[j]).reshape(-1) for sm in samples]) for j in range(k)]
    confs = [np.array([sm.confidence[j] for sm in samples], np.float64) if samples[0].confidence[j] is not None
             else None for j in range(k)]
    table = ExitTable.from_outputs(list(rules), list(temperatures), logits, confs, list(cum_macs))
    sel = select_risk_controlled(table, target, confidence)
    g = sel.guarantee
    assert g is not None
    th = [float(t) for t in sel.point.thresholds] if g.certified else never
    return Recalibration(th, g.empirical_risk, g.upper_bound, n, g.certified, "" if g.certified else g.describe())


# ---------------------------------------------------------------------------------------------- run hook


def _audit_macs(manifest: Any) -> int:
    """MACs of ``Engine.infer_all_exits``: every segment and every head."""
    return sum(s.segment.macs + (s.head.macs if s.head is not None else 0) for s in manifest.stages)


@dataclass(frozen=True)
class Alarm:
    monitor: DisagreementMonitor
    window: int  # audits
    estimate: Estimate


class Auditor:
    """The audit's decisions, without an engine (the run hook drives it; benchmarks and tests simulate it).

    For every answered frame: if it was answered early, :meth:`draw` says whether to audit it; then
    :meth:`frame` takes the outcome (the audited sample or None) and returns an :class:`Alarm` when one is
    raised. A base monitor sees the audits at the base rate; while the share of early answers has just moved
    (:class:`ShiftDetector`), a second monitor sees the audits at ``boost`` x the rate, for ``boost_frames``
    frames. Each monitor's audits are a uniform sample of the early frames of its own span, and one uniform
    draw per frame decides both (a base audit is also a boosted one)."""

    def __init__(self, settings: AuditSettings) -> None:
        self.settings = s = settings
        self.base = DisagreementMonitor(s.target, s.false_alarm, s.windows, s.confidence)
        self.boost: DisagreementMonitor | None = None
        self.shift = ShiftDetector()
        self.boost_left = 0
        self._rng = random.Random(s.seed)
        self._base_draw = False
        self.alarm: Alarm | None = None
        self._alarm_mark = 0  # base audits when a window last exceeded the target
        self.samples = 0  # over the whole run (the monitors restart with new thresholds)
        self.disagreements = 0
        self.alarms = 0
        self.boosts = 0
        self.events: list[str] = []  # boost started/ended, alarm cleared: for the hook's log

    @property
    def rate(self) -> float:
        """Audit probability of a frame answered early, now."""
        f = self.settings.fraction
        return min(1.0, f * self.settings.boost) if self.boost is not None else f

    def estimate(self) -> Estimate:
        """The reported estimate: the boosted monitor's while it runs (its span starts at the change), else the
        base monitor's; the longest window of either."""
        m = self.boost if self.boost is not None and self.boost.n else self.base
        return m.estimate()

    def draw(self) -> bool:
        """For a frame answered early: audit it?"""
        u = self._rng.random()
        self._base_draw = u < self.settings.fraction
        return u < self.rate

    def restart(self) -> None:
        """New thresholds: a new policy, so every window starts again (and the alarm clears)."""
        self.alarm = None
        self.base.reset()
        self.boost = None
        self.shift.restart()

    def frame(self, early: bool, sample: AuditSample | None = None) -> Alarm | None:
        """One answered frame, with its audited sample when :meth:`draw` said so."""
        self.base.count(early)
        if self.boost is not None:
            self.boost.count(early)
        raised = None
        if sample is not None:
            raised = self._audited(sample)
        if self.boost is not None:
            self.boost_left -= 1
            if self.boost_left <= 0:
                self.boost = None
                self.shift.restart()  # the new share of early answers becomes the reference
        elif self.shift.count(early):
            s = self.settings
            self.boost = DisagreementMonitor(s.target, s.false_alarm, s.windows, s.confidence)
            self.boost_left = s.boost_frames
            self.boosts += 1
            ref, now = self.shift.last_shares
            self.events.append(f"the share of early answers moved ({100 * ref:.1f}% -> {100 * now:.1f}% over the "
                               f"last {self.shift.recent} frames): auditing {100 * self.rate:.3g}% of the early "
                               f"answers for the next {s.boost_frames} frames")
        return raised

    def _audited(self, sample: AuditSample) -> Alarm | None:
        d = sample.disagree
        fired: tuple[DisagreementMonitor, int] | None = None
        if self._base_draw:
            w = self.base.add(d, sample)
            if w is not None:
                fired = (self.base, w)
        if self.boost is not None:
            w = self.boost.add(d, sample)
            if w is not None and fired is None:
                fired = (self.boost, w)
        self.samples += 1
        self.disagreements += int(d)
        if fired is not None:
            self._alarm_mark = self.base.n
            if self.alarm is None:
                self.alarm = Alarm(fired[0], fired[1], fired[0].estimate(fired[1]))
                self.alarms += 1
                return self.alarm
        elif (self.alarm is not None and self.base.n - self._alarm_mark >= self.base.windows[-1]
              and self.base.estimate().upper < self.settings.target):
            self.alarm = None
            self.events.append("drift alarm cleared")
        return None


class AuditHook(RunHook):
    """``edge-ee run --audit``: audits frames answered early (:class:`Auditor`), logs the drift alarm and
    (``recalibrate``) moves to safe thresholds. Telemetry of every frame gains ``audited`` and ``drift_alarm``;
    an audited frame also ``audit_final_label``, ``audit_agree``, ``audit_ms``, ``audit_macs`` (counted in its
    ``macs``, ``infer_ms``, ``total_ms`` and energy) and the running estimate ``audit_agreement``,
    ``audit_agreement_lower``/``_upper``, ``audit_disagreement``, ``audit_samples``.

    Recalibration: on an alarm, every input goes to the final exit at once (the safe point) and any frame is
    audited with the boosted probability until ``recal_samples`` are collected, a uniform sample of the frames
    as they are now; then the calibration core's label-free risk-controlled selection on them sets the
    thresholds (``recalibrating`` in telemetry meanwhile; each step logged)."""

    phase = "measure"

    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        self.auditor = Auditor(settings)
        self._rng = random.Random(None if settings.seed is None else settings.seed + 1)
        self._pending: AuditSample | None = None
        self._pending_ms = 0.0
        self._thresholds: list[float] | None = None
        self._macs = 0
        self._collect: list[AuditSample] | None = None  # recalibration under way
        self._collect_from: int | None = None
        self.audit_ms = 0.0
        self.recalibrations: list[dict[str, Any]] = []
        self.status_version = 0  # bumped when status_note() changes (systemd sends STATUS= at once)

    @property
    def alarm_on(self) -> bool:
        return self.auditor.alarm is not None or self._collect is not None

    def on_start(self, runner: Runner) -> None:
        self._macs = _audit_macs(runner.engine.manifest)
        self._thresholds = list(runner.engine.thresholds)
        log.info("audit: %.3g%% of the frames answered early, disagreement target %.3g%% (%s)",
                 100 * self.settings.fraction, 100 * self.settings.target, self.settings.target_source)

    def extra_work(self, runner: Runner, x: np.ndarray, result: Result) -> ExtraWork | None:
        engine = runner.engine
        if self._collect is not None:  # recalibrating: any frame, at the boosted rate
            if self._rng.random() >= min(1.0, self.settings.fraction * self.settings.boost):
                return None
        elif result.exit_index >= engine.num_stages - 1 or not self.auditor.draw():
            return None
        t0 = time.perf_counter()
        a = engine.infer_all_exits(x)
        t1 = time.perf_counter()
        self._pending = AuditSample(a.logits, a.confidence, result.exit_index, result.label_index)
        self._pending_ms = (t1 - t0) * 1e3
        return ExtraWork("audit", t0, t1, self._macs)

    def on_result(self, runner: Runner, frame: Frame, result: Result, record: dict[str, Any]) -> None:
        engine = runner.engine
        au = self.auditor
        if engine.thresholds != self._thresholds:  # reload or controller: a new policy
            self._thresholds = list(engine.thresholds)
            if self.alarm_on:
                self.status_version += 1
            self._collect = None
            au.restart()
        sample, self._pending = self._pending, None
        record["audited"] = sample is not None
        if sample is not None:
            self.audit_ms += self._pending_ms
            record.update({"audit_final_label": engine.manifest.labels[sample.final_label],
                           "audit_agree": not sample.disagree, "audit_ms": round(self._pending_ms, 4),
                           "audit_macs": self._macs})
        if self._collect is not None:
            if sample is not None:
                self._collect.append(sample)
            record["recalibrating"] = len(self._collect)
            if len(self._collect) >= self.settings.recal_samples:
                self._finish_recalibration(runner, frame.index)
            record["drift_alarm"] = self.alarm_on
            return
        had = au.alarm is not None
        raised = au.frame(result.exit_index < engine.num_stages - 1, sample)
        if sample is not None:
            e = au.estimate()
            record.update({
                "audit_agreement": round(e.agreement, 6), "audit_agreement_lower": round(1 - e.upper, 6),
                "audit_agreement_upper": round(1 - e.lower, 6), "audit_disagreement": round(e.disagreement, 6),
                "audit_samples": e.samples})
        for ev in au.events:
            (log.warning if ev.startswith("drift") else log.info)("audit: %s", ev)
        au.events.clear()
        if (au.alarm is not None) != had:
            self.status_version += 1
        if raised is not None:
            log.warning("audit: DRIFT ALARM at frame %d: the disagreement with the final exit exceeds the target "
                        "(last %d audits: %s)", frame.index, raised.estimate.samples,
                        self._describe(raised.estimate))
            if self.settings.recalibrate:
                self._start_recalibration(runner, frame.index)
        record["drift_alarm"] = self.alarm_on

    def _describe(self, e: Estimate) -> str:
        c = self.settings.confidence
        return (f"{100 * e.disagreement:.2f}% ({100 * c:.0f}% interval {100 * e.lower:.2f}-{100 * e.upper:.2f}%, "
                f"{e.samples} audits over {e.frames} frames, {100 * e.early_fraction:.1f}% answered early; "
                f"target {100 * self.settings.target:.2f}%)")

    def _set(self, runner: Runner, thresholds: list[float]) -> None:
        runner.engine.set_thresholds(thresholds)
        self._thresholds = list(runner.engine.thresholds)
        self.auditor.restart()  # a new policy: every window starts again
        self.status_version += 1

    def _start_recalibration(self, runner: Runner, frame_index: int) -> None:
        engine = runner.engine
        k = engine.num_stages - 1
        self._collect, self._collect_from = [], frame_index
        self.recalibrations.append({"frame": frame_index, "from": list(engine.thresholds), "to": None})
        self._set(runner, [float(get_rule(r).never) for r in engine.rules[:k]])
        rate = min(1.0, self.settings.fraction * self.settings.boost)
        log.warning("audit: recalibrating: every input goes to the final exit (the safe point) while %.3g%% of the "
                    "frames are audited, until %d are collected", 100 * rate, self.settings.recal_samples)

    def _finish_recalibration(self, runner: Runner, frame_index: int) -> None:
        engine = runner.engine
        m = engine.manifest
        samples, self._collect = self._collect or [], None
        cum_macs = np.cumsum([s.segment.macs + (s.head.macs if s.head else 0) for s in m.stages]).astype(float)
        sel = select_from_audits(samples, engine.rules, [h.temperature if h is not None else 1.0 for h in engine.heads],
                                 cum_macs, self.settings.target, self.settings.confidence)
        self._set(runner, sel.thresholds)
        self.recalibrations[-1].update({"done": frame_index, "to": list(sel.thresholds), "samples": sel.samples,
                                        "disagreement_on_audits": sel.disagreement, "upper_bound": sel.upper,
                                        "certified": sel.certified, "note": sel.note})
        old = self.recalibrations[-1]["from"]
        log.warning("audit: recalibrated at frame %d on %d frames audited since the alarm (no labels, %.0f%% "
                    "confidence, target %.2f%%): thresholds %s -> %s%s", frame_index, sel.samples,
                    100 * self.settings.confidence, 100 * self.settings.target, [round(t, 4) for t in old],
                    [round(t, 4) for t in sel.thresholds],
                    f" (disagreement {100 * sel.disagreement:.2f}%, upper bound {100 * sel.upper:.2f}%)"
                    if sel.certified else f" ({sel.note})")

    def status_note(self) -> str | None:
        """For systemd's STATUS= line while the alarm is on."""
        if self._collect is not None:
            return (f"DRIFT ALARM: recalibrating ({len(self._collect)} of {self.settings.recal_samples} frames "
                    "audited; every input to the final exit meanwhile)")
        a = self.auditor.alarm
        if a is None:
            return None
        return (f"DRIFT ALARM: disagreement with the final exit {100 * a.estimate.disagreement:.2f}% > target "
                f"{100 * self.settings.target:.2f}%")

    def on_stop(self, runner: Runner, summary: dict[str, Any]) -> None:
        au = self.auditor
        e = au.estimate()
        s = self.settings
        summary["audit"] = {
            "fraction": s.fraction, "target": s.target, "target_source": s.target_source,
            "confidence": s.confidence, "false_alarm_per_check": s.false_alarm, "windows": list(s.windows),
            "samples": au.samples, "disagreements": au.disagreements, "boosts": au.boosts,
            "audit_ms_total": self.audit_ms, "audit_macs_each": self._macs,
            "window": {"samples": e.samples, "frames": e.frames, "early_fraction": e.early_fraction,
                       "disagreement": e.disagreement, "lower": e.lower, "upper": e.upper,
                       "agreement": e.agreement},
            "alarm": self.alarm_on, "alarms": au.alarms, "recalibrations": self.recalibrations,
            "recalibrating": None if self._collect is None else len(self._collect),
            "recal_samples": s.recal_samples,
        }


def format_audit(summary: dict[str, Any]) -> str:
    """The summary line(s) of the audit."""
    a = summary.get("audit")
    if not a:
        return ""
    w = a["window"]
    c = 100 * a["confidence"]
    if w["samples"]:
        est = (f"agreement with the final exit {100 * w['agreement']:.2f}% ({c:.0f}% interval "
               f"{100 * (1 - w['upper']):.2f}-{100 * (1 - w['lower']):.2f}%; last {w['samples']} audits over "
               f"{w['frames']} frames, {100 * w['early_fraction']:.1f}% answered early)")
    else:
        est = "no frame audited yet"
    line = (f"audit: {a['samples']} frames audited ({100 * a['fraction']:.3g}% of early answers, "
            f"{a['disagreements']} disagreed), {est}; target disagreement {100 * a['target']:.2f}%: "
            + (f"DRIFT ALARM ({a['alarms']} raised)" if a["alarm"] else
               f"no alarm now ({a['alarms']} raised)" if a["alarms"] else "no alarm"))
    for r in a["recalibrations"]:
        if r.get("to") is None:
            line += (f"\naudit: recalibrating since the alarm at frame {r['frame']}: {a['recalibrating']} of "
                     f"{a['recal_samples']} frames audited so far; every input to the final exit meanwhile")
            continue
        line += (f"\naudit: recalibrated at frame {r['done']} on {r['samples']} frames audited after the alarm at "
                 f"frame {r['frame']}: thresholds {[round(t, 4) for t in r['from']]} -> "
                 f"{[round(t, 4) for t in r['to']]}"
                 + (f" (disagreement {100 * r['disagreement_on_audits']:.2f}%, upper bound "
                    f"{100 * r['upper_bound']:.2f}%)" if r["certified"] else f" ({r['note']})"))
    return line
