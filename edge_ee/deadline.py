"""Deadline guard: predicts the next stage's latency from what was measured so far.

Each segment and head keeps an exponentially weighted mean and mean absolute deviation of its
measured latency; the prediction is ``mean + k * deviation`` (a cheap high quantile, O(1) per
update). Before running stage k+1 the engine continues only if
``elapsed + predicted(segment k+1 + head k+1) + margin <= deadline``.

A stage the guard keeps skipping is never measured again, so its statistics would go stale (a
stage measured slow under a load spike would be skipped for ever). Stage 0 runs on every frame, so
its latency is a live load indicator: a deeper stage's prediction is scaled by the ratio of the
stage-0 latency now to the stage-0 latency when that stage was last measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LatencyStat:
    alpha: float = 0.1
    k: float = 3.0
    mean: float = 0.0
    dev: float = 0.0
    n: int = 0

    def update(self, x: float) -> None:
        if self.n == 0:
            self.mean, self.dev = x, 0.25 * x
        else:
            d = x - self.mean
            # robust: one scheduler hiccup must not inflate the prediction for many frames,
            # while a sustained load step still moves the mean within tens of frames
            bound = max(4.0 * self.dev, 0.1 * self.mean)
            d = max(-bound, min(bound, d))
            self.mean += self.alpha * d
            self.dev += self.alpha * (abs(d) - self.dev)
        self.n += 1

    def relax(self, factor: float = 0.99) -> None:
        """Shrink the spread of a stage the guard skipped: a stage that is never run is never measured,
        so without this one slow measurement would keep it skipped for ever. After ~100 skips its
        prediction is back near its mean and it is tried again (and measured)."""
        self.dev *= factor

    def predict(self) -> float:
        return self.mean + self.k * self.dev if self.n else 0.0

    def seed(self, samples: list[float]) -> None:
        """Start from a batch of warm measurements: median and (normal-consistent) median absolute
        deviation, both insensitive to the odd slow run."""
        xs = sorted(samples)
        med = xs[len(xs) // 2]
        mad = sorted(abs(x - med) for x in xs)[len(xs) // 2]
        self.mean = med
        self.dev = max(1.4826 * mad, 0.02 * med)
        self.n = len(xs)


@dataclass
class LatencyModel:
    """Per-segment and per-head latency statistics (seconds)."""

    num_stages: int
    margin_s: float = 10e-6  # fixed part of the safety margin: the engine's own work after a stage
    margin_frac: float = 0.02  # plus this fraction of the deadline
    segments: list[LatencyStat] = field(default_factory=list)
    heads: list[LatencyStat] = field(default_factory=list)

    load_ref: list[float] = field(default_factory=list)  # stage-0 level when stage k was last measured

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments = [LatencyStat() for _ in range(self.num_stages)]
            self.heads = [LatencyStat() for _ in range(self.num_stages)]
        if not self.load_ref:
            self.load_ref = [0.0] * self.num_stages

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
        """Whether stage ``k`` (segment + head) is predicted to finish before the deadline."""
        ok = elapsed_s + self.predict_stage(k) + self.margin_s + self.margin_frac * deadline_s <= deadline_s
        if not ok:
            self.segments[k].relax()
            self.heads[k].relax()
        return ok

    def snapshot(self) -> dict[str, list[float]]:
        return {
            "segment_ms": [s.predict() * 1e3 for s in self.segments],
            "head_ms": [h.predict() * 1e3 for h in self.heads],
        }
