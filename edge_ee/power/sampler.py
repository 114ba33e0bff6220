"""Background sampling of a power source and energy integration over arbitrary time windows.

Three parts: :class:`PowerSampler` (this module) reads the source in a thread at its own update rate (never
faster than ``source.update_interval_s``), unwraps energy counters (``energy_range_j`` added back when a reading
goes down) and falls back to the CPU-utilisation estimate when the source fails; :class:`~edge_ee.power.curve.
EnergyCurve` keeps the samples and integrates any window (its public API: ``energy_between``, ``span``,
``integrate``, ``covered``, ``newest_time``); :class:`~edge_ee.power.baseline.IdleBaseline` is the idle power
over time. Times are the sampler clock (default ``time.perf_counter``, the clock of the engine; on Linux
CLOCK_MONOTONIC, the same as ``time.monotonic``).

A source failing ``max_failures`` times in a row (e.g. the sensor disappeared: OSError) is replaced by the
CPU-utilisation estimate with one warning; windows reaching past that moment are flagged ``estimated``.

*The* energy of an inference or a stage is its energy above the idle baseline (``marginal_j``, the
integral of power minus the baseline over the window); the total including idle power is kept
beside it (``energy_j``). ``marginal_j`` itself may come out below zero (a window where the device drew
less than the baseline: sensor noise, or the estimate's CPU-time granularity for windows shorter than
its update period); what is *reported* never is: :func:`clamp_above_idle` raises it to 0 and says so.
The baseline is a piecewise-constant function of time: a fallback source
brings its own idle power from the moment it takes over.

Right after an inference the newest sample is usually older than the end of its window, so its last
part holds the newest power (``extrapolated``). :class:`WindowIntegrator` queues windows and
integrates each one once a sample at or after its end exists (and, at the end, after waiting for
one): every window is then covered by real samples.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import CounterUnwrapper, PowerSource
from .baseline import IdleBaseline
from .curve import EnergyCurve

log = logging.getLogger("edge_ee.power")


@dataclass(frozen=True)
class EnergyWindow:
    """Energy over [t0, t1] and where it came from."""

    t0: float
    t1: float
    energy_j: float  # total, idle power included
    baseline_w: float | None  # idle baseline in force at t1
    marginal_j: float | None  # above the idle baseline: energy_j - integral of the baseline; None without one
    estimated: bool
    source: str  # source kind, e.g. "jetson", "estimate"
    rail: str
    extrapolated: bool  # not covered by samples (reaches past the newest or before the oldest): power held

    @property
    def mean_power_w(self) -> float:
        dt = self.t1 - self.t0
        return self.energy_j / dt if dt > 0 else float("nan")

    def to_telemetry(self) -> dict[str, Any]:
        """JSON-friendly fields for one telemetry record (energies in mJ, rounded to 0.1 uJ):
        ``energy_mj`` above the idle baseline (None without a baseline; never negative: ``energy_clamped``
        is true when it was raised to 0), ``energy_total_mj`` with idle power included, ``power_source``,
        ``power_rail``, ``energy_estimated``, ``energy_extrapolated``."""
        m = self.marginal_j
        return {
            "energy_mj": None if m is None else round_mj(max(m, 0.0) * 1e3),
            "energy_clamped": m is not None and m < 0.0,
            "energy_total_mj": round_mj(self.energy_j * 1e3),
            "power_source": self.source,
            "power_rail": self.rail,
            "energy_estimated": self.estimated,
            "energy_extrapolated": self.extrapolated,
        }


def round_mj(x: float | None, nd: int = 4) -> float | None:
    """Round for telemetry: None for missing or non-finite values, and never ``-0.0``.

    A float with ``nd == 4`` (every telemetry value; 3+ per inference) mostly skips ``round(x, 4)``'s
    decimal conversion (~3x slower) with the same result, bit for bit: ``round(x, 4)`` is the double
    nearest to N / 10^4, N = x * 10^4 (exact) rounded to an integer. y = x * 1e4 is off by at most
    |y| * 2^-53 < 1.2e-5 for |y| < 1e11, so with c = round(y) and y - c (exact) within 0.4999 of 0, the
    exact x * 10^4 is within 0.5 of c as well: N = c, and c / 1e4 (a correctly rounded division of exact
    operands) is that nearest double; c = 0 gives 0.0, never -0.0. Near a half-way point, and for NaN,
    infinities and huge values, ``round`` itself decides."""
    if nd == 4 and type(x) is float:
        y = x * 1e4
        if -1e11 < y < 1e11:
            c = round(y)
            d = y - c
            if -0.4999 < d < 0.4999:
                return c / 1e4
    if x is None or not math.isfinite(x):
        return None
    return round(x, nd) + 0.0  # + 0.0 turns -0.0 into 0.0


def clamp_above_idle(total: float | None, pieces: list[float | None]) -> tuple[float | None, list[float | None],
                                                                             bool]:
    """Energy above idle as reported: never negative, and the pieces (stages) still add up to the total.

    A negative total is reported as 0 with every piece 0; otherwise negative pieces become 0 and the
    positive ones are scaled down so that they add up to the total again. Returns (total, pieces,
    clamped), ``clamped`` true when anything was raised. ``None`` (no baseline) stays ``None``."""
    if total is None:
        return None, pieces, False
    if total < 0.0:
        return 0.0, [None if p is None else 0.0 for p in pieces], True
    if all(p is None or p >= 0.0 for p in pieces):
        return total, pieces, False
    pos = math.fsum(p for p in pieces if p is not None and p > 0.0)
    f = total / pos if pos > 0.0 else 0.0
    return total, [None if p is None else (p * f if p > 0.0 else 0.0) for p in pieces], True


def _default_fallback() -> PowerSource:
    from .backends.estimate import EstimatedSource

    return EstimatedSource()


class PowerSampler:
    """Samples ``source`` in a background thread into an :class:`~edge_ee.power.curve.EnergyCurve` (``curve``);
    with the :class:`~edge_ee.power.baseline.IdleBaseline` (``idle``) it answers the energy of any time window."""

    def __init__(self, source: PowerSource, *, period_s: float | None = None, min_period_s: float = 0.01,
                 capacity: int = 65536, clock: Callable[[], float] = time.perf_counter,
                 fallback: Callable[[], PowerSource] | None = _default_fallback, max_failures: int = 3) -> None:
        self.clock = clock
        self.source = source
        self._requested_period = period_s
        self._min_period = min_period_s
        self.period_s = self._period_for(source)
        self._fallback = fallback
        self._max_failures = max(1, max_failures)
        self.curve = EnergyCurve(capacity)
        self.idle = IdleBaseline()
        self._prev_energy: tuple[float, float] | None = None
        self._unwrap = CounterUnwrapper(source.energy_range_j)
        self._failures = 0
        self.estimated_since: float | None = -math.inf if source.estimated else None
        self.failed_sources: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dead = False  # no source left

    # ---- configuration -------------------------------------------------------------------------
    def _period_for(self, src: PowerSource) -> float:
        want = self._requested_period if self._requested_period is not None else src.update_interval_s
        return max(want, src.update_interval_s, self._min_period)

    @property
    def baseline_w(self) -> float | None:
        """Idle baseline in force now [W] (None until measured or set)."""
        return self.idle.current_w

    @property
    def estimated(self) -> bool:
        """True once any sample came from an estimate (from ``estimated_since`` on)."""
        return self.estimated_since is not None

    def info(self) -> dict[str, Any]:
        d = self.source.describe()
        d.update(period_s=self.period_s, baseline_w=self.baseline_w,
                 samples=min(self.curve.count, self.curve.capacity), estimated=self.estimated,
                 failed_sources=list(self.failed_sources))
        return d

    # ---- sampling ------------------------------------------------------------------------------
    def sample_once(self) -> bool:
        """Take one reading now (the thread calls this; tests may call it directly). False on failure."""
        if self._dead:
            return False
        src = self.source
        ta = self.clock()
        try:
            v = src.read()
        except Exception as e:  # OSError (sensor gone), parse errors, dead subprocess...
            self._failures += 1
            log.debug("power: read of %s failed (%d): %s", src.kind, self._failures, e)
            if self._failures >= self._max_failures:
                self._switch(e, ta)
            return False
        t = 0.5 * (ta + self.clock())  # middle of the read (vcgencmd spawns a process)
        self._failures = 0
        if not math.isfinite(v):
            return False
        self._ingest(src, t, float(v))
        return True

    def _switch(self, err: BaseException, t: float) -> None:
        old = self.source
        self.failed_sources.append(f"{old.kind} ({old.rail}): {err}")
        try:
            old.close()
        except Exception:  # pragma: no cover - closing a broken source
            pass
        new: PowerSource | None = None
        if self._fallback is not None and not old.estimated:
            try:
                new = self._fallback()
            except Exception as e2:  # pragma: no cover - psutil broken
                log.error("power: the fallback estimate failed too: %s", e2)
        if new is None:
            log.warning("power: %s (%s) stopped working: %s; no more power samples (the last power is held)",
                        old.name, old.rail, err)
            self._dead = True
            return
        log.warning("power: %s (%s) stopped working: %s; switching to %s: energy from now on is ESTIMATED",
                    old.name, old.rail, err, new.name)
        with self.curve.lock:
            self.source = new
            self._prev_energy = None
            self._unwrap = CounterUnwrapper(new.energy_range_j)
            self._failures = 0
            if new.estimated and self.estimated_since is None:
                self.estimated_since = t
            self.period_s = self._period_for(new)
            # the measured baseline belongs to the lost sensor: the estimate's own idle power applies from now on
            idle = getattr(new, "idle_power_w", None)
            if idle is not None:
                self.idle.change_at(t, float(idle))

    def _ingest(self, src: PowerSource, t: float, v: float) -> None:
        curve = self.curve
        with curve.lock:
            if src is not self.source:
                return
            if src.quantity != "energy":
                curve.append_power(t, v)
                return
            e = self._unwrap(v)
            prev = self._prev_energy
            if prev is not None and t <= prev[0]:
                return
            self._prev_energy = (t, e)
            if prev is not None and e >= prev[1]:  # not the first reading, nor a counter reset
                curve.append_energy(prev[0], t, e - prev[1])

    # ---- thread --------------------------------------------------------------------------------
    def start(self) -> PowerSampler:
        """Take a first reading and start the sampling thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self.sample_once()
        self._thread = threading.Thread(target=self._run, name="edge-ee-power", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set() and not self._dead:
            self.sample_once()
            next_t += self.period_s
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind (slow read, suspended): do not burst
                next_t = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 2.0, close_source: bool = True) -> None:
        """Stop the thread and (by default) close the source; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if close_source:
            try:
                self.source.close()
            except Exception as e:  # pragma: no cover
                log.debug("power: closing %s: %s", self.source.kind, e)

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, t: float, timeout: float | None = None) -> bool:
        """Block until a sample at or after ``t`` exists (so a window ending at ``t`` is not
        extrapolated). False on timeout or when no thread is sampling."""
        if not self.running:
            return self.newest_time() >= t
        return self.curve.wait_for(t, timeout)

    # ---- queries -------------------------------------------------------------------------------
    def newest_time(self) -> float:
        """Time of the newest sample (-inf before the first); one attribute read, no lock needed."""
        return self.curve.newest_time

    def baseline_at(self, t: float) -> float | None:
        """Idle baseline [W] in force at time t (None without a baseline)."""
        return self.idle.at(t)

    def energy_between(self, t0: float, t1: float) -> float:
        """Energy [J] in [t0, t1] (sampler clock); NaN before the first power sample."""
        return self.curve.energy_between(t0, t1)

    def marginal_energy_between(self, t0: float, t1: float) -> float:
        """Energy above the idle baseline [J]: energy_between minus the baseline integrated over the
        window. May be slightly negative for windows where the device used less than the baseline (noise)."""
        if not self.idle:
            raise RuntimeError("no idle baseline: call measure_baseline() or set_baseline() first")
        return self.energy_between(t0, t1) - self.idle.energy(t0, t1)

    def power_at(self, x: float) -> float:
        """Mean power [W] over a tiny window around x (for display)."""
        h = max(self.period_s * 1e-3, 1e-6)
        return self.energy_between(x - h, x + h) / (2 * h)

    def _estimated_at(self, t1: float) -> bool:
        return self.estimated_since is not None and t1 > self.estimated_since

    def window(self, t0: float, t1: float) -> EnergyWindow:
        """:class:`EnergyWindow` for [t0, t1]: energy, marginal energy, estimated flag, source and rail."""
        (e0, e1), covered = self.curve.span((t0, t1))
        src = self.source
        ej = e1 - e0
        return EnergyWindow(t0, t1, ej, self.idle.at(t1), self.idle.above(t0, t1, ej), self._estimated_at(t1),
                            src.kind, src.rail, not covered)

    def split_window(self, boundaries: list[float]) -> tuple[EnergyWindow, list[float | None]]:
        """The window [b0, bn] and the energy above idle [J] of each piece [b_i, b_i+1] (None without a
        baseline), in one pass: each boundary's cumulative energy is computed once, under one lock (the
        per-inference path: one inference and its stages)."""
        t0, t1 = boundaries[0], boundaries[-1]
        es, covered = self.curve.span(boundaries)
        src = self.source
        ej = es[-1] - es[0]
        above = self.idle.above
        pieces = [above(boundaries[i], boundaries[i + 1], es[i + 1] - es[i]) for i in range(len(boundaries) - 1)]
        marginal = None if pieces[0] is None else math.fsum(pieces)  # type: ignore[arg-type]
        return EnergyWindow(t0, t1, ej, self.idle.at(t1), marginal, self._estimated_at(t1), src.kind, src.rail,
                            not covered), pieces

    def samples(self, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the buffered (times, powers), oldest first (for plots and tests)."""
        return self.curve.samples(last)

    # ---- baseline ------------------------------------------------------------------------------
    def known_baseline(self) -> float | None:
        """The idle power a source models exactly (a process-scoped estimate), else None: then it is measured."""
        return float(self.source.idle_power_w) if getattr(self.source, "idle_is_exact", False) else None

    def set_baseline(self, watts: float) -> None:
        """Idle baseline [W] for every window (replaces any earlier one)."""
        self.idle.set(watts)

    def measure_baseline(self, seconds: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> float:
        """Mean power over the next ``seconds`` (keep the device idle meanwhile); becomes the baseline.

        Starts the sampling thread if needed (unless a custom ``sleep`` drives sampling)."""
        if not self.running and sleep is time.sleep:
            self.start()
        t0 = self.clock()
        sleep(seconds)
        t1 = self.clock()
        if self.running:
            self.wait_for(t1, timeout=2 * self.period_s + 0.5)
        e = self.energy_between(t0, t1)
        if not math.isfinite(e) or t1 <= t0:
            raise RuntimeError("no power samples during the baseline measurement")
        self.set_baseline(e / (t1 - t0))
        return e / (t1 - t0)


@dataclass
class EnergySum:
    """Sum over the windows integrated under one key (energies in J)."""

    n: int = 0
    seconds: float = 0.0
    energy_j: float = 0.0  # total, idle power included
    marginal_j: float = 0.0  # above the idle baseline (NaN once a window had no baseline)
    extrapolated: int = 0  # windows that were not covered by samples
    estimated: bool = False

    def add(self, w: EnergyWindow) -> None:
        self.add_values(w.t1 - w.t0, w.energy_j, w.marginal_j, w.extrapolated, w.estimated)

    def add_values(self, seconds: float, energy_j: float, marginal_j: float | None, extrapolated: bool,
             estimated: bool) -> None:
        self.n += 1
        self.seconds += seconds
        self.energy_j += energy_j
        self.marginal_j += marginal_j if marginal_j is not None else math.nan
        self.extrapolated += int(extrapolated)
        self.estimated |= estimated

    def mean_mj(self, above_idle: bool = True) -> float | None:
        """Mean energy per window in mJ (above idle by default); None without windows or a baseline."""
        v = self.marginal_j if above_idle else self.energy_j
        return 1e3 * v / self.n if self.n and math.isfinite(v) else None


class WindowIntegrator:
    """Queue time windows now, integrate them once the sampler's samples cover them.

    ``add(key, t0, t1)`` after each measured piece of work (cheap: no integration yet); ``update()``
    integrates every queued window whose end is at or before the newest sample (call it now and then,
    e.g. after each inference); ``finish()`` waits for one sample after the last window and integrates
    the rest. ``sums[key]`` then holds an :class:`EnergySum` per key. A window is only integrated
    before a sample covers it when more than ``max_pending`` are queued (the sampler stalled) or at
    ``finish`` after the wait timed out; those count as ``extrapolated``.
    """

    def __init__(self, sampler: PowerSampler, max_pending: int = 100_000) -> None:
        self.sampler = sampler
        self.max_pending = max(1, max_pending)
        self._pending: deque[tuple[Hashable, float, float]] = deque()
        self.sums: dict[Hashable, EnergySum] = {}

    def add(self, key: Hashable, t0: float, t1: float) -> None:
        self._pending.append((key, t0, t1))
        if len(self._pending) > self.max_pending:
            self._integrate_all([self._pending.popleft()])

    def update(self) -> int:
        """Integrate the queued windows that samples now cover; returns how many are still queued."""
        q = self._pending
        if q:
            newest = self.sampler.curve.newest_time
            if q[0][2] <= newest:
                ready = []
                while q and q[0][2] <= newest:
                    ready.append(q.popleft())
                self._integrate_all(ready)
        return len(q)

    def _integrate_all(self, windows: list[tuple[Hashable, float, float]]) -> None:
        """Add each window to its key's sum, in order, with the energies of all of them taken under one lock (each
        sample covers about (sampling period / inference time) windows, integrated together)."""
        smp = self.sampler
        vals = smp.curve.integrate([(t0, t1) for _, t0, t1 in windows])
        sums = self.sums
        since = smp.estimated_since
        above = smp.idle.above
        for (key, t0, t1), (ej, covered) in zip(windows, vals):  # what sampler.window(t0, t1) reports
            s = sums.get(key)
            if s is None:
                s = sums[key] = EnergySum()
            s.add_values(t1 - t0, ej, above(t0, t1, ej), not covered, since is not None and t1 > since)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def finish(self, timeout: float | None = None) -> dict[Hashable, EnergySum]:
        """Wait (at most ``timeout`` s, default two sampling periods + 0.5 s) for a sample after the
        last queued window, then integrate everything left."""
        if self._pending:
            t_last = max(t1 for _, _, t1 in self._pending)
            wait = 2 * self.sampler.period_s + 0.5 if timeout is None else timeout
            self.sampler.wait_for(t_last, timeout=wait)
            self._integrate_all(list(self._pending))
            self._pending.clear()
        return self.sums
