"""Deadline guard: predicts the next stage's latency from what was measured so far.

Each segment and head keeps a robust exponentially weighted mean of its measured latency (the load
level) and a running high quantile (p95 of its last 256 measurements): the prediction. The guard is
for predictable overruns: a stage that typically does not fit. A rare long run (the stage preempted
by another process) cannot be predicted per input; a higher quantile would only let those rare runs
decide for every input. The budget controller keeps the resulting miss rate at its target by sending
fewer inputs deep (``edge_ee.control.hook``). Before
running stage k+1 the engine continues only if
``elapsed + predicted(segment k+1 + head k+1) + margin <= deadline``.

A stage the guard keeps skipping is never measured again, so its statistics would go stale (a
stage measured slow under a load spike would be skipped for ever). Stage 0 runs on every frame, so
its latency is a live load indicator: a deeper stage's prediction is scaled by the ratio of the
stage-0 latency now to the stage-0 latency when that stage was last measured, and the guard
*probes*: after ``probe_after`` (1000) consecutive skips, one input runs the stage whatever its
prediction, and the stage's statistics restart from that measurement. Without the probe, a stage
measured during the spike at the onset of a load (slow, while the stage-0 level still lagged
behind) stays over-predicted for seconds; no condition on its old statistics can tell, since they
are what is stale. A probe risks one input in ``probe_after`` missing its deadline (0.1%), and only
while inputs ask for that stage.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field


@dataclass
class LatencyStat:
    """Latency of one segment or head: a robust EWMA mean and deviation (the load level, O(1) per
    update) and a running high quantile (the prediction): the ``quantile`` of the last ``window``
    measurements, kept exact with a sorted copy of the window (a C-level insert and delete per update). A
    window quantile is calibrated for the heavy-tailed latencies of a loaded CPU, where mean + k x
    deviation over-predicts, and it forgets a past load once it leaves the window."""

    alpha: float = 0.1
    quantile: float = 0.95
    window: int = 256
    mean: float = 0.0
    dev: float = 0.0
    q: float = 0.0
    n: int = 0
    recent: list[float] = field(default_factory=list)  # ring buffer of the last ``window`` measurements
    ordered: list[float] = field(default_factory=list)  # the same values, sorted (O(window) memmove per update)
    _pos: int = 0

    def _push(self, x: float) -> None:
        if len(self.recent) < self.window:
            self.recent.append(x)
        else:
            old = self.recent[self._pos]
            del self.ordered[bisect_left(self.ordered, old)]
            self.recent[self._pos] = x
            self._pos = (self._pos + 1) % self.window
        insort(self.ordered, x)
        self.q = self.ordered[min(len(self.ordered) - 1, int(self.quantile * len(self.ordered)))]

    def update(self, x: float) -> None:
        if self.n == 0:
            self.mean, self.dev = x, 0.25 * x
        else:
            d = x - self.mean
            # robust: one scheduler hiccup must not inflate the mean for many frames,
            # while a sustained load step still moves it within tens of frames
            bound = max(4.0 * self.dev, 0.1 * self.mean)
            d = max(-bound, min(bound, d))
            self.mean += self.alpha * d
            self.dev += self.alpha * (abs(d) - self.dev)
        self.n += 1
        self._push(x)

    def set_quantile(self, quantile: float) -> None:
        self.quantile = quantile
        if self.ordered:
            self.q = self.ordered[min(len(self.ordered) - 1, int(quantile * len(self.ordered)))]

    def restart(self) -> None:
        """Forget the history: the next measurement starts afresh (for a stage unmeasured for long)."""
        self.n = 0
        self.q = 0.0
        self.recent, self.ordered, self._pos = [], [], 0

    def relax(self, factor: float = 0.99) -> None:
        """Pull the prediction of a stage the guard skipped towards its mean: a stage that is never run
        is never measured, so without this one slow spell would keep it skipped for ever. After ~100
        skips its prediction is back near its mean and it is tried again (and measured)."""
        if self.q > self.mean:
            self.q = self.mean + factor * (self.q - self.mean)

    def predict(self) -> float:
        """The running high quantile (never below the mean); 0 before any measurement."""
        return max(self.q, self.mean) if self.n else 0.0

    def seed(self, samples: list[float]) -> None:
        """Start from a batch of warm measurements: median and (normal-consistent) median absolute
        deviation for the load level, the batch itself for the quantile."""
        xs = sorted(samples)
        med = xs[len(xs) // 2]
        mad = sorted(abs(x - med) for x in xs)[len(xs) // 2]
        self.mean = med
        self.dev = max(1.4826 * mad, 0.02 * med)
        self.n = len(xs)
        self.recent, self.ordered, self._pos = [], [], 0
        for x in samples[-self.window:]:
            self._push(x)


@dataclass
class LatencyModel:
    """Per-segment and per-head latency statistics (seconds)."""

    num_stages: int
    margin_s: float = 10e-6  # fixed part of the safety margin: the engine's own work after a stage
    margin_frac: float = 0.02  # plus this fraction of the deadline
    segments: list[LatencyStat] = field(default_factory=list)
    heads: list[LatencyStat] = field(default_factory=list)

    load_ref: list[float] = field(default_factory=list)  # stage-0 level when stage k was last measured
    probe_after: int = 1000  # consecutive skips of a stage before one input probes it
    skips: list[int] = field(default_factory=list)
    probes: int = 0

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments = [LatencyStat() for _ in range(self.num_stages)]
            self.heads = [LatencyStat() for _ in range(self.num_stages)]
        if not self.load_ref:
            self.load_ref = [0.0] * self.num_stages
        if not self.skips:
            self.skips = [0] * self.num_stages

    def load_level(self) -> float:
        """Smoothed latency of stage 0 (segment + head): it runs on every frame."""
        return self.segments[0].mean + self.heads[0].mean

    def update_segment(self, k: int, seconds: float) -> None:
        self.segments[k].update(seconds)
        self.load_ref[k] = self.load_level()

    def seed(self, segment_s: list[list[float]], head_s: list[list[float]]) -> None:
        """Seed every stage from warm-up runs (``segment_s[k]`` = samples of stage k)."""
        for k in range(self.num_stages):
            self.segments[k].seed(segment_s[k])
            self.heads[k].seed(head_s[k])
        self.load_ref = [self.load_level()] * self.num_stages

    def update_head(self, k: int, seconds: float) -> None:
        self.heads[k].update(seconds)
        self.load_ref[k] = self.load_level()

    def predict_stage(self, k: int) -> float:
        p = self.segments[k].predict() + self.heads[k].predict()
        ref = self.load_ref[k]
        if k > 0 and ref > 0.0:
            p *= max(0.25, min(4.0, self.load_level() / ref))  # bounded: stage 0 is short and noisy
        return p

    def fits(self, k: int, elapsed_s: float, deadline_s: float) -> bool:
        """Whether stage ``k`` (segment + head) is predicted to finish before the deadline (or, after
        ``probe_after`` consecutive skips, a probe that re-measures it)."""
        margin = self.margin_s + self.margin_frac * deadline_s
        if elapsed_s + self.predict_stage(k) + margin <= deadline_s:
            self.skips[k] = 0
            return True
        self.segments[k].relax()
        self.heads[k].relax()
        self.skips[k] += 1
        if self.skips[k] >= self.probe_after:
            self.skips[k] = 0
            self.probes += 1
            self.segments[k].restart()
            self.heads[k].restart()
            return True
        return False

    def snapshot(self) -> dict[str, list[float]]:
        return {
            "segment_ms": [s.predict() * 1e3 for s in self.segments],
            "head_ms": [h.predict() * 1e3 for h in self.heads],
        }
