"""``edge-ee profile``: on-target calibration of a bundle.

On the device, one pass per input runs every segment and every head (``Engine.infer_all_exits``):

* latency of each segment and head (warm-up discarded; mean, p50, p95, p99) and its energy from the
  power sampler: the energy **above the idle baseline** measured at start (``*_energy_mj``), with the
  total including idle power beside it (``*_energy_total_mj``); "estimated" when no sensor. The time
  windows are recorded during profiling and integrated once power samples cover them (a final wait
  for one more sample), so no window is extrapolated from a stale reading;
* the latency that decides (the frontier's, each exit's ``adaptive_ms`` and the full model's) is measured on the
  calls ``run`` makes: every stage through ``Engine.infer`` (one call per stage when the bundle has merged stage
  graphs) and ``mode="full"`` (one call when it has the one-graph full model), not as the sum of separate
  segment and head calls, which would overstate both;
* every exit's answer on the calibration data: accuracy against the source's ground truth (e.g.
  ``--source sample``), or without labels the agreement with the final exit (the usual case on a
  device: no labels needed);
* the accuracy (or agreement) vs latency/energy frontier of threshold vectors for the exit rule in
  force, and the cheapest point within ``--target-drop`` of the final exit.

Profile schema 2 (``edge-ee-profile/2``; schema 1 stored total energies, idle included, and is
refused with a message to re-create it):

* ``stages[k]``: ``segment_ms``/``head_ms`` percentiles; ``segment_energy_mj``, ``head_energy_mj`` and
  ``energy_mj`` (segment + head), above idle; ``energy_total_mj`` (segment + head, idle included);
* ``exits[k]``: accuracy/agreement, ``adaptive_ms`` and ``adaptive_energy_mj`` (every stage up to k,
  above idle; ``adaptive_energy_total_mj`` idle included), ``exit_at_ms`` and ``exit_at_energy_mj``;
* ``frontier`` points and ``chosen``: ``latency_ms``, ``energy_mj`` (above idle), quality, exit fractions;
* ``full_model``: ``latency_ms``, ``latency_p99_ms``, ``energy_mj`` (above idle), ``energy_total_mj``;
* ``power``: source, rail, ``estimated``, ``baseline_w`` (the idle baseline), ``extrapolated_windows``.

The profile is JSON keyed by device (board, CPU, cores, arch, power mode, onnxruntime version and
providers) and by the bundle's content hash. ``edge-ee run`` picks a matching profile up (beside the
bundle, or in ``~/.local/state/edge-ee/profiles/``) for its thresholds and the controller's frontier,
and ignores, with a warning, one made on another device or for another bundle.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import ExitTable, select_point_estimate, select_risk_controlled
from ..calibration.select import MIN_FRAMES, Guarantee, check_request
from ..core.bundle import Bundle
from ..core.engine import Engine
from ..core.exit_rules import get_rule
from ..errors import ConfigError, OutputError, SourceError, UsageError
from ..pipeline.preprocess import make_preprocessor

log = logging.getLogger("edge_ee.profile")

SCHEMA = "edge-ee-profile/2"
OLD_SCHEMAS = {"edge-ee-profile/1": "its energies include idle power, and its per-stage energies could come "
                                    "from a stale power reading"}
PROFILE_NAME = "profile.json"
IDENTITY_KEYS = ("board", "cpu", "cores", "machine", "power_mode", "onnxruntime", "providers", "threads")


# ---- identity and storage --------------------------------------------------------------------------
def device_identity(engine: Any = None) -> dict[str, Any]:
    """The identity a profile is keyed on; with ``engine``, its providers in use and intra-op threads."""
    from ..device import device_identity as ident
    from ..device import engine_session_facts

    d = ident(*engine_session_facts(engine)) if engine is not None else ident()
    return {k: d.get(k) for k in IDENTITY_KEYS}


def device_key(identity: dict[str, Any]) -> str:
    blob = json.dumps({k: identity.get(k) for k in IDENTITY_KEYS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edge-ee" / "profiles"


def candidate_paths(bundle: Bundle) -> list[Path]:
    """Where ``run`` looks for a profile: beside the bundle (not for the embedded one), then the state dir."""
    out = [] if bundle.is_embedded else [bundle.path / PROFILE_NAME]
    out.append(state_dir() / f"{bundle.content_hash()[:16]}.json")
    return out


def default_out(bundle: Bundle) -> Path:
    """Beside the bundle when that directory is writable (and not the embedded one inside the
    package), else the per-user state directory keyed by the bundle hash."""
    if not bundle.is_embedded and os.access(bundle.path, os.W_OK):
        return bundle.path / PROFILE_NAME
    return state_dir() / f"{bundle.content_hash()[:16]}.json"


def write_profile(profile: dict[str, Any], path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(profile, indent=2) + "\n")
        tmp.replace(path)
    except OSError as e:
        raise OutputError(f"cannot write the profile {path}: {e.strerror or e}",
                          "pass --out FILE somewhere writable") from e
    return path


def read_profile(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read profile {path}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"profile {path} is not valid JSON: {e}") from e
    if isinstance(d, dict) and d.get("schema") in OLD_SCHEMAS:
        raise ConfigError(f"profile {path} has the old schema {d['schema']} ({OLD_SCHEMAS[d['schema']]}); this "
                          f"edge-ee reads {SCHEMA}", "re-create it with `edge-ee profile`")
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not an edge-ee profile (schema {d.get('schema') if isinstance(d, dict) else '?'}"
                          f", expected {SCHEMA})", "re-create it with `edge-ee profile`")
    for key in ("device", "bundle", "frontier", "chosen"):
        if key not in d:
            raise ConfigError(f"profile {path} lacks {key!r}", "re-create it with `edge-ee profile`")
    return d


def mismatch(profile: dict[str, Any], bundle: Bundle, identity: dict[str, Any] | None = None) -> list[str]:
    """Why the profile does not belong to this bundle on this device (empty: it does)."""
    out = []
    want = bundle.content_hash()
    have = (profile.get("bundle") or {}).get("hash")
    if have != want:
        out.append(f"it was made for another bundle (hash {str(have)[:12]}..., this bundle {want[:12]}...)")
    ident = identity if identity is not None else device_identity()
    pdev = profile.get("device") or {}
    diff = [k for k in IDENTITY_KEYS if pdev.get(k) != ident.get(k)]
    if diff:
        out.append("it was made on another device or software stack ("
                   + "; ".join(f"{k}: {pdev.get(k)!r} here {ident.get(k)!r}" for k in diff) + ")")
    return out


def find_profile(bundle: Bundle, explicit: Path | None = None, warn: Callable[[str], None] | None = None,
                 engine: Any = None) -> tuple[dict[str, Any] | None, Path | None]:
    """The matching profile for ``bundle`` on this device (and ``engine``'s providers and threads, when
    given), or (None, None). An explicit path that cannot be read raises ConfigError; a profile for
    another bundle/device is ignored with a warning."""
    if warn is None:
        def warn(msg: str) -> None:
            log.warning("%s", msg)
    paths = [explicit] if explicit is not None else [p for p in candidate_paths(bundle) if p.is_file()]
    ident: dict[str, Any] | None = None
    for p in paths:
        try:
            prof = read_profile(p)
        except ConfigError as e:
            if explicit is not None:
                raise
            warn(f"ignoring profile: {e}")
            continue
        if ident is None:
            ident = device_identity(engine)
        why = mismatch(prof, bundle, ident)
        if why:
            warn(f"ignoring profile {p}: " + "; ".join(why) + ". Re-run `edge-ee profile` on this device.")
            continue
        return prof, p
    return None, None


# ---- statistics -----------------------------------------------------------------------------------
def _pct(v: np.ndarray) -> dict[str, float | None]:
    if v.size == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    ms = v * 1e3
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99))}


# ---- the profiling run ------------------------------------------------------------------------------
def run_profile(engine: Engine, source: Any, *, frames: int = 500, warmup: int = 20, labels: str = "auto",
                target_drop: float = 0.01, confidence: float | None = 0.9, power_prefer: str | None = None,
                baseline_s: float = 1.0, sampler: Any = None,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Profile ``engine`` on ``source`` (an open Source). ``labels``: auto | source | none. ``confidence``: select the
    thresholds with a guarantee (risk <= ``target_drop`` with this probability, :mod:`edge_ee.calibration.select`);
    None: the point estimate (the cheapest point meeting the target on these frames, no guarantee)."""
    from ..power import PowerSampler, discover
    from ..power.sampler import WindowIntegrator

    if labels not in ("auto", "source", "none"):
        raise UsageError(f"--labels {labels!r}: use auto, source (ground truth from the source) or none")
    if confidence is not None and engine.num_stages > 1:
        check_request(target_drop, confidence, MIN_FRAMES)
        if frames + warmup < MIN_FRAMES:
            raise UsageError(f"--frames {frames}: a guarantee needs at least {MIN_FRAMES} calibration frames (a 1% "
                             "target at 90% confidence needs a few thousand)", "profile more frames (--frames N)")
    m = engine.manifest
    bundle = engine.bundle
    pre = make_preprocessor(m.input)
    own = sampler is None
    if sampler is None:
        sampler = PowerSampler(discover(power_prefer)).start()
    try:
        if sampler.baseline_w is None and sampler.known_baseline() is not None:
            sampler.set_baseline(sampler.known_baseline())  # type: ignore[arg-type]
        if sampler.baseline_w is None:
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
        ns = engine.num_stages
        logits: list[list[np.ndarray]] = [[] for _ in range(ns)]
        confs: list[list[float | None]] = [[] for _ in range(ns)]
        truths: list[str | None] = []
        seg_t: list[list[float]] = [[] for _ in range(ns)]
        head_t: list[list[float]] = [[] for _ in range(ns)]
        path_t: list[list[float]] = [[] for _ in range(ns)]  # stage k on the path run uses (merged graph or not)
        full_t: list[float] = []  # the plain model on the path --mode full uses (one graph when the bundle has it)
        windows = WindowIntegrator(sampler)  # integrated once samples cover them, not from a stale reading
        total = frames + warmup
        saved = list(engine.thresholds)
        never = [get_rule(r).never for r in engine.rules[:-1]]
        i = 0
        while i < total:
            fr = source.read()
            if fr is None:
                break
            x = pre(fr.data)
            a = engine.infer_all_exits(x)
            # latency as `run` pays it: every stage through the calls adaptive mode makes, and the full model
            engine.set_thresholds(never)
            r_all = engine.infer(x)
            engine.set_thresholds(saved)
            r_full = engine.infer(x, mode="full")
            if i >= warmup:
                for k in range(ns):
                    path_t[k].append((r_all.segment_ms[k] + (r_all.head_ms[k] or 0.0)) / 1e3)
                full_t.append((sum(r_full.segment_ms) + sum(h or 0.0 for h in r_full.head_ms)) / 1e3)
                t = a.t_start
                for k in range(ns):
                    s_, h_ = a.segment_s[k], a.head_s[k]
                    seg_t[k].append(s_)
                    head_t[k].append(h_)
                    windows.add(("segment", k), t, t + s_)
                    if h_ > 0:
                        windows.add(("head", k), t + s_, t + s_ + h_)
                    t += s_ + h_
                windows.update()
            for k in range(ns):
                logits[k].append(a.logits[k])
                confs[k].append(a.confidence[k])
            truths.append(fr.meta.get("truth"))
            i += 1
            if progress and i % 200 == 0:
                progress(f"{i} inputs profiled")
        n = len(truths)
        if n == 0:
            raise SourceError("the source gave no input to profile")
        if n <= warmup:
            raise SourceError(f"only {n} inputs from the source; profiling needs more than the {warmup} warm-up "
                              "inputs", "use a longer source or --warmup 0")
        sums = windows.finish()  # waits for a sample after the last window
        estimated = bool(sampler.estimated)
        src_info = sampler.info()
    finally:
        if own:
            sampler.stop()

    lg = [np.stack(v) for v in logits]
    preds = np.stack([v.argmax(1) for v in lg])  # [exits, N]
    agree = preds == preds[-1]
    have_truth = all(t is not None for t in truths)
    if labels == "source" and not have_truth:
        raise UsageError("--labels source: the source has no ground truth for every input",
                         "use --source sample or images:DIR with class-named folders, or --labels none")
    use_labels = labels != "none" and have_truth
    correct = None
    lab_idx = {name: j for j, name in enumerate(m.labels)}
    unknown = sorted({str(t) for t in truths if t is not None and t not in lab_idx})
    if use_labels and unknown:
        msg = f"ground-truth labels not in the bundle's labels: {', '.join(unknown[:5])}"
        if labels == "source":
            raise UsageError(msg, "use a source labelled with this bundle's classes, or --labels none")
        log.warning("%s; calibrating on agreement with the final exit instead", msg)
        use_labels = False
    if use_labels:
        truth_idx = np.array([lab_idx[t] for t in truths])  # type: ignore[index]
        correct = preds == truth_idx[None, :]

    seg_ms = [np.array(v) for v in seg_t]
    head_ms = [np.array(v) for v in head_t]
    st_lat = np.array([np.mean(path_t[k]) for k in range(ns)]) * 1e3  # as adaptive runs pay it
    cum_lat = np.cumsum(st_lat)  # adaptive: answering at exit k costs every segment and head up to k
    # energy per stage part [mJ]: above idle (None without a baseline) and total; a stage without head: 0
    extrapolated = sum(v.extrapolated for v in sums.values())
    if extrapolated:
        log.warning("power: %d of %d time windows were not covered by power samples (the last reading was held)",
                    extrapolated, sum(v.n for v in sums.values()))

    def part_means(above_idle: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """Mean energy [mJ] of each segment and each head (0 for a stage without head); None if unknown."""
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

    above, total_e = part_means(True), part_means(False)
    st_e = above[0] + above[1] if above is not None else None
    st_tot = total_e[0] + total_e[1] if total_e is not None else None
    cum_en = np.cumsum(st_e) if st_e is not None else None  # the frontier's energies: above idle
    cum_tot = np.cumsum(st_tot) if st_tot is not None else None
    cum_macs = np.cumsum([s.segment.macs + (s.head.macs if s.head else 0) for s in m.stages]).astype(float)

    rule = engine.rules[0]
    table = ExitTable.from_outputs(
        engine.rules, [h.temperature if h else 1.0 for h in engine.heads], lg,
        [np.array(c, dtype=float) if c and c[0] is not None else None for c in confs], cum_macs,
        labels=truth_idx if correct is not None else None, cum_latency_ms=cum_lat, cum_energy_mj=cum_en,
        full_macs=float(m.full_model_macs()))
    pts = table.frontier(levels=16, cost="latency_ms") if ns > 1 else []
    qual_full = float(correct[-1].mean()) if correct is not None else 1.0
    guarantee = None
    point_estimate = select_point_estimate(table, target_drop, "latency_ms") if ns > 1 else None
    if ns > 1 and confidence is not None:
        sel = select_risk_controlled(table, target_drop, confidence, cost="latency_ms")
        chosen, guarantee = sel.point, sel.guarantee
    else:
        chosen = point_estimate

    # full model (mode full): every segment and only the final head
    full_lat = float(np.mean(full_t)) * 1e3
    full_e = float(above[0].sum() + above[1][-1]) if above is not None else None
    full_tot = float(total_e[0].sum() + total_e[1][-1]) if total_e is not None else None
    full_samples = np.array(full_t)
    exits = []
    for k in range(ns):
        exit_at = float(sum(seg_ms[j].mean() for j in range(k + 1)) + head_ms[k].mean()) * 1e3
        exit_at_e = float(above[0][: k + 1].sum() + above[1][k]) if above is not None else None
        exits.append({
            "exit": k,
            "accuracy": float(correct[k].mean()) if correct is not None else None,
            "agreement": float(agree[k].mean()),
            "adaptive_ms": float(cum_lat[k]),
            "exit_at_ms": exit_at,
            "exit_at_energy_mj": exit_at_e,
            "adaptive_energy_mj": float(cum_en[k]) if cum_en is not None else None,
            "adaptive_energy_total_mj": float(cum_tot[k]) if cum_tot is not None else None,
            "adaptive_macs": float(cum_macs[k]),
        })
    stages = []
    for k in range(ns):
        stages.append({
            "segment_ms": _pct(seg_ms[k]),
            "head_ms": _pct(head_ms[k]) if m.stages[k].head else None,
            "segment_energy_mj": float(above[0][k]) if above is not None else None,
            "head_energy_mj": float(above[1][k]) if above is not None and m.stages[k].head else None,
            "energy_mj": float(st_e[k]) if st_e is not None else None,
            "energy_total_mj": float(st_tot[k]) if st_tot is not None else None,
        })
    ident = device_identity(engine)
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": ident,
        "device_key": device_key(ident),
        "bundle": {"name": m.name, "hash": bundle.content_hash(), "path": str(bundle.path.resolve())},
        "rule": rule,
        "inputs": n,
        "warmup_discarded": warmup,
        "measured_inputs": n - warmup,
        "quality_metric": "accuracy" if correct is not None else "agreement_with_final_exit",
        "target_drop": target_drop,
        "confidence": confidence,
        "guarantee": guarantee.to_dict() if guarantee is not None else None,
        "point_estimate": point_estimate.to_dict() if point_estimate is not None else None,
        "full_quality": qual_full,
        "power": {"source": src_info.get("kind"), "name": src_info.get("name"), "rail": src_info.get("rail"),
                  "estimated": estimated, "baseline_w": src_info.get("baseline_w"),
                  "model": (src_info.get("model") or {}).get("name"), "extrapolated_windows": extrapolated,
                  "failed_sources": src_info.get("failed_sources")},
        "energy_note": "energies are above the idle baseline (power.baseline_w); keys ending in "
                       "energy_total_mj include idle power",
        "stages": stages,
        "exits": exits,
        "full_model": {"latency_ms": full_lat, "latency_p99_ms": float(np.percentile(full_samples, 99) * 1e3),
                       "energy_mj": full_e, "energy_total_mj": full_tot, "macs": m.full_model_macs(),
                       "accuracy": float(correct[-1].mean()) if correct is not None else None},
        "frontier": [p.to_dict() for p in pts],
        "chosen": chosen.to_dict() if chosen is not None else None,
    }


def format_profile(p: dict[str, Any]) -> str:
    from ..control.energy_hook import describe_power

    pw = p["power"]
    est = " (ESTIMATED)" if pw["estimated"] else ""
    est_c = ", ESTIMATED" if pw["estimated"] else ""
    qm = p["quality_metric"].replace("_", " ")
    lines = [f"profile of {p['bundle']['name']} on {p['device'].get('board') or p['device'].get('cpu')} "
             f"({p['measured_inputs']} inputs measured, {p['warmup_discarded']} warm-up discarded)",
             "power: " + describe_power({**pw, "kind": pw.get("source")})]
    lines.append(f"{'stage':>5} {'seg p50':>8} {'seg p99':>8} {'head p50':>8} {'head p99':>8} {'seg mJ':>8} "
                 f"{'head mJ':>8} {'accuracy' if qm == 'accuracy' else 'agrees w/ final':>15}"
                 f"   (ms; mJ above idle{est_c})")
    for k, (s, e) in enumerate(zip(p["stages"], p["exits"])):
        h = s["head_ms"] or {}
        q = e["accuracy"] if e["accuracy"] is not None else e["agreement"]
        lines.append(f"{k:>5} {s['segment_ms']['p50']:>8.4f} {s['segment_ms']['p99']:>8.4f} "
                     f"{_f(h.get('p50')):>8} {_f(h.get('p99')):>8} {_f(s.get('segment_energy_mj')):>8} "
                     f"{_f(s.get('head_energy_mj')):>8} {100 * q:>14.2f}%")
    f = p["full_model"]
    fe = "" if f["energy_mj"] is None else f", {f['energy_mj']:.4f} mJ above idle"
    if f.get("energy_total_mj") is not None:
        fe += f", {f['energy_total_mj']:.4f} mJ with idle power"
    fe += est if fe else ""
    lines.append(f"full model: {f['latency_ms']:.4f} ms mean{fe}")
    if pw.get("extrapolated_windows"):
        lines.append(f"warning: {pw['extrapolated_windows']} time windows were not covered by power samples")
    c = p["chosen"]
    if c:
        ce = "" if c.get("energy_mj") is None else f", {c['energy_mj']:.4f} mJ above idle{est}"
        q = c.get("accuracy") if c.get("accuracy") is not None else c.get("agreement", 0.0)
        how = (f"{qm} drop <= {100 * p['target_drop']:.2g} pp at {100 * p['confidence']:.3g}% confidence"
               if p.get("guarantee") else f"{qm} within {100 * p['target_drop']:.2g} pp of the final exit here")
        lines.append(f"chosen ({how}): thresholds "
                     f"{[round(t, 4) for t in c['thresholds']]} -> {qm} {100 * q:.2f}%, "
                     f"{c['latency_ms']:.4f} ms{ce}, exits {[round(x, 3) for x in c['exit_fractions']]}")
    g = p.get("guarantee")
    if g:
        lines.append("guarantee: " + Guarantee.from_dict(g).describe())
    elif p.get("frontier"):
        lines.append("guarantee: none (point estimate: the cheapest point meeting the target on these frames; "
                     "it can miss the target on new data)")
    lines.append(f"frontier: {len(p['frontier'])} operating points")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def plot_profile(p: dict[str, Any], path: Path) -> Path:
    """PNG: quality vs latency (and vs energy) along the frontier, chosen point marked. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise UsageError("--plot needs matplotlib", "pip install 'edge-ee[plot]'") from e
    front = p["frontier"]
    qk = "accuracy" if p["quality_metric"] == "accuracy" else "agreement"
    est = " (estimated)" if p["power"]["estimated"] else ""
    has_e = all(pt.get("energy_mj") is not None for pt in front) and front
    fig, axes = plt.subplots(1, 2 if has_e else 1, figsize=(11 if has_e else 6, 4.2), squeeze=False)
    for ax, key, xl in [(axes[0][0], "latency_ms", "mean latency per inference [ms]")] + (
            [(axes[0][1], "energy_mj", f"energy per inference above idle [mJ]{est}")] if has_e else []):
        xs = [pt[key] for pt in front]
        ys = [100 * pt[qk] for pt in front]
        ax.plot(xs, ys, "o-", ms=3, label="frontier (threshold vectors)")
        c = p.get("chosen")
        if c and c.get(key) is not None:
            ax.plot([c[key]], [100 * c[qk]], "r*", ms=14, label="chosen")
        full = p["full_model"]
        fx = full["latency_ms"] if key == "latency_ms" else full.get("energy_mj")
        if fx is not None:
            ax.axvline(fx, color="grey", ls="--", lw=1, label="full model")
        ax.set_xlabel(xl)
        ax.set_ylabel(f"{qk} [%]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{p['bundle']['name']} on {p['device'].get('board') or p['device'].get('cpu')}", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise OutputError(f"cannot write the plot {path}: {e.strerror or e}") from e
    finally:
        plt.close(fig)
    return path
