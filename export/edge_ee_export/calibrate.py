"""Calibration: per-exit temperatures on one split, exit thresholds on another.

1. Cache every exit's logits (and learned confidences) on ``calib_temp`` and ``calib_thr``.
2. Fit one temperature per exit (Guo et al. 2017) by minimising the NLL on ``calib_temp``.
3. On ``calib_thr``, evaluate threshold vectors (a grid of score quantiles per exit, the full
   grid for up to 3 early exits, coordinate search beyond), each giving accuracy, agreement with
   the final exit, exit fractions and the expected MACs in adaptive mode (segments run plus the
   heads evaluated). Keep the Pareto frontier (lowest MACs for a given accuracy) and pick the
   cheapest point whose accuracy drop versus the final exit is at most ``target_drop - margin``.

All rules the heads support are searched (max_softmax, entropy, confidence) and the cheapest is
kept; the whole table goes into the manifest's ``calibration``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .attach import EarlyExitModel
from .data import TensorSplit
from .train import batches

NEVER = {"max_softmax": 1.01, "confidence": 1.01, "entropy": -0.01}


@dataclass
class ExitOutputs:
    """Cached outputs of every exit on one split: ``logits[k]`` ``[N, C]``, ``conf[k]`` ``[N]`` or None."""

    logits: list[np.ndarray]
    conf: list[np.ndarray | None]
    labels: np.ndarray

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


@torch.no_grad()
def collect(ee: EarlyExitModel, split: TensorSplit, batch: int = 512) -> ExitOutputs:
    ee.eval()
    k = ee.num_early + 1
    logits: list[list[np.ndarray]] = [[] for _ in range(k)]
    conf: list[list[np.ndarray]] = [[] for _ in range(k)]
    for x, _y in batches(split, batch, False):
        for i, (lg, c) in enumerate(ee(x)):
            logits[i].append(lg.double().numpy())
            if c is not None:
                conf[i].append(c.double().reshape(-1).numpy())
    return ExitOutputs([np.concatenate(v) for v in logits],
                       [np.concatenate(v) if v else None for v in conf], split.y.numpy().copy())


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = z / t
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    p = softmax(logits, t)
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the NLL: log-grid search, then golden-section refinement."""
    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 60))
    vals = [nll(logits, labels, t) for t in grid]
    i = int(np.argmin(vals))
    lo, hi = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if nll(logits, labels, math.exp(a)) < nll(logits, labels, math.exp(b)):
            hi = b
        else:
            lo = a
    return float(math.exp((lo + hi) / 2))


def ece(logits: np.ndarray, labels: np.ndarray, t: float, bins: int = 15) -> float:
    p = softmax(logits, t)
    conf, pred = p.max(1), p.argmax(1)
    acc = pred == labels
    e = 0.0
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs(acc[m].mean() - conf[m].mean())
    return float(e)


def scores(rule: str, logits: np.ndarray, t: float, conf: np.ndarray | None) -> np.ndarray:
    """Score per sample such that the exit fires when score >= threshold (entropy: negated)."""
    if rule == "max_softmax":
        return softmax(logits, t).max(1)
    if rule == "entropy":
        p = softmax(logits, t)
        h = -(p * np.log(np.clip(p, 1e-300, None))).sum(1) / math.log(p.shape[1])
        return -h
    if rule == "confidence":
        assert conf is not None
        return conf
    raise ValueError(rule)


@dataclass
class Costs:
    segment_macs: list[int]
    head_macs: list[int]

    def adaptive(self) -> np.ndarray:
        """MACs spent when answering at exit k in adaptive mode (all heads up to k evaluated)."""
        return np.cumsum(np.array(self.segment_macs) + np.array(self.head_macs), dtype=np.float64)

    @property
    def full(self) -> int:
        return int(sum(self.segment_macs) + self.head_macs[-1])


class Evaluator:
    """Evaluates threshold vectors on cached outputs."""

    def __init__(self, out: ExitOutputs, temps: list[float], rule: str, costs: Costs) -> None:
        self.k = len(out.logits) - 1
        self.rule = rule
        self.sc = [scores(rule, out.logits[i], temps[i], out.conf[i]) for i in range(self.k)]
        preds = [lg.argmax(1) for lg in out.logits]
        self.correct = np.stack([p == out.labels for p in preds]).astype(np.float64)  # [K+1, N]
        self.agree = np.stack([p == preds[-1] for p in preds]).astype(np.float64)
        self.cost = costs.adaptive()
        self.full_macs = costs.full
        self.n = out.n

    def candidates(self, levels: int) -> list[np.ndarray]:
        """Per exit: score quantiles plus a never-firing value (1.01; entropy scores are <= 0: 0.01)."""
        never = 0.01 if self.rule == "entropy" else NEVER[self.rule]
        return [np.unique(np.concatenate([np.quantile(s, np.linspace(0.0, 1.0, levels)), [never]]))
                for s in self.sc]

    def exits_for(self, thr_scores: list[float]) -> np.ndarray:
        ex = np.full(self.n, self.k)
        undecided = np.ones(self.n, bool)
        for i, t in enumerate(thr_scores):
            f = undecided & (self.sc[i] >= t)
            ex[f] = i
            undecided &= ~f
        return ex

    def point(self, thr_scores: list[float]) -> dict[str, Any]:
        ex = self.exits_for(thr_scores)
        idx = np.arange(self.n)
        frac = np.bincount(ex, minlength=self.k + 1) / self.n
        macs = float(self.cost[ex].mean())
        return {
            "thresholds": [self.to_threshold(t) for t in thr_scores],
            "accuracy": float(self.correct[ex, idx].mean()),
            "agreement": float(self.agree[ex, idx].mean()),
            "mean_macs": macs,
            "macs_ratio": macs / self.full_macs,
            "exit_fractions": [float(f) for f in frac],
        }

    def to_threshold(self, s: float) -> float:
        """Score-space threshold -> manifest threshold (entropy: fires when entropy <= -score)."""
        if self.rule == "entropy":
            return float(-s)
        return float(min(s, NEVER[self.rule]))

    def grid(self, levels: int = 40) -> list[dict[str, Any]]:
        """(macs, acc) of many threshold vectors; full grid for <= 3 exits, coordinate search beyond."""
        cands = self.candidates(levels)
        pts: list[tuple[float, float, tuple[float, ...]]] = []
        idx = np.arange(self.n)
        if self.k <= 3:
            fires = [self.sc[i][None, :] >= c[:, None] for i, c in enumerate(cands)]  # [G_i, N]
            import itertools

            outer = list(itertools.product(*[range(len(c)) for c in cands[:-1]]))
            last = fires[-1]
            for combo in outer:
                undecided = np.ones(self.n, bool)
                ex = np.full(self.n, self.k)
                for i, g in enumerate(combo):
                    f = undecided & fires[i][g]
                    ex[f] = i
                    undecided &= ~f
                # vectorise over the last exit's thresholds
                e2 = np.where(undecided[None, :] & last, self.k - 1, ex[None, :])  # [G, N]
                acc = self.correct[e2, idx[None, :]].mean(1)
                macs = self.cost[e2].mean(1)
                for gi in range(len(cands[-1])):
                    pts.append((float(macs[gi]), float(acc[gi]),
                                tuple(float(cands[i][g]) for i, g in enumerate(combo)) + (float(cands[-1][gi]),)))
        else:
            rng = np.random.default_rng(0)
            for _ in range(20000):
                t = tuple(float(c[rng.integers(len(c))]) for c in cands)
                p = self.point(list(t))
                pts.append((p["mean_macs"], p["accuracy"], t))
        return self._pareto(pts)

    def _pareto(self, pts: list[tuple[float, float, tuple[float, ...]]]) -> list[dict[str, Any]]:
        pts.sort(key=lambda p: (p[0], -p[1]))
        front, best = [], -1.0
        for _m, a, t in pts:
            if a > best + 1e-12:
                front.append(t)
                best = a
        return [self.point(list(t)) for t in front]


def thin(front: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    """Keep at most ``max_points`` frontier points spread evenly in MACs (ends always kept)."""
    if len(front) <= max_points:
        return front
    macs = np.array([p["mean_macs"] for p in front])
    targets = np.linspace(macs[0], macs[-1], max_points)
    keep = sorted({int(np.argmin(np.abs(macs - t))) for t in targets} | {0, len(front) - 1})
    return [front[i] for i in keep]


def calibrate(ee: EarlyExitModel, calib_temp: TensorSplit, calib_thr: TensorSplit, target_drop: float = 0.01,
              margin: float = 0.0025, rules: list[str] | None = None, levels: int = 40,
              max_points: int = 30) -> dict[str, Any]:
    """Fit temperatures and thresholds; return the manifest ``calibration`` dict.

    The chosen point: lowest expected MACs with accuracy >= final accuracy - (target_drop - margin)
    on ``calib_thr`` (the margin absorbs the gap between calibration and test)."""
    a = collect(ee, calib_temp)
    b = collect(ee, calib_thr)
    k = ee.num_early
    temps = [fit_temperature(a.logits[i], a.labels) for i in range(k + 1)]
    ct = ee.cost_table()
    costs = Costs(ct["segment_macs"], ct["head_macs"])
    has_conf = all(c is not None for c in b.conf[:k])
    rules = rules or (["max_softmax", "entropy"] + (["confidence"] if has_conf else []))
    full_acc = float((b.logits[-1].argmax(1) == b.labels).mean())
    per_rule: dict[str, Any] = {}
    best_rule, best = None, None
    for rule in rules:
        ev = Evaluator(b, temps, rule, costs)
        front = ev.grid(levels)
        ok = [p for p in front if p["accuracy"] >= full_acc - (target_drop - margin) - 1e-12]
        chosen = dict(min(ok, key=lambda p: p["mean_macs"]) if ok else front[-1])
        chosen["meets_target"] = bool(ok)
        per_rule[rule] = {"chosen": chosen, "frontier": front}
        better = best is None or (chosen["meets_target"], -chosen["mean_macs"]) > (best["meets_target"],
                                                                                     -best["mean_macs"] + 1e-9)
        if better:
            best_rule, best = rule, chosen
    assert best_rule is not None and best is not None
    front = per_rule[best_rule]["frontier"]
    # the controller's frontier: thinned, with the chosen point and the max-accuracy point kept
    pts = thin(front, max_points)
    if not any(p["thresholds"] == best["thresholds"] for p in pts):
        pts = sorted(pts + [{k: v for k, v in best.items() if k != "meets_target"}], key=lambda p: p["mean_macs"])
    correct = np.stack([lg.argmax(1) == b.labels for lg in b.logits])
    any_correct = correct.any(0)
    first = np.where(any_correct, correct.argmax(0), k)
    cost_exit_at = np.cumsum(costs.segment_macs)[: k + 1] + np.array(costs.head_macs)  # exit_at mode
    oracle = float(costs.adaptive()[first].mean()) / costs.full
    return {
        "method": "temperature on calib_temp, thresholds on calib_thr",
        "rule": best_rule,
        "target_drop": target_drop,
        "margin": margin,
        "temperatures": temps,
        "ece_before": [ece(a.logits[i], a.labels, 1.0) for i in range(k + 1)],
        "ece_after": [ece(a.logits[i], a.labels, temps[i]) for i in range(k + 1)],
        "full_accuracy": full_acc,
        "full_macs": costs.full,
        "exit_accuracy": [float(c.mean()) for c in correct],
        "exit_macs_adaptive": [float(x) for x in costs.adaptive()],
        "exit_macs_exit_at": [float(x) for x in cost_exit_at],
        "oracle_macs_ratio": oracle,
        "oracle_accuracy": float(any_correct.mean()),
        "chosen": best,
        "rules": {r: v["chosen"] for r, v in per_rule.items()},
        "operating_points": pts,
        "split": {"temperature": {"name": calib_temp.name, "size": len(calib_temp)},
                  "thresholds": {"name": calib_thr.name, "size": len(calib_thr)}},
    }
