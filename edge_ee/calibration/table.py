"""Cached exit outputs -> exits taken for a threshold vector -> operating points -> Pareto frontier.

An :class:`ExitTable` holds, for N calibration inputs, every early exit's *firing key* (the rule's score mapped so
that larger means "exit sooner", see :mod:`edge_ee.core.exit_rules`), every exit's predicted class, the labels
when there are any, and the adaptive cost of answering at each exit. Everything after that is numpy on the cache:
the profile (`edge-ee profile`, on the device) and the exporter (``edge_ee_export.calibrate``, on the workstation)
both build one and call the same frontier and selection code.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..core.exit_rules import DEFAULT_RULE, get_rule
from .points import OperatingPoint, pareto

_Raw = tuple[float, float, tuple[float, ...]]  # (cost, quality, threshold keys)
_Score = Callable[[np.ndarray], np.ndarray]  # per-input quality [G, N] of G threshold vectors -> their quality [G]


def _upper_envelope(raw: list[_Raw]) -> list[tuple[float, tuple[float, ...]]]:
    """Cheapest first, each point strictly better in quality than every cheaper one."""
    raw.sort(key=lambda r: (r[0], -r[1]))
    front: list[tuple[float, tuple[float, ...]]] = []
    best = -math.inf
    for c, q, t in raw:
        if q > best + 1e-12:
            front.append((c, t))
            best = q
    return front


@dataclass
class ExitTable:
    keys: np.ndarray  # [K, N] firing keys of the K early exits
    preds: np.ndarray  # [K + 1, N] predicted class at every exit (the last is the final classifier)
    rules: list[str]  # exit rule of each early exit
    cum_macs: np.ndarray  # [K + 1] MACs of answering at exit k in adaptive mode (every segment and head up to k)
    labels: np.ndarray | None = None  # [N] ground truth, or None (label-free: quality = agreement with the final)
    cum_latency_ms: np.ndarray | None = None  # [K + 1] measured on the device (profile)
    cum_energy_mj: np.ndarray | None = None  # [K + 1] above idle (profile)
    full_macs: float | None = None  # the plain model (all segments + final head, no early heads)

    # ---- construction
    @classmethod
    def from_outputs(cls, rules: Sequence[str], temperatures: Sequence[float], logits: Sequence[np.ndarray],
                     confidences: Sequence[np.ndarray | None], cum_macs: Sequence[float],
                     labels: np.ndarray | None = None, **costs: object) -> ExitTable:
        """``logits[k]``: ``[N, C]`` for every exit (the last one is the final classifier); ``confidences[k]``: the
        learned confidence ``[N]`` or None; ``rules``/``temperatures``: per early exit (and the final)."""
        k = len(logits) - 1
        keys = np.stack([get_rule(rules[i]).key(get_rule(rules[i]).scores(logits[i], temperatures[i],
                                                                          confidences[i])) for i in range(k)]) \
            if k else np.zeros((0, len(logits[0])))
        preds = np.stack([np.asarray(lg).reshape(len(lg), -1).argmax(1) for lg in logits])
        return cls(keys=np.asarray(keys, np.float64), preds=preds, rules=list(rules[:k]),
                   cum_macs=np.asarray(cum_macs, np.float64),
                   labels=None if labels is None else np.asarray(labels), **costs)  # type: ignore[arg-type]

    @property
    def n(self) -> int:
        return int(self.preds.shape[1])

    @property
    def num_early(self) -> int:
        return int(self.keys.shape[0])

    @property
    def rule(self) -> str:
        return self.rules[0] if self.rules else DEFAULT_RULE

    def subset(self, idx: np.ndarray) -> ExitTable:
        return replace(self, keys=self.keys[:, idx], preds=self.preds[:, idx],
                       labels=None if self.labels is None else self.labels[idx])

    def with_labels(self, use: bool) -> ExitTable:
        return self if use else replace(self, labels=None)

    # ---- per-input outcomes
    @property
    def correct(self) -> np.ndarray | None:
        return None if self.labels is None else self.preds == self.labels[None, :]

    @property
    def agree(self) -> np.ndarray:
        return self.preds == self.preds[-1][None, :]

    def exits(self, key_thresholds: Sequence[float]) -> np.ndarray:
        """Exit index per input: the first early exit whose key reaches its threshold's key, else the final."""
        ex = np.full(self.n, self.num_early)
        undecided = np.ones(self.n, bool)
        for k, t in enumerate(key_thresholds):
            f = undecided & (self.keys[k] >= t)
            ex[f] = k
            undecided &= ~f
        return ex

    def key_thresholds(self, thresholds: Sequence[float]) -> list[float]:
        return [float(get_rule(r).key(t)) for r, t in zip(self.rules, thresholds)]

    def thresholds_of_keys(self, keys: Sequence[float]) -> list[float]:
        return [get_rule(r).threshold_of_key(k) for r, k in zip(self.rules, keys)]

    def never_keys(self) -> list[float]:
        return [float(get_rule(r).key(get_rule(r).never)) for r in self.rules]

    def point(self, key_thresholds: Sequence[float], note: str = "") -> OperatingPoint:
        """Quality, cost and exit fractions of one threshold vector (key space) on this table."""
        ex = self.exits(key_thresholds)
        idx = np.arange(self.n)
        correct = self.correct
        macs = float(self.cum_macs[ex].mean())
        return OperatingPoint(
            thresholds=self.thresholds_of_keys(key_thresholds),
            accuracy=float(correct[ex, idx].mean()) if correct is not None else None,
            agreement=float(self.agree[ex, idx].mean()),
            mean_macs=macs,
            exit_fractions=[float(v) for v in np.bincount(ex, minlength=self.num_early + 1) / self.n],
            latency_ms=float(self.cum_latency_ms[ex].mean()) if self.cum_latency_ms is not None else None,
            energy_mj=float(self.cum_energy_mj[ex].mean()) if self.cum_energy_mj is not None else None,
            macs_ratio=macs / self.full_macs if self.full_macs else None,
            note=note,
        )

    def outcome_counts(self, key_thresholds: Sequence[float]) -> tuple[int, int, int]:
        """(worse, better, disagree): inputs where the answer given is wrong and the final exit's right, right where
        the final is wrong (labels needed for both; else 0), and differs from the final exit's answer."""
        ex = self.exits(key_thresholds)
        idx = np.arange(self.n)
        disagree = int((self.preds[ex, idx] != self.preds[-1]).sum())
        correct = self.correct
        if correct is None:
            return 0, 0, disagree
        given, final = correct[ex, idx], correct[-1]
        return int((final & ~given).sum()), int((given & ~final).sum()), disagree

    # ---- the frontier
    def candidates(self, levels: int) -> list[np.ndarray]:
        """Per early exit: key quantiles of the data plus the never-firing key."""
        return [np.unique(np.concatenate([np.quantile(self.keys[k], np.linspace(0.0, 1.0, levels)), [nk]]))
                for k, nk in enumerate(self.never_keys())]

    def _score(self, qual: np.ndarray, groups: np.ndarray | None) -> _Score:
        """Quality of threshold vectors from their per-input quality: the mean; with ``groups`` (a name per input),
        the worst group's mean relative to the final exit's in that group (a drop, <= 0 where some group loses)."""
        if groups is None:
            return lambda v: v.mean(1)
        masks = [groups == g for g in np.unique(groups)]
        base = [float(qual[-1][m].mean()) for m in masks]
        return lambda v: np.min(np.stack([v[:, m].mean(1) - b for m, b in zip(masks, base)]), axis=0)

    def _grid(self, cands: list[np.ndarray], qual: np.ndarray, cost_of: np.ndarray, score: _Score) -> list[_Raw]:
        """(cost, quality, thresholds) of every vector of the key-quantile grid, vectorised over the last exit."""
        k, idx = self.num_early, np.arange(self.n)
        raw: list[_Raw] = []
        last = self.keys[k - 1][None, :] >= cands[-1][:, None]  # [G, N]
        fire = [self.keys[i][None, :] >= c[:, None] for i, c in enumerate(cands[:-1])]
        for combo in itertools.product(*[range(len(c)) for c in cands[:-1]]):
            ex = np.full(self.n, k)
            undecided = np.ones(self.n, bool)
            for i, g in enumerate(combo):
                f = undecided & fire[i][g]
                ex[f] = i
                undecided &= ~f
            e2 = np.where(undecided[None, :] & last, k - 1, ex[None, :])  # [G, N]
            q = score(qual[e2, idx[None, :]])
            c = cost_of[e2].mean(1)
            head = tuple(float(cands[i][g]) for i, g in enumerate(combo))
            raw.extend((float(c[g]), float(q[g]), head + (float(cands[-1][g]),)) for g in range(len(cands[-1])))
        return raw

    def _sampled(self, cands: list[np.ndarray], qual: np.ndarray, cost_of: np.ndarray, score: _Score,
                 samples: int, seed: int) -> list[_Raw]:
        """(cost, quality, thresholds) of ``samples`` random grid vectors and of the never-exit vector."""
        rng = np.random.default_rng(seed)
        idx = np.arange(self.n)
        raw: list[_Raw] = []
        for _ in range(samples):
            t = tuple(float(c[rng.integers(len(c))]) for c in cands)
            ex = self.exits(t)
            raw.append((float(cost_of[ex].mean()), float(score(qual[ex, idx][None, :])[0]), t))
        raw.append((float(cost_of[-1]), float(score(qual[-1][None, :])[0]), tuple(self.never_keys())))
        return raw

    def frontier(self, levels: int = 40, max_points: int | None = 30, cost: str = "mean_macs",
                 samples: int = 20000, seed: int = 0, groups: np.ndarray | None = None) -> list[OperatingPoint]:
        """Pareto frontier of quality (accuracy with labels, else agreement with the final exit) against ``cost``
        (``mean_macs`` or ``latency_ms``) over threshold vectors: the full grid of key quantiles for up to 3 early
        exits (vectorised over the last exit), ``samples`` random grid vectors beyond. Cheapest first; the ends
        (every input at exit 0, none before the final) are always on it. ``groups`` (a condition name per input):
        quality is the worst condition's, relative to the final exit there, so the frontier orders points by the
        risk a per-condition guarantee tests (its points report pooled figures and are not re-filtered on them)."""
        k = self.num_early
        if k == 0:
            return [self.point([])]
        cost_of = self.cum_latency_ms if cost == "latency_ms" else self.cum_macs
        if cost_of is None:
            raise ValueError(f"no {cost} per exit in this table")
        qual = self.correct if self.correct is not None else self.agree
        cands = self.candidates(levels)
        score = self._score(qual, groups)
        raw = self._grid(cands, qual, cost_of, score) if k <= 3 else \
            self._sampled(cands, qual, cost_of, score, samples, seed)
        front = _upper_envelope(raw)
        if max_points is not None and len(front) > max_points:  # thin evenly in cost, ends kept
            cs = np.array([c for c, _ in front])
            keep = sorted({int(np.argmin(np.abs(cs - x))) for x in np.linspace(cs[0], cs[-1], max_points)}
                          | {0, len(front) - 1})
            front = [front[i] for i in keep]
        points = [self.point(t) for _, t in front]
        return points if groups is not None else pareto(points, cost)
