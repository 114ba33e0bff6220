"""Calibration with a guarantee, measured: risk-controlled vs point-estimate thresholds, and the run-time audit.

    python benchmarks/calibration.py                      # 25 splits, drift streams, one CLI run each, docs + plot
    python benchmarks/calibration.py --splits 5 --streams 10 --no-cli --no-docs   # quick look

**Splits.** Fashion-MNIST t10k (Debian's dataset-fashion-mnist) through the shipped image bundle, in three
conditions: clean, rotated by 15 degrees, Gaussian noise of sigma 15 (on 0-255 pixels, clipped, rounded). Every exit
runs on all 10,000 images once per condition (``Engine.infer_all_exits``, cached under ``.cache/benchmarks``); the
splits are numpy on the cache. Each split draws ``--calib`` images at random for calibration and tests on the rest
of the same condition. Selections, both from ``edge_ee.calibration`` (the core ``edge-ee profile`` and the exporter
use): the risk-controlled one (Learn-then-Test, ``--target``, ``--confidence``) and the point estimate (the cheapest
frontier point meeting the target on the calibration frames). With labels the risk is the accuracy drop against the
full model; without labels it is the disagreement with the final exit (and its accuracy drop is shown beside it). A
*violation* is a split whose test risk exceeds the target.

**Drift (``edge-ee run --audit 2%``).** Thresholds chosen without labels (risk-controlled, same target and
confidence) on half of the clean t10k images; streams are drawn from the other half. ``--streams`` simulated
streams per case feed the audit's own decision code (``edge_ee.calibration.audit.Auditor``) with the cached
outputs: clean streams of 20,000 frames (images repeated in random order), and streams that turn to images rotated
by 30 degrees after 1,000 clean frames. Reported: the share of clean streams with any alarm, and the delay from
the change to the alarm. Then the same two streams once through the real command line (``edge-ee run --source
images:DIR --audit 2%``, PNG files in stream order). The shipped thresholds (labelled calibration, default audit
target: target drop + the calibration's disagreement) are simulated too.

This process never imports torch. Writes the section between ``<!-- calibration:start -->`` and
``<!-- calibration:end -->`` of docs/benchmarks.md and docs/img/calibration.png.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from docsection import write_section  # noqa: E402

from edge_ee.calibration import ExitTable, select_point_estimate, select_risk_controlled  # noqa: E402
from edge_ee.calibration.audit import Auditor, AuditSettings, default_target  # noqa: E402
from edge_ee.core.bundle import load_bundle  # noqa: E402
from edge_ee.core.engine import Engine  # noqa: E402
from edge_ee.pipeline.datasets import load_fashion_mnist  # noqa: E402

DOC = ROOT / "docs/benchmarks.md"
PLOT = ROOT / "docs/img/calibration.png"
CACHE = ROOT / ".cache/benchmarks/calibration"
CONDITIONS = {"clean": "clean", "rot15": "rotated 15 degrees", "noise15": "Gaussian noise sigma 15"}


# --------------------------------------------------------------------------- transforms (numpy, 0-255 uint8)


def rotate(imgs: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate ``[N, H, W]`` images about their centre (bilinear, zero outside)."""
    n, h, w = imgs.shape
    th = np.deg2rad(degrees)
    c, s = np.cos(th), np.sin(th)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    xs = c * (xx - cx) + s * (yy - cy) + cx  # source coordinates of each output pixel
    ys = -s * (xx - cx) + c * (yy - cy) + cy
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    out = np.zeros((n, h, w))
    f = imgs.astype(np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            yi, xi = y0 + dy, x0 + dx
            wgt = (fy if dy else 1 - fy) * (fx if dx else 1 - fx)
            ok = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            out += wgt[None] * np.where(ok[None], f[:, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def noise(imgs: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed).normal(0.0, sigma, imgs.shape)
    return np.clip(np.rint(imgs.astype(np.float64) + g), 0, 255).astype(np.uint8)


def transform(imgs: np.ndarray, cond: str) -> np.ndarray:
    if cond == "clean":
        return imgs
    if cond.startswith("rot"):
        return rotate(imgs, float(cond[3:]))
    if cond.startswith("noise"):
        return noise(imgs, float(cond[5:]))
    raise ValueError(cond)


# --------------------------------------------------------------------------- every exit on every image, cached


def outputs(engine: Engine, bundle_hash: str, imgs: np.ndarray, cond: str) -> dict[str, np.ndarray]:
    """Logits ``[N, C]`` (and learned confidences) of every exit, from ``Engine.infer_all_exits``."""
    path = CACHE / f"{bundle_hash[:16]}-{cond}-{len(imgs)}.npz"
    if path.is_file():
        return dict(np.load(path))
    pre = engine.manifest.input.preprocess
    x = transform(imgs, cond).astype(np.float32) * float(pre["scale"])
    x = ((x - float(pre["mean"][0])) / float(pre["std"][0]))[:, None, None, :, :].astype(np.float32)
    t0 = time.perf_counter()
    runs = [engine.infer_all_exits(x[i]) for i in range(len(x))]
    print(f"  {cond}: every exit on {len(x)} images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    out: dict[str, np.ndarray] = {}
    for k in range(engine.num_stages):
        out[f"logits{k}"] = np.stack([r.logits[k] for r in runs])
        if runs[0].confidence[k] is not None:
            out[f"conf{k}"] = np.array([r.confidence[k] for r in runs])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def make_table(engine: Engine, out: dict[str, np.ndarray], labels: np.ndarray | None) -> ExitTable:
    m = engine.manifest
    ns = engine.num_stages
    cum_macs = np.cumsum([s.segment.macs + (s.head.macs if s.head else 0) for s in m.stages]).astype(float)
    return ExitTable.from_outputs(engine.rules, [h.temperature if h else 1.0 for h in engine.heads],
                                  [out[f"logits{k}"] for k in range(ns)], [out.get(f"conf{k}") for k in range(ns)],
                                  cum_macs, labels=labels, full_macs=float(m.full_model_macs()))


# --------------------------------------------------------------------------- splits


def evaluate(test: ExitTable, thresholds: list[float]) -> dict[str, float]:
    keys = test.key_thresholds(thresholds)
    worse, better, disagree = test.outcome_counts(keys)
    ex = test.exits(keys)
    return {"drop": (worse - better) / test.n, "disagreement": disagree / test.n,
            "macs": float(test.cum_macs[ex].mean() / test.full_macs), "early": float((ex < test.num_early).mean())}


def splits(table: ExitTable, n_splits: int, n_calib: int, target: float, confidence: float) -> dict[str, Any]:
    """Per label mode and method: per-split test results."""
    res: dict[str, Any] = {}
    for s in range(n_splits):
        perm = np.random.default_rng(1000 + s).permutation(table.n)
        cal, test = table.subset(perm[:n_calib]), table.subset(perm[n_calib:])
        for labelled in (True, False):
            ct = cal.with_labels(labelled)
            rc = select_risk_controlled(ct, target, confidence, seed=s)
            pe = select_point_estimate(ct, target)
            for method, point in (("risk-controlled", rc.point), ("point estimate", pe)):
                r = evaluate(test, point.thresholds)
                r["risk"] = r["drop"] if labelled else r["disagreement"]
                r["certified"] = bool(rc.guarantee.certified) if method == "risk-controlled" else None
                res.setdefault(("labels" if labelled else "no labels", method), []).append(r)
    return res


def summarise(rows: list[dict[str, float]], target: float) -> dict[str, float]:
    a = {k: np.array([r[k] for r in rows], float) for k in ("risk", "drop", "disagreement", "macs")}
    return {"violation_rate": float(np.mean(a["risk"] > target + 1e-12)), "mean_macs": float(a["macs"].mean()),
            "mean_drop": float(a["drop"].mean()), "max_risk": float(a["risk"].max()),
            "mean_disagreement": float(a["disagreement"].mean()), "n": len(rows)}


# --------------------------------------------------------------------------- drift


class _Sim:
    __slots__ = ("disagree",)

    def __init__(self, disagree: bool) -> None:
        self.disagree = disagree


def early_and_disagree(table: ExitTable, thresholds: list[float]) -> tuple[np.ndarray, np.ndarray]:
    keys = table.key_thresholds(thresholds)
    ex = table.exits(keys)
    idx = np.arange(table.n)
    return ex < table.num_early, table.preds[ex, idx] != table.preds[-1]


def simulate(streams: int, clean: tuple[np.ndarray, np.ndarray], shifted: tuple[np.ndarray, np.ndarray],
             pool: np.ndarray, fraction: float, target: float, seed: int = 0) -> dict[str, Any]:
    """Clean streams of 20,000 frames and streams that shift after 1,000 (to 19,000 shifted frames)."""
    rng = np.random.default_rng(seed)

    def run(early: np.ndarray, dis: np.ndarray, s: int) -> tuple[int | None, int]:
        au = Auditor(AuditSettings(fraction, target, seed=s))
        audits = 0
        for i in range(len(early)):
            e = bool(early[i])
            sample = None
            if e and au.draw():
                sample = _Sim(bool(dis[i]))
                audits += 1
            if au.frame(e, sample) is not None:
                return i, audits
        return None, audits

    false_alarms, clean_audits, delays, boosts = 0, [], [], 0
    for s in range(streams):
        idx = rng.choice(pool, 20_000)
        a, n = run(clean[0][idx], clean[1][idx], s)
        false_alarms += a is not None
        clean_audits.append(n / 20_000)
        i1, i2 = rng.choice(pool, 1000), rng.choice(pool, 19_000)
        a, _ = run(np.concatenate([clean[0][i1], shifted[0][i2]]), np.concatenate([clean[1][i1], shifted[1][i2]]),
                   10_000 + s)
        delays.append(np.inf if a is None else a - 1000)
    d = np.array(delays, float)
    found = d[np.isfinite(d)]
    return {"streams": streams, "false_alarm_streams": false_alarms,
            "audits_per_clean_frame": float(np.mean(clean_audits)),
            "detected_within_3000": float(np.mean(d <= 3000)), "early_alarms": int(np.sum(d < 0)),
            "median_delay": float(np.median(d)), "p90_delay": float(np.percentile(d, 90)),
            "max_delay": float(found.max()) if found.size else None, "missed": int(np.sum(~np.isfinite(d))),
            "clean_D": float((clean[0] & clean[1])[pool].mean()),
            "shifted_D": float((shifted[0] & shifted[1])[pool].mean()),
            "clean_early": float(clean[0][pool].mean()), "shifted_early": float(shifted[0][pool].mean()),
            "delays": [x if np.isfinite(x) else None for x in delays], "boosts": boosts}


def cli_stream(imgs: np.ndarray, order: list[tuple[str, int]], thresholds: list[float], target: float,
               fraction: float, workdir: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``edge-ee run --source images:DIR --audit`` over PNG files written in stream order."""
    import cv2

    d = workdir / f"stream{len(list(workdir.iterdir()))}"
    d.mkdir()
    cache: dict[str, np.ndarray] = {}
    for j, (cond, i) in enumerate(order):
        if cond not in cache:
            cache[cond] = transform(imgs, cond)
        cv2.imwrite(str(d / f"{j:06d}.png"), cache[cond][i])
    log, sj = d / "t.jsonl", d / "s.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "edge_ee", "run", "--source", f"images:{d}", "--thresholds",
           ",".join(f"{t:.6f}" for t in thresholds), "--audit", f"{100 * fraction:g}%", "--audit-target",
           f"{100 * target:g}%", *extra, "--power-source", "none", "--log", str(log), "--summary-json", str(sj), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"edge-ee run failed ({r.returncode}): {r.stderr}")
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    alarm = next((x["frame"] for x in recs if x.get("drift_alarm")), None)
    s = json.loads(sj.read_text())
    trace = [(x["frame"], x["audit_agreement"], x["audit_agreement_lower"], x["audit_agreement_upper"])
             for x in recs if "audit_agreement" in x]  # audited frames outside a recalibration
    return {"frames": len(recs), "first_alarm_frame": alarm, "audits": s["audit"]["samples"],
            "boosts": s["audit"]["boosts"], "mean_macs_ratio": s["mean_macs"] / s["full_macs"],
            "summary_line": next((ln for ln in r.stdout.splitlines() if ln.startswith("audit:")), ""),
            "warnings": [ln for ln in r.stderr.splitlines() if "DRIFT ALARM" in ln or "recalibrat" in ln],
            "trace": trace, "recalibrations": s["audit"]["recalibrations"],
            "command": " ".join(cmd[3:]).replace(str(d), "STREAM_DIR")}


# --------------------------------------------------------------------------- report


def pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def report(r: dict[str, Any]) -> str:
    a = r["args"]
    t, c = a["target"], a["confidence"]
    lines = ["## Calibration with a guarantee, and the run-time audit", "",
             f"`{r['command']}` on {r['machine']}, {r['date']}: the shipped bundle `{r['bundle']}`, Fashion-MNIST "
             f"t10k, {a['splits']} random splits of {a['calib']} calibration / {10000 - a['calib']} test images per "
             f"condition, target {pct(t, 0)} at confidence {pct(c, 0)}. A violation is a split whose test risk "
             "(accuracy drop vs the full model with labels; disagreement with the final exit without) exceeds the "
             "target. MACs are the test mean as a share of the full model's.", "",
             "| condition | full-model accuracy | labels | selection | violation rate | mean MACs | mean test drop "
             "| mean disagreement | worst test risk |", "|---|---|---|---|---|---|---|---|---|"]
    for cond, res in r["splits"].items():
        for key, sm in res["summary"].items():
            lab, meth = key.split(" / ")
            lines.append(f"| {CONDITIONS[cond]} | {pct(res['full_accuracy'], 2)} | {lab} | {meth} | "
                         f"{pct(sm['violation_rate'], 0)} | {pct(sm['mean_macs'])} | {100 * sm['mean_drop']:+.2f} pp | "
                         f"{pct(sm['mean_disagreement'], 2)} | {pct(sm['max_risk'], 2)} |")
    tg = r["targets"]
    lines += ["", "Targets (issue 11):", "",
              "- violation rate <= 10% in every condition, risk-controlled: "
              f"**{'met' if tg['violation'] else 'not met'}** "
              f"(worst {pct(tg['worst_violation'], 0)});",
              f"- the guarantee costs <= 8 pp of MACs against the point estimate on clean data: "
              f"**{'met' if tg['cost'] else 'not met'}** (with labels {tg['cost_labels']:+.1f} pp, without "
              f"{tg['cost_nolabels']:+.1f} pp);"]
    dr = r["drift"]
    lf = dr["label_free"]
    lines.append(f"- `--audit 2%`: alarm within 3,000 frames of the change to rotated-30 images, none in 20,000 "
                 "clean frames: "
                 f"**{'met' if tg['drift'] else 'not met'}** (simulated: {pct(lf['detected_within_3000'], 0)} "
                 f"of {lf['streams']} shifted streams within 3,000 frames, false alarms in "
                 f"{lf['false_alarm_streams']} of {lf['streams']} clean streams; command line: "
                 + (f"alarm {dr['cli_shift']['first_alarm_frame'] - 1000} frames after the change, "
                    if dr.get("cli_shift") and dr["cli_shift"]["first_alarm_frame"] is not None else
                    "no alarm after the change, " if dr.get("cli_shift") else "")
                 + (f"{'an alarm' if dr['cli_clean']['first_alarm_frame'] is not None else 'no alarm'} in "
                    f"{dr['cli_clean']['frames']} clean frames)." if dr.get("cli_clean") else "not run)."))
    lines += ["", "### Drift alarm (`edge-ee run --audit 2%`)", "",
              f"Thresholds chosen without labels (risk-controlled, {pct(t, 0)} at {pct(c, 0)}) on 5,000 clean t10k "
              f"images: {[round(x, 4) for x in dr['thresholds']]}; audit target {pct(t, 0)} (the calibration's "
              "label-free target). Streams use the other 5,000 images. Simulated streams run the audit's own "
              "decision code on the cached outputs; the command-line runs are single streams.", "",
              "| thresholds, audit target | D clean / rotated 30 | early answers clean / rotated | clean streams with "
              "an alarm | shifted streams with the alarm within 3,000 frames | delay median / p90 / max | audits per "
              "clean frame |", "|---|---|---|---|---|---|---|"]
    for name, sim in (("label-free risk-controlled, " + pct(t, 0), lf),
                      (f"shipped (labelled), {pct(dr['shipped_target'], 2)} ({dr['shipped_target_source']})",
                       dr["shipped"])):
        mx = "n/a" if sim["max_delay"] is None else f"{sim['max_delay']:.0f}"
        lines.append(f"| {name} | {pct(sim['clean_D'], 2)} / {pct(sim['shifted_D'], 2)} | "
                     f"{pct(sim['clean_early'])} / {pct(sim['shifted_early'])} | {sim['false_alarm_streams']} of "
                     f"{sim['streams']} | {pct(sim['detected_within_3000'], 0)} | {sim['median_delay']:.0f} / "
                     f"{sim['p90_delay']:.0f} / {mx} | {pct(sim['audits_per_clean_frame'], 2)} |")
    for key, what in (("cli_clean", "clean stream"), ("cli_shift", "1,000 clean then rotated-30 frames")):
        c_ = dr.get(key)
        if c_:
            al = c_["first_alarm_frame"]
            head = f"Command line, {what} ({c_['frames']} frames): " + \
                ("no alarm" if al is None else f"first alarm at frame {al}")
            lines += ["", f"{head}, {c_['audits']} audits, {c_['boosts']} boost(s), mean MACs "
                          f"{pct(c_['mean_macs_ratio'])} of the full model (audits included).", "",
                      f"    {c_['summary_line']}"]
            if c_["warnings"]:
                lines += [f"    {c_['warnings'][0]}"]
    rc = dr.get("cli_recal")
    if rc:
        lines += ["", f"Command line with `--recalibrate`, 1,000 clean then rotated-30 frames ({rc['frames']} frames):"]
        for r_ in rc["recalibrations"]:
            if r_.get("to") is None:
                lines.append(f"alarm at frame {r_['frame']}, recalibration not finished by the end of the stream.")
                continue
            b_, a_ = r_["rot30"]["before"], r_["rot30"]["after"]
            lines.append(
                f"alarm at frame {r_['frame']}; every input to the final exit until frame {r_['done']} "
                f"({r_['samples']} frames audited), then thresholds {[round(t, 4) for t in r_['to']]} "
                + ("(certified: disagreement on the audits " f"{pct(r_['disagreement_on_audits'], 2)}, upper bound "
                   f"{pct(r_['upper_bound'], 2)})" if r_["certified"] else "(nothing certified: final exit)")
                + f". On all rotated-30 test images: the old thresholds disagree with the final exit on "
                f"{pct(b_['disagreement'], 2)} at {pct(b_['macs'])} of the MACs, the new ones on "
                f"{pct(a_['disagreement'], 2)} at {pct(a_['macs'])}.")
    if dr.get("cli_command"):
        lines += ["", f"Command: `edge-ee {dr['cli_command']}`."]
    lines += ["", f"![calibration](img/{PLOT.name})", ""]
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    conds = list(r["splits"])
    keys = ["labels / risk-controlled", "labels / point estimate", "no labels / risk-controlled",
            "no labels / point estimate"]
    width = 0.2
    for j, key in enumerate(keys):
        v = [r["splits"][c]["summary"][key]["violation_rate"] * 100 for c in conds]
        m = [r["splits"][c]["summary"][key]["mean_macs"] * 100 for c in conds]
        xs = np.arange(len(conds)) + (j - 1.5) * width
        axes[0].bar(xs, v, width, label=key)
        axes[1].bar(xs, m, width, label=key)
    for ax, title in ((axes[0], "violation rate (%)"), (axes[1], "mean MACs (% of full model)")):
        ax.set_xticks(np.arange(len(conds)))
        ax.set_xticklabels([CONDITIONS[c] for c in conds], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].axhline(100 * (1 - r["args"]["confidence"]), color="k", ls="--", lw=1)
    axes[0].legend(fontsize=7)
    ax = axes[2]
    tr = (r["drift"].get("cli_shift") or {}).get("trace") or []
    if tr:
        f, a, lo, hi = (np.array(v, float) for v in zip(*tr))
        ax.plot(f, 100 * (1 - a), label="disagreement estimate (telemetry)")
        ax.fill_between(f, 100 * (1 - hi), 100 * (1 - lo), alpha=0.3, label="90% interval")
        ax.axvline(1000, color="gray", ls=":", label="change to rotated 30")
        al = r["drift"]["cli_shift"]["first_alarm_frame"]
        if al is not None:
            ax.axvline(al, color="r", ls="--", label="drift alarm")
        ax.axhline(100 * r["args"]["target"], color="k", lw=1, label="target")
        ax.legend(fontsize=7)
    ax.set_title("edge-ee run --audit 2%: the audit's estimate", fontsize=10)
    ax.set_xlabel("frame")
    ax.set_ylabel("disagreement with the final exit (%)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(ROOT / "edge_ee/bundles/fashion_mnist"))
    p.add_argument("--splits", type=int, default=25)
    p.add_argument("--calib", type=int, default=5000, help="calibration images per split (the rest test)")
    p.add_argument("--target", type=float, default=0.01)
    p.add_argument("--confidence", type=float, default=0.9)
    p.add_argument("--audit", type=float, default=0.02)
    p.add_argument("--streams", type=int, default=100, help="simulated drift streams per case")
    p.add_argument("--no-cli", action="store_true", help="skip the two command-line drift runs")
    p.add_argument("--no-docs", action="store_true", help="print the section; do not write docs/ or the plot")
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    a = p.parse_args()
    bundle = load_bundle(a.bundle)
    engine = Engine(bundle)
    bh = bundle.content_hash()
    imgs, y = load_fashion_mnist(None, "test")
    y = y.astype(np.int64)
    full_macs = bundle.manifest.full_model_macs()
    res: dict[str, Any] = {"args": vars(a) | {"json": None}, "bundle": bundle.manifest.name,
                           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                                      f"Python {platform.python_version()}",
                           "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           "command": "python benchmarks/calibration.py" + "".join(
                               f" {x}" for x in sys.argv[1:]), "splits": {}, "full_macs": full_macs}
    print("every exit on t10k, per condition:", file=sys.stderr)
    tables = {c: make_table(engine, outputs(engine, bh, imgs, c), y) for c in [*CONDITIONS, "rot30"]}
    for cond in CONDITIONS:
        t0 = time.perf_counter()
        per = splits(tables[cond], a.splits, a.calib, a.target, a.confidence)
        res["splits"][cond] = {"full_accuracy": float(tables[cond].correct[-1].mean()),
                               "summary": {f"{k[0]} / {k[1]}": summarise(v, a.target) for k, v in per.items()}}
        print(f"  {cond}: {a.splits} splits in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    sm = {c: res["splits"][c]["summary"] for c in CONDITIONS}
    worst = max(s["violation_rate"] for c in CONDITIONS for k, s in sm[c].items() if k.endswith("risk-controlled"))
    cost_l = 100 * (sm["clean"]["labels / risk-controlled"]["mean_macs"]
                    - sm["clean"]["labels / point estimate"]["mean_macs"])
    cost_n = 100 * (sm["clean"]["no labels / risk-controlled"]["mean_macs"]
                    - sm["clean"]["no labels / point estimate"]["mean_macs"])

    # drift: label-free thresholds on one half of clean t10k, streams from the other half
    perm = np.random.default_rng(7).permutation(len(y))
    cal_idx, pool = perm[:5000], perm[5000:]
    sel = select_risk_controlled(tables["clean"].subset(cal_idx).with_labels(False), a.target, a.confidence)
    th = sel.point.thresholds
    print(f"drift: label-free thresholds {th} ({sel.guarantee.describe()})", file=sys.stderr)
    lf = simulate(a.streams, early_and_disagree(tables["clean"], th), early_and_disagree(tables["rot30"], th), pool,
                  a.audit, a.target)
    shipped_th = engine.manifest.default_thresholds()
    st, st_src = default_target(engine.manifest, None)
    shipped = simulate(a.streams, early_and_disagree(tables["clean"], shipped_th),
                       early_and_disagree(tables["rot30"], shipped_th), pool, a.audit, st, seed=1)
    drift: dict[str, Any] = {"thresholds": th, "guarantee": sel.guarantee.to_dict(), "label_free": lf,
                             "shipped": shipped, "shipped_target": st, "shipped_target_source": st_src}
    if not a.no_cli:
        rng = random.Random(11)
        with tempfile.TemporaryDirectory() as td:
            w = Path(td)
            drift["cli_clean"] = cli_stream(imgs, [("clean", int(rng.choice(pool))) for _ in range(20_000)], th,
                                            a.target, a.audit, w)
            order = [("clean", int(rng.choice(pool))) for _ in range(1000)] + \
                [("rot30", int(rng.choice(pool))) for _ in range(3000)]
            drift["cli_shift"] = cli_stream(imgs, order, th, a.target, a.audit, w)
            drift["cli_command"] = drift["cli_shift"]["command"]
            order = [("clean", int(rng.choice(pool))) for _ in range(1000)] + \
                [("rot30", int(rng.choice(pool))) for _ in range(11_000)]
            rc = cli_stream(imgs, order, th, a.target, a.audit, w, ("--recalibrate",))
            for r_ in rc["recalibrations"]:
                if r_.get("to") is not None:
                    r_["rot30"] = {"before": evaluate(tables["rot30"].subset(pool), r_["from"]),
                                   "after": evaluate(tables["rot30"].subset(pool), r_["to"])}
            drift["cli_recal"] = rc
    res["drift"] = drift
    cs, cc = drift.get("cli_shift"), drift.get("cli_clean")
    cli_ok = (cs is None or (cs["first_alarm_frame"] is not None and 1000 <= cs["first_alarm_frame"] <= 4000)) and \
        (cc is None or cc["first_alarm_frame"] is None)
    res["targets"] = {"violation": worst <= 0.10, "worst_violation": worst, "cost": cost_l <= 8 and cost_n <= 8,
                      "cost_labels": cost_l, "cost_nolabels": cost_n,
                      "drift": lf["detected_within_3000"] >= 0.9 and lf["false_alarm_streams"] == 0 and cli_ok}
    text = report(res)
    print(text)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=float))
    if not a.no_docs:
        plot(res, PLOT)
        write_section(DOC, "calibration", text)
        print(f"updated {DOC} and {PLOT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
