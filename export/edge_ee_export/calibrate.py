"""Calibration: per-exit temperatures on one split, exit thresholds with a guarantee on another.

1. Cache every exit's logits (and learned confidences) on ``calib_temp`` and ``calib_thr``.
2. Fit one temperature per exit (Guo et al. 2017) by minimising the NLL on ``calib_temp``.
3. On ``calib_thr``, the runtime's calibration core (:mod:`edge_ee.calibration`, the same code ``edge-ee profile``
   runs on the device) builds the accuracy-vs-MACs frontier and selects thresholds with Learn-then-Test, so that
   P(accuracy drop vs the final exit on new data > ``target_drop``) <= 1 - ``confidence``. The exit rule
   (max_softmax, entropy, confidence where the heads have one) is chosen on the ordering part of that split only,
   so the test part stays untouched and the guarantee holds.

The frontier, the chosen point and its guarantee go into the manifest's ``calibration``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edge_ee.calibration import ExitTable, select_point_estimate, select_risk_controlled
from edge_ee.calibration.select import MIN_FRAMES, ORDER_FRACTION, conditions_too_small, split_indices
from edge_ee.core.exit_rules import DEFAULT_RULE, RULES

from .attach import EarlyExitModel
from .data import TensorSplit
from .train import batches

log = logging.getLogger("edge_ee_export")


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


def exit_table(out: ExitOutputs, temps: list[float], rule: str, segment_macs: list[int],
               head_macs: list[int]) -> ExitTable:
    """The runtime's calibration table for cached outputs: adaptive MACs of answering at exit k."""
    k = len(out.logits) - 1
    cum = np.cumsum(np.array(segment_macs) + np.array(head_macs), dtype=np.float64)
    return ExitTable.from_outputs([rule] * k + [DEFAULT_RULE], temps, out.logits, out.conf, cum, labels=out.labels,
                                  full_macs=float(sum(segment_macs) + head_macs[-1]))


def guarantee_conditions(conditions: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    """The per-frame conditions to hold the guarantee in, or None and why not: every condition needs
    ``MIN_FRAMES`` threshold-calibration frames, else the guarantee is on the pooled frames (quick runs)."""
    if conditions is None:
        return None, None
    few = conditions_too_small(conditions)
    if few:
        return None, (f"guarantee on the pooled frames, not per condition: too few threshold-calibration frames in "
                      f"{', '.join(few)} (at least {MIN_FRAMES} each)")
    return np.asarray(conditions).astype(str), None


def select_thresholds(out: ExitOutputs, temps: list[float], segment_macs: list[int], head_macs: list[int],
                      target_drop: float = 0.01, confidence: float = 0.9, rules: list[str] | None = None,
                      levels: int = 40, max_points: int = 30, seed: int = 0,
                      conditions: np.ndarray | None = None) -> dict[str, Any]:
    """Frontier + risk-controlled thresholds on ``out`` (the threshold split): the manifest ``calibration`` keys
    that depend on the thresholds. Used on the PyTorch model's outputs and again on an int8 bundle's own outputs.
    ``conditions`` (one name per frame): the guarantee holds in each condition at once."""
    k = len(out.logits) - 1
    has_conf = k > 0 and all(c is not None for c in out.conf[:k])
    rules = rules or [name for name, r in RULES.items() if has_conf or not r.needs_confidence]
    order_idx, _ = split_indices(out.n, ORDER_FRACTION, seed)
    tables = {r: exit_table(out, temps, r, segment_macs, head_macs) for r in rules}
    # the rule whose point estimate is cheapest on the ordering part (the test part is not looked at)
    per_rule = {r: select_point_estimate(t.subset(order_idx), target_drop) for r, t in tables.items()}
    rule = min(rules, key=lambda r: (per_rule[r].mean_macs or 0.0))
    table = tables[rule]
    front = table.frontier(levels=levels, max_points=max_points)
    note = None
    if out.n >= MIN_FRAMES:
        cond, note = guarantee_conditions(conditions)
        if note:
            log.warning("calibration: %s", note)
        sel = select_risk_controlled(table, target_drop, confidence, order_fraction=ORDER_FRACTION, levels=levels,
                                     seed=seed, conditions=cond)
        chosen, guarantee = sel.point, sel.guarantee
    else:  # quick runs (--train-limit): no guarantee is possible, say so in the bundle
        note = (f"no guarantee: {out.n} threshold-calibration frames (a guarantee needs at least {MIN_FRAMES}); "
                "point estimate")
        log.warning("calibration: %s", note)
        chosen, guarantee = select_point_estimate(table, target_drop), None
    correct = table.correct
    assert correct is not None
    any_correct = correct.any(0)
    first = np.where(any_correct, correct.argmax(0), k)
    cost_exit_at = np.cumsum(segment_macs)[: k + 1] + np.array(head_macs)  # exit_at mode
    full_macs = float(sum(segment_macs) + head_macs[-1])
    return {
        "rule": rule,
        "target_drop": target_drop,
        "confidence": confidence,
        "full_accuracy": float(correct[-1].mean()),
        "full_macs": full_macs,
        "exit_accuracy": [float(c.mean()) for c in correct],
        "exit_macs_adaptive": [float(x) for x in table.cum_macs],
        "exit_macs_exit_at": [float(x) for x in cost_exit_at],
        "oracle_macs_ratio": float(table.cum_macs[first].mean()) / full_macs,
        "oracle_accuracy": float(any_correct.mean()),
        "chosen": chosen.to_dict(),
        "guarantee": guarantee.to_dict() if guarantee is not None else None,
        **({"guarantee_note": note} if note else {}),
        "point_estimate": select_point_estimate(table, target_drop).to_dict(),
        "rules": {r: p.to_dict() for r, p in per_rule.items()},
        "operating_points": [p.to_dict() for p in front],
    }


def per_condition(cal: dict[str, Any]) -> bool:
    """Was the guarantee of this calibration held per condition (so a re-selection, e.g. for int8, must be too)?"""
    return bool((cal.get("guarantee") or {}).get("conditions"))


def calibrate(ee: EarlyExitModel, calib_temp: TensorSplit, calib_thr: TensorSplit, target_drop: float = 0.01,
              confidence: float = 0.9, rules: list[str] | None = None, levels: int = 40,
              max_points: int = 30, pooled: bool = False) -> dict[str, Any]:
    """Fit temperatures on ``calib_temp`` and thresholds with a guarantee on ``calib_thr``; return the manifest
    ``calibration`` dict. The guarantee is held in each condition when ``calib_thr`` knows its inputs'
    conditions, unless ``pooled``."""
    a = collect(ee, calib_temp)
    b = collect(ee, calib_thr)
    k = ee.num_early
    temps = [fit_temperature(a.logits[i], a.labels) for i in range(k + 1)]
    ct = ee.cost_table()
    cal = select_thresholds(b, temps, ct["segment_macs"], ct["head_macs"], target_drop, confidence, rules, levels,
                            max_points, conditions=None if pooled else calib_thr.conditions)
    return {
        "method": "temperature on calib_temp, thresholds on calib_thr (learn-then-test)",
        **cal,
        "temperatures": temps,
        "ece_before": [ece(a.logits[i], a.labels, 1.0) for i in range(k + 1)],
        "ece_after": [ece(a.logits[i], a.labels, temps[i]) for i in range(k + 1)],
        "split": {"temperature": {"name": calib_temp.name, "size": len(calib_temp)},
                  "thresholds": {"name": calib_thr.name, "size": len(calib_thr)}},
    }
