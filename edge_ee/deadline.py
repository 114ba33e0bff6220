"""Deadline guard: predicts the next stage's latency from what was measured so far.

Each segment and head keeps an exponentially weighted mean and mean absolute deviation of its
measured latency; the prediction is ``mean + k * deviation`` (a cheap high quantile, O(1) per
update). Before running stage k+1 the engine continues only if
``elapsed + predicted(segment k+1 + head k+1) + margin <= deadline``.
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
            self.mean += self.alpha * d
            self.dev += self.alpha * (abs(d) - self.dev)
        self.n += 1

    def predict(self) -> float:
        return self.mean + self.k * self.dev if self.n else 0.0


@dataclass
class LatencyModel:
    """Per-segment and per-head latency statistics (seconds)."""

    num_stages: int
    margin_s: float = 0.0002
    segments: list[LatencyStat] = field(default_factory=list)
    heads: list[LatencyStat] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments = [LatencyStat() for _ in range(self.num_stages)]
            self.heads = [LatencyStat() for _ in range(self.num_stages)]

    def predict_stage(self, k: int) -> float:
        return self.segments[k].predict() + self.heads[k].predict()

    def fits(self, k: int, elapsed_s: float, deadline_s: float) -> bool:
        """Whether stage ``k`` (segment + head) is predicted to finish before the deadline."""
        return elapsed_s + self.predict_stage(k) + self.margin_s <= deadline_s

    def snapshot(self) -> dict[str, list[float]]:
        return {
            "segment_ms": [s.predict() * 1e3 for s in self.segments],
            "head_ms": [h.predict() * 1e3 for h in self.heads],
        }
