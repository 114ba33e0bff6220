"""Background sampling of a power source and energy integration over arbitrary time windows.

The sampler thread reads the source at its own update rate (never faster than
``source.update_interval_s``) into a ring buffer of (t, P, E) where t is the sampler clock
(default ``time.perf_counter``, the clock of the engine; on Linux it is CLOCK_MONOTONIC, the same as
``time.monotonic``), P the power [W] and E the cumulative energy [J] since the first sample.

* power sensors: P is linear between samples, E is the running trapezoid integral;
* energy counters: P over a sample interval is dE/dt (constant within it), E is the counter itself
  (unwrapped: ``energy_range_j`` is added back when a reading goes down).

``energy_between(t0, t1)`` is E(t1) - E(t0) with E interpolated inside the sample interval (so a
window shorter than the sampling period still gets the right share), two O(log n) searches and no
copies. Outside the buffered range, the nearest power is held. A source failing ``max_failures``
times in a row (e.g. the sensor disappeared: OSError) is replaced by the CPU-utilisation estimate
with one warning; windows reaching past that moment are flagged ``estimated``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import CounterUnwrapper, PowerSource

log = logging.getLogger("edge_ee.power")


@dataclass(frozen=True)
class EnergyWindow:
    """Energy over [t0, t1] and where it came from."""

    t0: float
    t1: float
    energy_j: float
    baseline_w: float | None
    marginal_j: float | None  # energy_j - baseline_w * (t1 - t0); None without a baseline
    estimated: bool
    source: str  # source kind, e.g. "jetson", "estimate"
    rail: str
    extrapolated: bool  # the window reaches past the newest sample: the last power was held

    @property
    def mean_power_w(self) -> float:
        dt = self.t1 - self.t0
        return self.energy_j / dt if dt > 0 else float("nan")

    def to_telemetry(self) -> dict[str, Any]:
        """JSON-friendly fields for one telemetry record (energies in mJ)."""
        return {
            "energy_mj": _r(self.energy_j * 1e3),
            "marginal_energy_mj": None if self.marginal_j is None else _r(self.marginal_j * 1e3),
            "power_source": self.source,
            "power_rail": self.rail,
            "energy_estimated": self.estimated,
        }


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _default_fallback() -> PowerSource:
    from .estimate import EstimatedSource

    return EstimatedSource()


class PowerSampler:
    """Samples ``source`` in a background thread; query energy of any time window afterwards."""

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
        self._cap = int(capacity)
        if self._cap < 2:
            raise ValueError("capacity must be >= 2")
        self._t = np.zeros(self._cap)
        self._p = np.zeros(self._cap)
        self._e = np.zeros(self._cap)
        self._const = np.zeros(self._cap, dtype=bool)  # segment ending at this sample: constant power
        self._n = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._prev_energy: tuple[float, float] | None = None
        self._unwrap = CounterUnwrapper(source.energy_range_j)
        self._failures = 0
        self.estimated_since: float | None = -math.inf if source.estimated else None
        self.baseline_w: float | None = None
        self.failed_sources: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dead = False  # no source left

    # ---- configuration -------------------------------------------------------------------------
    def _period_for(self, src: PowerSource) -> float:
        want = self._requested_period if self._requested_period is not None else src.update_interval_s
        return max(want, src.update_interval_s, self._min_period)

    @property
    def estimated(self) -> bool:
        """True once any sample came from an estimate (from ``estimated_since`` on)."""
        return self.estimated_since is not None

    def info(self) -> dict[str, Any]:
        d = self.source.describe()
        d.update(period_s=self.period_s, baseline_w=self.baseline_w, samples=min(self._n, self._cap),
                 estimated=self.estimated, failed_sources=list(self.failed_sources))
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
        with self._lock:
            self.source = new
            self._prev_energy = None
            self._unwrap = CounterUnwrapper(new.energy_range_j)
            self._failures = 0
            if new.estimated and self.estimated_since is None:
                self.estimated_since = t
            self.period_s = self._period_for(new)
            if self.baseline_w is not None:
                idle = getattr(new, "idle_power_w", None)
                self.baseline_w = float(idle) if idle is not None else self.baseline_w

    def _append(self, t: float, p: float, e: float, const: bool) -> None:
        i = self._n % self._cap
        self._t[i] = t
        self._p[i] = p
        self._e[i] = e
        self._const[i] = const
        self._n += 1

    def _ingest(self, src: PowerSource, t: float, v: float) -> None:
        with self._cond:
            if src is not self.source:
                return
            last = (self._n - 1) % self._cap if self._n else -1
            if src.quantity == "energy":
                e = self._unwrap(v)
                prev = self._prev_energy
                if prev is not None and t <= prev[0]:
                    return
                self._prev_energy = (t, e)
                if prev is None or e < prev[1]:  # first reading, or a counter reset
                    return
                tp, ep = prev
                p = (e - ep) / (t - tp)
                if last < 0:
                    self._append(tp, p, 0.0, True)
                elif self._t.item(last) < tp:  # first interval of this source: bridge linearly
                    tl, pl, el = self._t.item(last), self._p.item(last), self._e.item(last)
                    self._append(tp, p, el + (tp - tl) * (pl + p) / 2, False)
                elif self._t.item(last) > tp:
                    return
                self._append(t, p, self._e.item((self._n - 1) % self._cap) + (e - ep), True)
            else:
                if last < 0:
                    self._append(t, v, 0.0, False)
                else:
                    tl, pl, el = self._t.item(last), self._p.item(last), self._e.item(last)
                    if t <= tl:
                        return
                    self._append(t, v, el + (t - tl) * (pl + v) / 2, False)
            self._cond.notify_all()

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
        with self._cond:
            return self._cond.wait_for(lambda: self._n > 0 and self._t.item((self._n - 1) % self._cap) >= t,
                                       timeout)

    # ---- queries -------------------------------------------------------------------------------
    def newest_time(self) -> float:
        with self._lock:
            return self._t.item((self._n - 1) % self._cap) if self._n else -math.inf

    def _energy_at(self, x: float) -> float:
        """Cumulative energy at time x (caller holds the lock)."""
        n, cap = self._n, self._cap
        size = min(n, cap)
        if size == 0:
            return math.nan
        old, new = (n - size) % cap, (n - 1) % cap
        t, p, e = self._t, self._p, self._e
        tn = t.item(new)
        if x >= tn:
            return e.item(new) + p.item(new) * (x - tn)
        to = t.item(old)
        if x <= to:
            return e.item(old) - p.item(old) * (to - x)
        # logical index j of the first sample with time > x (1 <= j < size)
        if n <= cap or old == 0:
            j = int(np.searchsorted(t[:size], x, side="right"))
        elif x < t.item(0):
            j = int(np.searchsorted(t[old:], x, side="right"))
        else:
            j = (cap - old) + int(np.searchsorted(t[:old], x, side="right"))
        k, km = (old + j) % cap, (old + j - 1) % cap
        t0, t1 = t.item(km), t.item(k)
        dx = x - t0
        if self._const[k]:
            return e.item(km) + p.item(k) * dx
        p0 = p.item(km)
        px = p0 + (p.item(k) - p0) * (dx / (t1 - t0))
        return e.item(km) + dx * (p0 + px) / 2

    def energy_between(self, t0: float, t1: float) -> float:
        """Energy [J] in [t0, t1] (sampler clock); NaN before the first power sample."""
        with self._lock:
            return self._energy_at(t1) - self._energy_at(t0)

    def marginal_energy_between(self, t0: float, t1: float) -> float:
        """Energy above the idle baseline [J]: energy_between - baseline_w * (t1 - t0). May be slightly
        negative for windows where the device used less than the baseline (noise)."""
        if self.baseline_w is None:
            raise RuntimeError("no idle baseline: call measure_baseline() or set_baseline() first")
        return self.energy_between(t0, t1) - self.baseline_w * (t1 - t0)

    def power_at(self, x: float) -> float:
        """Mean power [W] over a tiny window around x (for display)."""
        h = max(self.period_s * 1e-3, 1e-6)
        return self.energy_between(x - h, x + h) / (2 * h)

    def window(self, t0: float, t1: float) -> EnergyWindow:
        """:class:`EnergyWindow` for [t0, t1]: energy, marginal energy, estimated flag, source and rail."""
        with self._lock:
            ej = self._energy_at(t1) - self._energy_at(t0)
            newest = self._t.item((self._n - 1) % self._cap) if self._n else -math.inf
            src = self.source
        base = self.baseline_w
        est = self.estimated_since is not None and t1 > self.estimated_since
        return EnergyWindow(t0, t1, ej, base, None if base is None else ej - base * (t1 - t0), est,
                            src.kind, src.rail, t1 > newest)

    def windows(self, boundaries: list[float]) -> list[EnergyWindow]:
        """Consecutive windows [b0, b1], [b1, b2], ... (e.g. the stage boundaries of one inference);
        their energies add up exactly to the energy of [b0, bn]."""
        return [self.window(a, b) for a, b in zip(boundaries, boundaries[1:])]

    def samples(self, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the buffered (times, powers), oldest first (for plots and tests)."""
        with self._lock:
            size = min(self._n, self._cap)
            m = size if last is None else min(size, last)
            idx = (np.arange(self._n - m, self._n)) % self._cap
            return self._t[idx].copy(), self._p[idx].copy()

    # ---- baseline ------------------------------------------------------------------------------
    def set_baseline(self, watts: float) -> None:
        self.baseline_w = float(watts)

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
        self.baseline_w = e / (t1 - t0)
        return self.baseline_w
