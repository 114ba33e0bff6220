"""Run statistics in constant memory: exit histogram, latency percentiles, deadline hits, MACs saved.

The summary's energy figures have one writer, the energy hook (``control/energy_hook.py``, which measures them);
``format_summary`` prints them when they are there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class LatencyHistogram:
    """Log-spaced histogram (1 us .. 100 s, ~1.2% bin width): percentiles over unbounded runs."""

    def __init__(self, lo_ms: float = 1e-3, hi_ms: float = 1e5, bins: int = 1600) -> None:
        self.edges = np.geomspace(lo_ms, hi_ms, bins + 1)
        self._log_lo = math.log(lo_ms)
        self._step = (math.log(hi_ms) - self._log_lo) / bins
        self.counts = np.zeros(bins + 2, dtype=np.int64)  # [underflow, bins..., overflow]
        self.n = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def add(self, ms: float) -> None:
        if ms <= 0:
            i = 0
        else:
            i = int((math.log(ms) - self._log_lo) / self._step) + 1
            i = min(max(i, 0), len(self.counts) - 1)
        self.counts[i] += 1
        self.n += 1
        self.total += ms
        self.max = max(self.max, ms)
        self.min = min(self.min, ms)

    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    def quantile(self, q: float) -> float:
        if not self.n:
            return math.nan
        target = q * self.n
        c = np.cumsum(self.counts)
        i = int(np.searchsorted(c, target, side="left"))
        if i == 0:
            return self.min
        if i >= len(self.counts) - 1:
            return self.max
        # geometric mid-point of the bin, clamped to the observed range
        mid = math.sqrt(self.edges[i - 1] * self.edges[i])
        return min(max(mid, self.min), self.max)


@dataclass
class RunStats:
    num_exits: int
    full_macs: int
    frames: int = 0
    exits: list[int] = field(default_factory=list)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    e2e: LatencyHistogram = field(default_factory=LatencyHistogram)
    exit_latency_sum: list[float] = field(default_factory=list)
    infer_ms_total: float = 0.0  # engine time only (no preprocessing): comparable with the profile's
    macs_total: int = 0
    budget_frames: int = 0
    deadline_hits: int = 0
    deadline_stops: int = 0
    labelled: int = 0
    correct: int = 0
    dropped: int = 0
    telemetry_dropped: int = 0
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.exits:
            self.exits = [0] * self.num_exits
            self.exit_latency_sum = [0.0] * self.num_exits

    def add(self, exit_index: int, total_ms: float, macs: int, e2e_ms: float | None = None,
            deadline_met: bool | None = None, deadline_stop: bool = False, correct: bool | None = None,
            infer_ms: float | None = None) -> None:
        """One inference. ``infer_ms``: engine time (``total_ms`` minus preprocessing; defaults to ``total_ms``)."""
        self.frames += 1
        self.exits[exit_index] += 1
        self.exit_latency_sum[exit_index] += total_ms
        self.latency.add(total_ms)
        self.infer_ms_total += total_ms if infer_ms is None else infer_ms
        if e2e_ms is not None:
            self.e2e.add(e2e_ms)
        self.macs_total += macs
        if deadline_met is not None:
            self.budget_frames += 1
            self.deadline_hits += int(deadline_met)
        self.deadline_stops += int(deadline_stop)
        if correct is not None:
            self.labelled += 1
            self.correct += int(correct)

    def summary(self) -> dict[str, Any]:
        n = self.frames
        mean_macs = self.macs_total / n if n else math.nan
        return {
            "frames": n,
            "wall_s": self.wall_s,
            "fps": n / self.wall_s if self.wall_s > 0 else None,
            "exits": list(self.exits),
            "exit_fractions": [c / n if n else 0.0 for c in self.exits],
            "exit_mean_ms": [s / c if c else None for s, c in zip(self.exit_latency_sum, self.exits)],
            "latency_ms": {
                "mean": self.latency.mean(), "p50": self.latency.quantile(0.5),
                "p99": self.latency.quantile(0.99), "max": self.latency.max if n else math.nan,
            },
            "infer_ms_mean": self.infer_ms_total / n if n else None,
            "e2e_ms": {"p50": self.e2e.quantile(0.5), "p99": self.e2e.quantile(0.99)} if self.e2e.n else None,
            "deadline_hit_rate": self.deadline_hits / self.budget_frames if self.budget_frames else None,
            "deadline_stops": self.deadline_stops,
            "mean_macs": mean_macs,
            "full_macs": self.full_macs,
            "macs_saved": 1.0 - mean_macs / self.full_macs if n and self.full_macs else None,
            "accuracy": self.correct / self.labelled if self.labelled else None,
            "labelled": self.labelled,
            "dropped_frames": self.dropped,
            "telemetry_dropped": self.telemetry_dropped,
        }


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def format_summary(s: dict[str, Any], labels: list[str] | None = None) -> str:
    n = s["frames"]
    lines = [f"frames: {n}" + (f" in {s['wall_s']:.1f} s ({_f(s['fps'], '.1f')} fps)" if s.get("fps") else "")]
    hist = "  ".join(
        f"exit{k}{' (final)' if k == len(s['exits']) - 1 else ''}: {c} ({100 * fr:.1f}%)"
        for k, (c, fr) in enumerate(zip(s["exits"], s["exit_fractions"]))
    )
    lines.append(f"exits: {hist}")
    lat = s["latency_ms"]
    lines.append(f"latency ms: mean {_f(lat['mean'], '.3f')}  p50 {_f(lat['p50'], '.3f')}  "
                 f"p99 {_f(lat['p99'], '.3f')}  max {_f(lat['max'], '.3f')}")
    if s.get("e2e_ms"):
        lines.append(f"capture-to-answer ms: p50 {_f(s['e2e_ms']['p50'], '.3f')}  p99 {_f(s['e2e_ms']['p99'], '.3f')}")
    if s["deadline_hit_rate"] is not None:
        lines.append(f"deadline hit rate: {100 * s['deadline_hit_rate']:.2f}%  (guard stopped early on "
                     f"{s['deadline_stops']} frames)")
    if s["macs_saved"] is not None:
        lines.append(f"MACs: mean {s['mean_macs'] / 1e6:.3f} M vs full model {s['full_macs'] / 1e6:.3f} M "
                     f"-> {100 * s['macs_saved']:.1f}% saved")
    if s["accuracy"] is not None:
        lines.append(f"accuracy: {100 * s['accuracy']:.2f}% on {s['labelled']} labelled frames")
    tag = " (estimated)" if s.get("energy_estimated") else ""
    total = s.get("energy_total_mj_per_inference")
    if s.get("energy_mj_per_inference") is not None:
        incl = f" ({total:.3f} mJ including idle power)" if total is not None else ""
        lines.append(f"energy{tag}: {s['energy_mj_per_inference']:.3f} mJ per inference above idle{incl}")
    elif total is not None:
        lines.append(f"energy{tag}: {total:.3f} mJ per inference including idle power (no idle baseline, "
                     "so no energy above idle)")
    if s.get("dropped_frames"):
        lines.append(f"dropped frames: {s['dropped_frames']}")
    if s.get("telemetry_dropped"):
        lines.append(f"telemetry records dropped (write failures): {s['telemetry_dropped']}")
    return "\n".join(lines)
