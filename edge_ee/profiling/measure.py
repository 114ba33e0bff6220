"""The profiling run of ``edge-ee profile`` (what :mod:`edge_ee.profiling.profile` describes): every exit on the
calibration inputs, the latency ``run`` pays and the energy of every segment and head, then the frontier and
the thresholds chosen on it. Storage, lookup and formatting live in :mod:`edge_ee.profiling.profile`."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..calibration import ExitTable, select_point_estimate, select_risk_controlled
from ..calibration.select import MIN_FRAMES, check_request
from ..core.engine import Engine
from ..core.exit_rules import get_rule
from ..errors import SourceError, UsageError
from ..pipeline.preprocess import make_preprocessor
from .profile import SCHEMA, device_identity, device_key

log = logging.getLogger("edge_ee.profile")

Progress = Callable[[str], None] | None


@dataclass
class Measurements:
    """What one pass over the calibration inputs recorded (times in seconds)."""

    num_stages: int
    logits: list[list[np.ndarray]] = field(default_factory=list)
    confs: list[list[float | None]] = field(default_factory=list)
    truths: list[Any] = field(default_factory=list)
    seg_t: list[list[float]] = field(default_factory=list)
    head_t: list[list[float]] = field(default_factory=list)
    path_t: list[list[float]] = field(default_factory=list)  # stage k on the path run uses (merged graph or not)
    full_t: list[float] = field(default_factory=list)  # the plain model on the path --mode full uses
    sums: dict[Any, Any] = field(default_factory=dict)  # energy per (part, stage) window, once integrated
    power: dict[str, Any] = field(default_factory=dict)  # the power source's description (empty: none)
    estimated: bool = False

    def __post_init__(self) -> None:
        n = self.num_stages
        self.logits, self.confs = [[] for _ in range(n)], [[] for _ in range(n)]
        self.seg_t, self.head_t, self.path_t = [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)]


def _pct(v: np.ndarray) -> dict[str, float | None]:
    if v.size == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    ms = v * 1e3
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99))}


def _check_request(engine: Engine, frames: int, warmup: int, labels: str, target_drop: float,
                   confidence: float | None) -> None:
    if labels not in ("auto", "source", "none"):
        raise UsageError(f"--labels {labels!r}: use auto, source (ground truth from the source) or none")
    if confidence is not None and engine.num_stages > 1:
        check_request(target_drop, confidence, MIN_FRAMES)
        if frames + warmup < MIN_FRAMES:
            raise UsageError(f"--frames {frames}: a guarantee needs at least {MIN_FRAMES} calibration frames (a 1% "
                             "target at 90% confidence needs a few thousand)", "profile more frames (--frames N)")


def _baseline(sampler: Any, baseline_s: float, progress: Progress) -> None:
    """The idle baseline: one the sampler already knows, else measured now, else the source's idle model."""
    if sampler.baseline_w is None and sampler.known_baseline() is not None:
        sampler.set_baseline(sampler.known_baseline())
    if sampler.baseline_w is not None:
        return
    if baseline_s > 0:
        if progress:
            progress(f"measuring the idle power baseline for {baseline_s:g} s (keep the device idle)")
        try:
            sampler.measure_baseline(baseline_s)
        except RuntimeError as e:
            log.warning("power: no idle baseline (%s)", e)
    elif getattr(sampler.source, "idle_power_w", None) is not None:
        sampler.set_baseline(float(sampler.source.idle_power_w))
    else:
        log.warning("power: no idle baseline (--power-baseline 0 and %s has no idle model): energies "
                    "above idle are not available, only totals", sampler.source.name)


def _one_input(engine: Engine, x: np.ndarray, never: list[float], meas: Measurements, windows: Any,
               measured: bool) -> Any:
    """Every exit of one input, the latency ``run`` pays for it (every stage, and the full model) and, past the
    warm-up, the time windows of every segment and head for the energy integration."""
    a = engine.infer_all_exits(x)
    saved = list(engine.thresholds)
    engine.set_thresholds(never)  # every stage through the calls adaptive mode makes
    r_all = engine.infer(x)
    engine.set_thresholds(saved)
    r_full = engine.infer(x, mode="full")
    if measured:
        ns = meas.num_stages
        for k in range(ns):
            meas.path_t[k].append((r_all.segment_ms[k] + (r_all.head_ms[k] or 0.0)) / 1e3)
        meas.full_t.append((sum(r_full.segment_ms) + sum(h or 0.0 for h in r_full.head_ms)) / 1e3)
        t = a.t_start
        for k in range(ns):
            s_, h_ = a.segment_s[k], a.head_s[k]
            meas.seg_t[k].append(s_)
            meas.head_t[k].append(h_)
            if windows is not None:
                windows.add(("segment", k), t, t + s_)
                if h_ > 0:
                    windows.add(("head", k), t + s_, t + s_ + h_)
            t += s_ + h_
        if windows is not None:
            windows.update()
    return a


def _measure(engine: Engine, source: Any, frames: int, warmup: int, sampler: Any, progress: Progress) -> Measurements:
    """One pass over ``frames + warmup`` inputs of ``source`` (fewer if it ends)."""
    from ..power.sampler import WindowIntegrator

    meas = Measurements(engine.num_stages)
    pre = make_preprocessor(engine.manifest.input)
    windows = WindowIntegrator(sampler) if sampler is not None else None  # integrated once samples cover them
    never = [get_rule(r).never for r in engine.rules[:-1]]
    while len(meas.truths) < frames + warmup:
        fr = source.read()
        if fr is None:
            break
        a = _one_input(engine, pre(fr.data), never, meas, windows, len(meas.truths) >= warmup)
        for k in range(meas.num_stages):
            meas.logits[k].append(a.logits[k])
            meas.confs[k].append(a.confidence[k])
        meas.truths.append(fr.meta.get("truth"))
        if progress and len(meas.truths) % 200 == 0:
            progress(f"{len(meas.truths)} inputs profiled")
    n = len(meas.truths)
    if n == 0:
        raise SourceError("the source gave no input to profile")
    if n <= warmup:
        raise SourceError(f"only {n} inputs from the source; profiling needs more than the {warmup} warm-up "
                          "inputs", "use a longer source or --warmup 0")
    if sampler is not None:
        meas.sums = windows.finish()  # type: ignore[union-attr]  # waits for a sample after the last window
        meas.estimated = bool(sampler.estimated)
        meas.power = sampler.info()
    return meas


def _correct(meas: Measurements, labels: str, class_names: list[str], preds: np.ndarray
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(correct[exit, input], the truths' class indices) against the ground truth, or (None, None) to calibrate
    on agreement with the final exit."""
    truths = meas.truths
    have_truth = all(t is not None for t in truths)
    if labels == "source" and not have_truth:
        raise UsageError("--labels source: the source has no ground truth for every input",
                         "use --source sample or images:DIR with class-named folders, or --labels none")
    if labels == "none" or not have_truth:
        return None, None
    lab_idx = {name: j for j, name in enumerate(class_names)}
    unknown = sorted({str(t) for t in truths if t not in lab_idx})
    if unknown:
        msg = f"ground-truth labels not in the bundle's labels: {', '.join(unknown[:5])}"
        if labels == "source":
            raise UsageError(msg, "use a source labelled with this bundle's classes, or --labels none")
        log.warning("%s; calibrating on agreement with the final exit instead", msg)
        return None, None
    truth_idx = np.array([lab_idx[t] for t in truths])
    return preds == truth_idx[None, :], truth_idx


def _part_means(sums: dict[Any, Any], ns: int, above_idle: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean energy [mJ] of each segment and each head (0 for a stage without head); None if unknown."""
    if not sums:
        return None
    seg: list[float] = []
    head: list[float] = []
    for k in range(ns):
        sv, hv = sums.get(("segment", k)), sums.get(("head", k))
        a = sv.mean_mj(above_idle) if sv is not None else None
        b = hv.mean_mj(above_idle) if hv is not None else 0.0
        if a is None or b is None:
            return None
        seg.append(a)
        head.append(b)
    return np.array(seg), np.array(head)


def _cum(parts: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """Cumulative energy of answering at each exit in adaptive mode (every segment and head up to it)."""
    return None if parts is None else np.cumsum(parts[0] + parts[1])


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def _exits(meas: Measurements, cum_lat: np.ndarray, cum_macs: np.ndarray, correct: np.ndarray | None,
           agree: np.ndarray, above: Any, total: Any) -> list[dict[str, Any]]:
    seg_ms = [np.array(v) for v in meas.seg_t]
    head_ms = [np.array(v) for v in meas.head_t]
    cum_en, cum_tot = _cum(above), _cum(total)
    exits = []
    for k in range(meas.num_stages):
        exit_at = float(sum(seg_ms[j].mean() for j in range(k + 1)) + head_ms[k].mean()) * 1e3
        exits.append({
            "exit": k,
            "accuracy": float(correct[k].mean()) if correct is not None else None,
            "agreement": float(agree[k].mean()),
            "adaptive_ms": float(cum_lat[k]),
            "exit_at_ms": exit_at,
            "exit_at_energy_mj": _f(above[0][: k + 1].sum() + above[1][k]) if above is not None else None,
            "adaptive_energy_mj": _f(cum_en[k]) if cum_en is not None else None,
            "adaptive_energy_total_mj": _f(cum_tot[k]) if cum_tot is not None else None,
            "adaptive_macs": float(cum_macs[k]),
        })
    return exits


def _stages(meas: Measurements, has_head: list[bool], above: Any, total: Any) -> list[dict[str, Any]]:
    stages = []
    for k in range(meas.num_stages):
        stages.append({
            "segment_ms": _pct(np.array(meas.seg_t[k])),
            "head_ms": _pct(np.array(meas.head_t[k])) if has_head[k] else None,
            "segment_energy_mj": _f(above[0][k]) if above is not None else None,
            "head_energy_mj": _f(above[1][k]) if above is not None and has_head[k] else None,
            "energy_mj": _f(above[0][k] + above[1][k]) if above is not None else None,
            "energy_total_mj": _f(total[0][k] + total[1][k]) if total is not None else None,
        })
    return stages


def _power_section(meas: Measurements, extrapolated: int) -> dict[str, Any]:
    info = meas.power
    return {"source": info.get("kind"), "name": info.get("name"), "rail": info.get("rail"),
            "estimated": meas.estimated, "baseline_w": info.get("baseline_w"),
            "model": (info.get("model") or {}).get("name"), "extrapolated_windows": extrapolated,
            "failed_sources": info.get("failed_sources")}


def _select(table: ExitTable, ns: int, target_drop: float, confidence: float | None) -> tuple[Any, Any, Any]:
    """(chosen point, its guarantee or None, the point estimate) on the latency frontier."""
    point_estimate = select_point_estimate(table, target_drop, "latency_ms") if ns > 1 else None
    if ns > 1 and confidence is not None:
        sel = select_risk_controlled(table, target_drop, confidence, cost="latency_ms")
        return sel.point, sel.guarantee, point_estimate
    return point_estimate, None, point_estimate


def run_profile(engine: Engine, source: Any, *, frames: int = 500, warmup: int = 20, labels: str = "auto",
                target_drop: float = 0.01, confidence: float | None = 0.9, power_prefer: str | None = None,
                baseline_s: float = 1.0, sampler: Any = None, progress: Progress = None) -> dict[str, Any]:
    """Profile ``engine`` on ``source`` (an open Source). ``labels``: auto | source | none. ``confidence``: select the
    thresholds with a guarantee (risk <= ``target_drop`` with this probability, :mod:`edge_ee.calibration.select`);
    None: the point estimate (the cheapest point meeting the target on these frames, no guarantee).
    ``power_prefer``: the power source as ``--power-source`` takes it (``"none"``: latency only, no energies)."""
    from ..power import PowerSampler, discover, parse_prefer

    _check_request(engine, frames, warmup, labels, target_drop, confidence)
    own = sampler is None and not parse_prefer(power_prefer).off
    if own:
        sampler = PowerSampler(discover(parse_prefer(power_prefer).spec)).start()
    try:
        if sampler is not None:
            _baseline(sampler, baseline_s, progress)
        meas = _measure(engine, source, frames, warmup, sampler, progress)
    finally:
        if own:
            sampler.stop()
    return _build(engine, meas, labels, warmup, target_drop, confidence)


def _build(engine: Engine, meas: Measurements, labels: str, warmup: int, target_drop: float,
           confidence: float | None) -> dict[str, Any]:
    """The profile document from the measurements: quality per exit, frontier, chosen point, costs."""
    m, ns = engine.manifest, engine.num_stages
    lg = [np.stack(v) for v in meas.logits]
    preds = np.stack([v.argmax(1) for v in lg])  # [exits, N]
    correct, truth_idx = _correct(meas, labels, list(m.labels), preds)
    cum_lat = np.cumsum([np.mean(meas.path_t[k]) for k in range(ns)]) * 1e3  # as adaptive runs pay it
    extrapolated = sum(v.extrapolated for v in meas.sums.values())
    if extrapolated:
        log.warning("power: %d of %d time windows were not covered by power samples (the last reading was held)",
                    extrapolated, sum(v.n for v in meas.sums.values()))
    above, total = _part_means(meas.sums, ns, True), _part_means(meas.sums, ns, False)
    cum_macs = np.cumsum([s.segment.macs + (s.head.macs if s.head else 0) for s in m.stages]).astype(float)
    table = ExitTable.from_outputs(
        engine.rules, [h.temperature if h else 1.0 for h in engine.heads], lg,
        [np.array(c, dtype=float) if c and c[0] is not None else None for c in meas.confs], cum_macs,
        labels=truth_idx, cum_latency_ms=cum_lat, cum_energy_mj=_cum(above), full_macs=float(m.full_model_macs()))
    pts = table.frontier(levels=16, cost="latency_ms") if ns > 1 else []
    chosen, guarantee, point_estimate = _select(table, ns, target_drop, confidence)
    ident = device_identity(engine)
    n = len(meas.truths)
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": ident,
        "device_key": device_key(ident),
        "bundle": {"name": m.name, "hash": engine.bundle.content_hash(), "path": str(engine.bundle.path.resolve())},
        "rule": engine.rules[0],
        "inputs": n,
        "warmup_discarded": warmup,
        "measured_inputs": n - warmup,
        "quality_metric": "accuracy" if correct is not None else "agreement_with_final_exit",
        "target_drop": target_drop,
        "confidence": confidence,
        "guarantee": _dict(guarantee),
        "point_estimate": _dict(point_estimate),
        "full_quality": float(correct[-1].mean()) if correct is not None else 1.0,
        "power": _power_section(meas, extrapolated),
        "energy_note": "energies are above the idle baseline (power.baseline_w); keys ending in "
                       "energy_total_mj include idle power",
        "stages": _stages(meas, [s.head is not None for s in m.stages], above, total),
        "exits": _exits(meas, cum_lat, cum_macs, correct, preds == preds[-1], above, total),
        "full_model": _full_model(meas, m.full_model_macs(), correct, above, total),
        "frontier": [p.to_dict() for p in pts],
        "chosen": _dict(chosen),
    }


def _dict(x: Any) -> dict[str, Any] | None:
    return None if x is None else x.to_dict()


def _full_model(meas: Measurements, macs: int, correct: np.ndarray | None, above: Any, total: Any) -> dict[str, Any]:
    """The model without early exits (mode full): every segment and only the final head."""
    return {"latency_ms": float(np.mean(meas.full_t)) * 1e3,
            "latency_p99_ms": float(np.percentile(np.array(meas.full_t), 99) * 1e3),
            "energy_mj": _f(above[0].sum() + above[1][-1]) if above is not None else None,
            "energy_total_mj": _f(total[0].sum() + total[1][-1]) if total is not None else None,
            "macs": macs,
            "accuracy": float(correct[-1].mean()) if correct is not None else None}
