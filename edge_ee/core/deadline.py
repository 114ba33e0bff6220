"""Deadline guard: decides before each stage whether it may run, from what was measured so far.

A :class:`DeadlineGuard` decides; a :class:`LatencyModel` holds the statistics it decides from. The engine
owns one latency model (it measures every stage it runs under a deadline) and is handed the guard in force
(:meth:`edge_ee.core.engine.Engine.use_guard`); the latency controller hands it a :class:`RiskPricedGuard` over
the same statistics for the length of a run and gives the :class:`StrictGuard` back at the end.

Each segment and head keeps a robust exponentially weighted mean of its measured latency (the load
level) and its last 256 measurements, kept sorted. Two strategies:

* **strict** (:class:`StrictGuard`, the default; ``edge-ee run --budget 20ms --no-controller``): stage k+1 runs only if
  ``elapsed + p95(segment k+1 + head k+1) + margin <= deadline``. It stops the predictable overruns;
  a rare long run (the stage preempted by another process) cannot be predicted per input.
* **risk-priced** (:class:`RiskPricedGuard`, handed over by the latency controller): the miss probability p
  of the stage is the fraction of its recent whole runs (segment + head) longer than the time left.
  p = 0: it runs. Otherwise it runs only if p <= 50% and ``price x p <= w``, where w = 1 - the top
  softmax probability of the answer so far (the chance that going deeper corrects it). Unconfident
  inputs take the risk of a late answer, confident ones do not, and a stage that misses more often
  is taken by fewer inputs. Put as the rule above: the stage runs if ``elapsed + q(segment + head) +
  margin <= deadline`` for a running quantile q of the recent runs, at a level chosen per input, ``1
  - min(0.5, w / price)``: from the recent maximum (a confident answer, a high price) down to the
  median. ``observe`` adapts the price after every frame that weighed a risk (up on a miss, down on
  a met deadline) so that those frames miss at the target rate (0.5%): this is the loop that holds a
  latency budget's miss rate, and it lets a stage that usually fits run where the strict p95 rule
  would skip it for every input.

A stage the guard keeps skipping is never measured again, so its statistics would go stale (a stage
measured slow under a load spike would be skipped for ever). Stage 0 runs on every frame, so its
latency is a live load indicator: in strict mode a deeper stage's prediction is scaled by the ratio
of the stage-0 latency now to the stage-0 latency when that stage was last measured, and the guard
*probes*: after ``probe_after`` (1000) consecutive skips, one input runs the stage whatever its
prediction, and the stage's statistics restart from that measurement. Without the probe, a stage
measured during the spike at the onset of a load (slow, while the stage-0 level still lagged behind)
stays over-predicted for seconds; no condition on its old statistics can tell, since they are what
is stale. A probe risks one input in ``probe_after`` missing its deadline (0.1%), and only while
inputs ask for that stage.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


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
    """Per-segment and per-head latency statistics (seconds), shared by the guards. Whole runs of a stage
    (segment + head of the same run) are kept only while a guard that uses them is in force
    (``whole_runs``, set by :meth:`edge_ee.core.engine.Engine.use_guard`)."""

    num_stages: int
    margin_s: float = 10e-6  # fixed part of the safety margin: the engine's own work after a stage
    margin_frac: float = 0.02  # plus this fraction of the deadline
    segments: list[LatencyStat] = field(default_factory=list)
    heads: list[LatencyStat] = field(default_factory=list)
    stages: list[LatencyStat] = field(default_factory=list)  # segment + head of the same run (risk mode)
    load_ref: list[float] = field(default_factory=list)  # stage-0 level when stage k was last measured
    whole_runs: bool = False  # keep ``stages`` (the risk-priced guard's miss probabilities)
    min_evidence: int = 32  # a shorter history counts its unmeasured runs as fitting (``miss_prob``)
    probe_after: int = 1000  # consecutive skips of a stage before one input probes it
    skips: list[int] = field(default_factory=list)
    probes: int = 0
    last_segment: list[float] = field(default_factory=list)  # the segment time of each stage's latest run

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments = [LatencyStat() for _ in range(self.num_stages)]
            self.heads = [LatencyStat() for _ in range(self.num_stages)]
        if not self.stages:
            self.stages = [LatencyStat() for _ in range(self.num_stages)]
        if not self.last_segment:
            self.last_segment = [0.0] * self.num_stages
        if not self.load_ref:
            self.load_ref = [0.0] * self.num_stages
        if not self.skips:
            self.skips = [0] * self.num_stages

    def load_level(self) -> float:
        """Smoothed latency of stage 0 (segment + head): it runs on every frame."""
        return self.segments[0].mean + self.heads[0].mean

    def update_segment(self, k: int, seconds: float) -> None:
        self.segments[k].update(seconds)
        self.last_segment[k] = seconds
        self.load_ref[k] = self.load_level()

    def update_stage(self, k: int, seconds: float) -> None:
        """A whole run of stage k (segment + head, or the final segment without a head); kept while
        ``whole_runs`` is on only (the strict guard does not use it; the warm-up seed stands in until then)."""
        if self.whole_runs:
            self.stages[k].update(seconds)

    def seed(self, segment_s: list[list[float]], head_s: list[list[float]]) -> None:
        """Seed every stage from warm-up runs (``segment_s[k]`` = samples of stage k), in place: whoever holds
        this model (the engine, a guard) sees the warm statistics."""
        for k in range(self.num_stages):
            self.segments[k].seed(segment_s[k])
            self.heads[k].seed(head_s[k])
            self.stages[k].seed([a + b for a, b in zip(segment_s[k], head_s[k])])
        self.load_ref = [self.load_level()] * self.num_stages
        self.skips = [0] * self.num_stages

    def update_head(self, k: int, seconds: float) -> None:
        self.heads[k].update(seconds)
        if self.whole_runs:
            self.stages[k].update(self.last_segment[k] + seconds)
        self.load_ref[k] = self.load_level()

    def _scale(self, k: int) -> float:
        ref = self.load_ref[k]
        if k > 0 and ref > 0.0:
            return max(0.25, min(4.0, self.load_level() / ref))  # bounded: stage 0 is short and noisy
        return 1.0

    def remaining(self, elapsed_s: float, deadline_s: float) -> float:
        """Time left for the next stage once the safety margin is taken off."""
        return deadline_s - elapsed_s - (self.margin_s + self.margin_frac * deadline_s)

    def miss_prob(self, k: int, remaining_s: float) -> float:
        """Probability that stage ``k`` (segment + head) takes longer than ``remaining_s``: the fraction of
        its last ``window`` whole runs (segment + head of the same run: under load the head's tail
        matters when the time left is thin) above the remaining time. 0 before any measurement.

        Unlike the strict prediction, the runs are not rescaled by the stage-0 load ratio: under load the
        stage-0 level is too noisy for it (a 60 us stage swings by 2x), and a stage rescaled by a lucky
        low reference looked hopeless, was skipped and so never re-measured. A stale history is left to
        the misses (they raise the price while new runs refresh the window) and to the probe.

        A short history (a stage just restarted by a probe) counts as at least ``min_evidence`` runs, the
        unmeasured ones as fitting: one slow run among three must not read as a 33% miss risk, which
        would stop every input from running the stage and so from ever measuring it again."""
        runs = self.stages[k].ordered
        if not runs:
            return 0.0
        if remaining_s <= 0.0:
            return 1.0
        n = len(runs)
        return (n - bisect_right(runs, remaining_s)) / max(n, self.min_evidence)

    def predict_stage(self, k: int) -> float:
        return (self.segments[k].predict() + self.heads[k].predict()) * self._scale(k)

    def ran(self, k: int) -> None:
        """The guard let stage ``k`` run."""
        self.skips[k] = 0

    def skipped(self, k: int) -> bool:
        """The guard would skip stage ``k``; True when that makes ``probe_after`` skips in a row: then one
        input probes the stage (it runs whatever its prediction) and its statistics restart from that run."""
        self.skips[k] += 1
        if self.skips[k] < self.probe_after:
            return False
        self.skips[k] = 0
        self.probes += 1
        self.segments[k].restart()
        self.heads[k].restart()
        self.stages[k].restart()
        return True


class DeadlineGuard(Protocol):
    """Decides before each stage whether it may run under a deadline, from a shared :class:`LatencyModel`."""

    latency: LatencyModel
    whole_runs: bool  # whether the decisions need whole runs of a stage (``LatencyModel.stages``)

    def fits(self, k: int, elapsed_s: float, deadline_s: float, wrong: Callable[[], float] | None = None) -> bool:
        """Whether stage ``k`` (segment + head) may run, ``elapsed_s`` into a ``deadline_s`` budget; ``wrong``
        gives the probability that the answer so far is wrong."""
        ...

    def observe(self, deadline_met: bool) -> None:
        """Whether the frame just answered met its deadline."""
        ...


class StrictGuard:
    """Stage k runs if its running p95 (segment + head, scaled by the stage-0 load) fits the time left; a skipped
    stage's prediction is relaxed towards its mean, and probed after ``probe_after`` skips."""

    whole_runs = False

    def __init__(self, latency: LatencyModel) -> None:
        self.latency = latency

    def fits(self, k: int, elapsed_s: float, deadline_s: float, wrong: Callable[[], float] | None = None) -> bool:
        lat = self.latency
        if lat.predict_stage(k) <= lat.remaining(elapsed_s, deadline_s):
            lat.ran(k)
            return True
        lat.segments[k].relax()
        lat.heads[k].relax()
        return lat.skipped(k)

    def observe(self, deadline_met: bool) -> None:
        """The strict rule has nothing to adapt."""


@dataclass
class RiskPricedGuard:
    """A stage whose estimated miss probability ``p`` is not zero runs only if ``p <= max_risk`` and ``price * p <=
    w``, where ``w`` is the probability that the answer so far is wrong (1 - its top softmax probability): inputs
    whose answer is most likely to improve take the risk of a late answer, confident ones do not.
    :meth:`observe` adapts the price so that the deadline-miss rate meets ``target_miss``."""

    latency: LatencyModel
    target_miss: float = 0.005  # deadline-miss rate the price is adapted to
    price: float = 10.0
    gain: float = 0.1  # log-price step per miss (and per 1/target met deadlines, back)
    max_risk: float = 0.5  # never start a stage more likely to miss than not
    min_price: float = 0.01
    max_price: float = 1e4
    weighed: bool = False  # a risk was weighed (0 < p <= max_risk) since the last ``observe``
    whole_runs = True

    def fits(self, k: int, elapsed_s: float, deadline_s: float, wrong: Callable[[], float] | None = None) -> bool:
        lat = self.latency
        remaining = lat.remaining(elapsed_s, deadline_s)
        p = lat.miss_prob(k, remaining)
        ok = p == 0.0
        # a stage whose typical run (load level) does not fit is not a risk but a certain miss
        if not ok and p <= self.max_risk and lat.stages[k].mean <= remaining and wrong is not None:
            self.weighed = True
            ok = self.price * p <= wrong()
        if ok:
            lat.ran(k)
            return True
        return lat.skipped(k)

    def observe(self, deadline_met: bool) -> None:
        """A miss multiplies the price by exp(gain x (1 - target)), a met deadline by exp(-gain x target), so the
        price settles where the miss rate of the frames that weighed a risk is the target (multiplicative: the
        price spans decades).

        Anti-windup: only frames that weighed a risk (a stage with 0 < p <= max_risk) move the price. The others
        (every stage certain to fit, or certain not to) do not depend on it: letting their met deadlines lower it
        would leave it at its floor after a calm spell, so the next load step would start with a burst of misses;
        letting their misses (stage 0 alone preempted) raise it would ratchet it up for nothing."""
        weighed, self.weighed = self.weighed, False
        if not weighed:
            return
        step = self.gain * ((0.0 if deadline_met else 1.0) - self.target_miss)
        self.price = min(self.max_price, max(self.min_price, self.price * math.exp(step)))
