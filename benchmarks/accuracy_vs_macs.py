"""Accuracy versus MACs of the shipped early-exit bundles, measured with the runtime Engine.

    python benchmarks/accuracy_vs_macs.py                 # default bundles (+ benchmark bundle), full test sets
    python benchmarks/accuracy_vs_macs.py --limit 500     # quick look
    python benchmarks/accuracy_vs_macs.py --kws-bundle none --kws-extra    # Fashion-MNIST bundles only

Fashion-MNIST: the 10k t10k images (never used for training or calibration). Keyword spotting:
the synthetic test splits of the bundle's own seed, rebuilt by the exporter in a subprocess (it
needs espeak-ng and torch): training voices with unseen speeds/pitches, and held-out voices and
variants never used in training, reported separately. Extra KWS bundles trained with other seeds
(``--kws-extra DIR ...``, default: ``.cache/edge_ee_export/kws-seeds/*``) are reported per seed.

This process never imports torch: every accuracy and MAC number comes from
``edge_ee.core.engine.Engine`` running the ONNX bundle. Writes a section of ``docs/benchmarks.md``
between ``<!-- accuracy-vs-macs:start -->`` and ``<!-- accuracy-vs-macs:end -->`` and a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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

from edge_ee.core.engine import Engine  # noqa: E402
from edge_ee.core.exit_rules import get_rule  # noqa: E402
from edge_ee.pipeline.datasets import load_fashion_mnist  # noqa: E402

# --------------------------------------------------------------------------- data (torch-free)


def fashion_test(data_dir: Path, pre: dict[str, Any], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_fashion_mnist(data_dir, "test")
    y = y.astype(np.int64)
    if limit:
        x, y = x[:limit], y[:limit]
    xf = x.astype(np.float32) * float(pre["scale"])
    xf = (xf - float(pre["mean"][0])) / float(pre["std"][0])
    return xf[:, None, :, :].astype(np.float32), y


KWS_DUMP = r"""
import sys, numpy as np
from edge_ee_export.data import kws
d = kws.load(sys.argv[1], seed=int(sys.argv[2]), progress=False)
h = d.extra["test_heldout_voices"]
np.savez(sys.argv[3], train_x=d.test.x.numpy(), train_y=d.test.y.numpy(), held_x=h.x.numpy(), held_y=h.y.numpy())
"""


def kws_test(cache: Path, seed: int, limit: int | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "kws.npz"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "export"), str(ROOT)])}
        subprocess.run([sys.executable, "-c", KWS_DUMP, str(cache), str(seed), str(out)], check=True, env=env)
        z = np.load(out)
        res = {"training voices (unseen speeds/pitches)": (z["train_x"], z["train_y"]),
               "held-out voices and variants": (z["held_x"], z["held_y"])}
    return {k: (v[0][:limit], v[1][:limit]) if limit else v for k, v in res.items()}


# --------------------------------------------------------------------------- measurement


def run_policy(eng: Engine, x: np.ndarray, thresholds: list[float], rule: str | None,
               mode: str = "adaptive") -> dict[str, Any]:
    old_rules, old_thr = list(eng.rules), list(eng.thresholds)
    if rule:
        eng.set_rule(rule)
    eng.set_thresholds(thresholds)
    labels, macs, exits, ms = [], [], [], []
    for i in range(len(x)):
        r = eng.infer(x[i: i + 1], mode=mode)  # type: ignore[arg-type]
        labels.append(r.label_index)
        macs.append(r.macs)
        exits.append(r.exit_index)
        ms.append(r.total_ms)
    eng.rules, eng.thresholds = old_rules, old_thr
    return {"pred": np.array(labels), "macs": np.array(macs, float), "exit": np.array(exits), "ms": np.array(ms)}


BATCH = 32


def latency(bundle: Path, x: np.ndarray, blocks: int = 7, block_s: float = 0.5) -> dict[str, Any]:
    """Per-sample latency, side by side in interleaved blocks (``interleave.py``): the whole model as ONE
    onnxruntime graph (merged at benchmark time, ``session.run``; the plain-onnxruntime baseline), edge-ee
    ``mode="full"`` and edge-ee calibrated early exit, each on the same test samples in the same order; and
    the early exit on batches of ``BATCH`` samples (``Engine.infer_batch``: exited samples leave the batch),
    time per sample."""
    from interleave import interleaved, one_graph_session

    from edge_ee.core.bundle import load_bundle

    b = load_bundle(bundle)
    eng = Engine(b)
    one, one_in, one_out = one_graph_session(b)
    macs: list[int] = []

    def cycle(fn, size: int = 1):
        pos = [0]

        def call() -> None:
            j = pos[0] % (len(x) - size + 1)
            pos[0] += size
            fn(x[j: j + size])
        return call

    t0 = time.perf_counter()
    for i in range(min(50, len(x))):
        one.run([one_out], {one_in: x[i: i + 1]})
    per = (time.perf_counter() - t0) / min(50, len(x))
    n = int(min(len(x), max(100, block_s / max(per, 1e-6))))
    n = max(n, 2 * BATCH)
    res = interleaved({"one": cycle(lambda s: one.run([one_out], {one_in: s})),
                       "full": cycle(lambda s: eng.infer(s, mode="full")),
                       "adaptive": cycle(lambda s: macs.append(eng.infer(s).macs)),
                       "batch": cycle(eng.infer_batch, BATCH)}, n, blocks, per_call={"batch": BATCH})
    full_macs = b.manifest.full_model_macs()
    return {"n": n, "blocks": blocks, "one_graph_builtin": eng.graphs["one_graph_full"],
            "macs_ratio_timed": float(np.mean(macs) / full_macs),
            **{f"{k}_cpu_us": v.cpu_us for k, v in res.items()}, **{f"{k}_wall_us": v.wall_us for k, v in res.items()}}


def evaluate(bundle: Path, x: np.ndarray, y: np.ndarray, with_latency: bool = True) -> dict[str, Any]:
    eng = Engine(str(bundle))
    m = eng.manifest
    cal = m.calibration.to_dict()
    k_last = eng.num_stages - 1
    full_macs = m.full_model_macs()
    n = len(y)
    t0 = time.perf_counter()
    probs = np.zeros((k_last + 1, n, len(m.labels)))
    score = np.zeros((k_last, n))
    macs_at = np.zeros(k_last + 1)
    for i in range(n):
        for k in range(k_last + 1):
            r = eng.infer(x[i: i + 1], mode="exit_at", exit_at=k)
            probs[k, i] = r.probs
            if k < k_last:
                score[k, i] = r.score
            macs_at[k] = r.macs
    full = run_policy(eng, x, eng.thresholds, None, mode="full")
    adaptive = run_policy(eng, x, eng.thresholds, None)
    elapsed = time.perf_counter() - t0
    preds = probs.argmax(2)
    correct = preds == y[None, :]
    # adaptive-mode cost of answering at exit k: segments 0..k and heads 0..k
    cum = np.cumsum([s.segment.macs + (s.head.macs if s.head else 0) for s in m.stages], dtype=float)
    first = np.where(correct.any(0), correct.argmax(0), k_last)
    res: dict[str, Any] = {
        "n": n,
        "seconds": elapsed,
        "full_macs": full_macs,
        "full_accuracy": float((full["pred"] == y).mean()),
        "full_engine_macs": float(full["macs"].mean()),
        "exit_accuracy": [float(c.mean()) for c in correct],
        "exit_macs_ratio": [float(v / full_macs) for v in macs_at],
        "oracle_macs_ratio": float(cum[first].mean() / full_macs),
        "oracle_accuracy": float(correct.any(0).mean()),
        "rule": eng.rules[0],
        "thresholds": list(eng.thresholds),
        "latency": latency(bundle, x) if with_latency else None,
        "calibrated": {
            "accuracy": float((adaptive["pred"] == y).mean()),
            "macs_ratio": float(adaptive["macs"].mean() / full_macs),
            "exit_fractions": (np.bincount(adaptive["exit"], minlength=k_last + 1) / n).tolist(),
        },
        "calib_split": {"accuracy": cal.get("chosen", {}).get("accuracy"),
                        "macs_ratio": cal.get("chosen", {}).get("macs_ratio"),
                        "full_accuracy": cal.get("full_accuracy")},
    }
    # baselines: the other rules at their own calibrated thresholds (measured with the Engine)
    base = {}
    for rule, pt in (cal.get("rules") or {}).items():
        if rule == res["rule"]:
            continue
        r = run_policy(eng, x, pt["thresholds"], rule)
        base[rule] = {"accuracy": float((r["pred"] == y).mean()), "macs_ratio": float(r["macs"].mean() / full_macs)}
    res["baselines"] = base
    # the controller's operating points, re-evaluated on the test split (simulated from exit_at outputs)
    rule = res["rule"]
    pts = []
    for p in cal.get("operating_points", []):
        ex = np.full(n, k_last)
        und = np.ones(n, bool)
        for k, t in enumerate(p["thresholds"]):
            f = (get_rule(rule).key(score[k]) >= get_rule(rule).key(t)) & und  # the rule's score at exit k
            ex[f] = k
            und &= ~f
        pts.append({"calib_macs_ratio": p["macs_ratio"], "calib_accuracy": p["accuracy"],
                    "accuracy": float(correct[ex, np.arange(n)].mean()),
                    "macs_ratio": float(cum[ex].mean() / full_macs)})
    res["operating_points"] = pts
    return res


# --------------------------------------------------------------------------- report


def pct(v: float | None, d: int = 2) -> str:
    return "n/a" if v is None else f"{100 * v:.{d}f}%"


def table(name: str, bundle: Path, r: dict[str, Any]) -> list[str]:
    k = len(r["exit_accuracy"]) - 1
    drop = r["full_accuracy"] - r["calibrated"]["accuracy"]
    where = bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle
    lines = [
        f"**{name}** ({r['n']} samples; bundle `{where}`; "
        f"full model {r['full_macs']:,} MACs)",
        "",
        "| policy | accuracy | drop vs full | mean MACs vs full | exit fractions |",
        "|---|---|---|---|---|",
        f"| full model (no early exit) | {pct(r['full_accuracy'])} | - | 100% | - |",
    ]
    for i, (a, mr) in enumerate(zip(r["exit_accuracy"], r["exit_macs_ratio"])):
        what = "final exit" if i == k else f"always exit {i}"
        lines.append(f"| {what} | {pct(a)} | {100 * (r['full_accuracy'] - a):+.2f} pp | {pct(mr, 1)} | - |")
    c = r["calibrated"]
    fr = " / ".join(f"{100 * f:.1f}%" for f in c["exit_fractions"])
    lines.append(f"| **calibrated thresholds** ({r['rule']}, {', '.join(f'{t:.3f}' for t in r['thresholds'])}) | "
                 f"**{pct(c['accuracy'])}** | **{100 * drop:+.2f} pp** | **{pct(c['macs_ratio'], 1)}** | {fr} |")
    for rule, b in r["baselines"].items():
        lines.append(f"| {rule} rule at its calibrated thresholds | {pct(b['accuracy'])} | "
                     f"{100 * (r['full_accuracy'] - b['accuracy']):+.2f} pp | {pct(b['macs_ratio'], 1)} | - |")
    lines.append(f"| oracle (earliest correct exit) | {pct(r['oracle_accuracy'])} | "
                 f"{100 * (r['full_accuracy'] - r['oracle_accuracy']):+.2f} pp | "
                 f"{pct(r['oracle_macs_ratio'], 1)} | - |")
    ok = drop <= 0.01 and c["macs_ratio"] <= 0.5
    lines.append("")
    lines.append(f"Target (<= 1 pp drop at <= 50% of the MACs): **{'met' if ok else 'not met'}** "
                 f"({100 * drop:.2f} pp at {pct(c['macs_ratio'], 1)}). On the calibration split the chosen point "
                 f"was {pct(r['calib_split']['accuracy'])} vs {pct(r['calib_split']['full_accuracy'])} "
                 f"at {pct(r['calib_split']['macs_ratio'], 1)}.")
    lat = r.get("latency")
    if lat:
        med = {k: statistics.median(lat[k]) for k in lat if k.endswith("_us")}

        def rng(key: str) -> str:
            return f"{min(lat[key]):.1f}-{max(lat[key]):.1f}"

        ad_cpu, ad_wall = med["adaptive_cpu_us"] / med["one_cpu_us"], med["adaptive_wall_us"] / med["one_wall_us"]
        lines.append("")
        lines.append(
            f"Latency per sample ({lat['n']} test samples per block x {lat['blocks']} interleaved blocks, 1 "
            f"onnxruntime thread, thread CPU time median [min-max] of the block means; wall time after the slash): "
            f"whole model as one onnxruntime graph {med['one_cpu_us']:.1f} us [{rng('one_cpu_us')}] / "
            f"{med['one_wall_us']:.1f} us; "
            f"edge-ee `--mode full` {med['full_cpu_us']:.1f} us [{rng('full_cpu_us')}] / {med['full_wall_us']:.1f} us "
            f"(**{med['full_cpu_us'] / med['one_cpu_us']:.3f}x** one graph"
            f"{', its one-graph full model' if lat['one_graph_builtin'] else ', chained segments'}); edge-ee "
            f"calibrated early exit {med['adaptive_cpu_us']:.1f} us [{rng('adaptive_cpu_us')}] / "
            f"{med['adaptive_wall_us']:.1f} us = **{ad_cpu:.3f}x** one graph in CPU time ({ad_wall:.3f}x wall) at "
            f"{lat['macs_ratio_timed']:.3f} of the MACs on the timed samples (latency ratio - MACs ratio: "
            f"{ad_cpu - lat['macs_ratio_timed']:+.3f}). The same early exit on batches of {BATCH} "
            f"(`Engine.infer_batch`, exited samples leave the batch): {med['batch_cpu_us']:.1f} us per sample "
            f"[{rng('batch_cpu_us')}] / {med['batch_wall_us']:.1f} us = {med['batch_cpu_us'] / med['one_cpu_us']:.3f}x "
            f"one graph per sample, {med['batch_cpu_us'] / med['adaptive_cpu_us']:.3f}x one sample at a time.")
    lines.append("")
    return lines


def plot(results: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 1, figsize=(7.5, 5))
    for i, (name, r) in enumerate(results):
        col = f"C{i}"
        pts = r["operating_points"]
        ax.plot([100 * p["macs_ratio"] for p in pts], [100 * p["accuracy"] for p in pts], "-", color=col, lw=1,
                alpha=0.8, label=f"{name}: operating points")
        ax.plot(100 * r["calibrated"]["macs_ratio"], 100 * r["calibrated"]["accuracy"], "*", ms=13, color=col)
        ax.plot(100, 100 * r["full_accuracy"], "o", color=col, mfc="none", ms=8)
        ax.plot([100 * v for v in r["exit_macs_ratio"][:-1]], [100 * a for a in r["exit_accuracy"][:-1]], "x",
                color=col)
        ax.axhline(100 * (r["full_accuracy"] - 0.01), color=col, ls=":", lw=0.8)
    ax.set_xlabel("mean MACs, % of the full model")
    ax.set_ylabel("accuracy, %")
    ax.set_title("Early exits: accuracy vs MACs (star: calibrated, o: full, x: single exits, dotted: -1 pp)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    lo = min(min(100 * p["accuracy"] for p in r["operating_points"]) for _, r in results) if results else 0
    ax.set_ylim(max(lo - 2, 50), 100)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fm-bundle", default=str(ROOT / "edge_ee/bundles/fashion_mnist"))
    wide = ROOT / "benchmarks/bundles/fashion_mnist_wide"
    p.add_argument("--fm-wide-bundle", default=str(wide) if wide.is_dir() else None,
                   help="also this Fashion-MNIST bundle (default: the benchmark bundle, if built)")
    p.add_argument("--kws-bundle", default=str(ROOT / "edge_ee/bundles/kws"))
    p.add_argument("--kws-extra", nargs="*", default=None, help="more KWS bundles (other seeds)")
    p.add_argument("--fm-data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--kws-cache", default=str(ROOT / ".cache/edge_ee_export/kws"))
    p.add_argument("--limit", type=int, default=None, help="at most N test samples per split")
    p.add_argument("--doc", default=str(ROOT / "docs/benchmarks.md"))
    p.add_argument("--img", default=str(ROOT / "docs/img/accuracy_vs_macs.png"))
    p.add_argument("--json", default=None, help="also write the raw results here")
    a = p.parse_args()

    out: list[str] = []
    results: list[tuple[str, dict[str, Any]]] = []
    raw: dict[str, Any] = {}
    fm_bundles = [(Path(a.fm_bundle), "Fashion-MNIST", "ResNet-8")]
    if a.fm_wide_bundle:
        fm_bundles.append((Path(a.fm_wide_bundle), "Fashion-MNIST wide",
                           "ResNet-8 at 4x width, the budget-control benchmark bundle"))
    for fm, key, arch in fm_bundles:
        if not (fm / "manifest.json").is_file():
            continue
        eng = Engine(str(fm))
        x, y = fashion_test(Path(a.fm_data), eng.manifest.input.preprocess, a.limit)
        r = evaluate(fm, x, y)
        raw[key.lower().replace(" ", "_").replace("-", "_")] = r
        results.append((key, r))
        prod = eng.manifest.producer
        out += [f"### Fashion-MNIST ({arch})", "",
                f"Built by `{prod.get('command', '?')}` (seed {prod.get('seed')}). Test set: t10k.", ""]
        out += table(f"{key} test set", fm, r)
    kws_bundles = [Path(a.kws_bundle)]
    extra = a.kws_extra
    if extra is None:
        seeds_dir = ROOT / ".cache/edge_ee_export/kws-seeds"
        extra = sorted(str(d) for d in seeds_dir.glob("*") if (d / "manifest.json").is_file())
    kws_bundles += [Path(e) for e in extra]
    per_seed: dict[str, list[dict[str, Any]]] = {}
    for i, kb in enumerate(kws_bundles):
        if not (kb / "manifest.json").is_file():
            continue
        eng = Engine(str(kb))
        seed = int(eng.manifest.producer.get("seed", 0))
        splits = kws_test(Path(a.kws_cache), seed, a.limit)
        if i == 0:
            prod = eng.manifest.producer
            out += ["### Keyword spotting (DS-CNN, espeak-ng synthetic speech)", "",
                    f"Built by `{prod.get('command', '?')}` (seed {seed}). MFCC front end: `edge_ee.pipeline.features` "
                    "(MLPerf Tiny). Training voices: " + ", ".join(prod.get("dataset", {}).get("train_voices", []))
                    + "; held-out voices: " + ", ".join(prod.get("dataset", {}).get("heldout_voices", []))
                    + f"; held-out variants: {', '.join(prod.get('dataset', {}).get('heldout_variants', []))}.", ""]
        for j, (sname, (x, y)) in enumerate(splits.items()):
            r = evaluate(kb, x, y, with_latency=i == 0 and j == 0)  # latency: once per shipped bundle
            per_seed.setdefault(sname, []).append({"seed": seed, **r})
            raw.setdefault("kws", {}).setdefault(f"seed{seed}", {})[sname] = r
            if i == 0:
                results.append((f"KWS {sname.split(' (')[0]}", r))
                out += table(f"KWS, {sname}", kb, r)
    if not per_seed:
        out += ["Keyword spotting is not in this run (`--kws-bundle none`): `benchmarks/kws_heldout.py` measures the "
                "shipped keyword bundle on fully held-out speakers, per condition (section *kws-heldout*).", ""]
    if any(len(v) > 1 for v in per_seed.values()):
        out += ["**KWS across training seeds** (each bundle on the test splits of its own seed)", "",
                "| split | seed | full acc | calibrated acc | drop | MACs vs full | oracle MACs |",
                "|---|---|---|---|---|---|---|"]
        for sname, rs in per_seed.items():
            for r in rs:
                out.append(f"| {sname} | {r['seed']} | {pct(r['full_accuracy'])} | "
                           f"{pct(r['calibrated']['accuracy'])} | "
                           f"{100 * (r['full_accuracy'] - r['calibrated']['accuracy']):+.2f} pp | "
                           f"{pct(r['calibrated']['macs_ratio'], 1)} | {pct(r['oracle_macs_ratio'], 1)} |")
            if len(rs) > 1:
                fa = [r["full_accuracy"] for r in rs]
                ca = [r["calibrated"]["accuracy"] for r in rs]
                mr = [r["calibrated"]["macs_ratio"] for r in rs]
                out.append(f"| {sname} | mean ± sd | "
                           f"{100 * statistics.mean(fa):.2f} ± {100 * statistics.stdev(fa):.2f}% | "
                           f"{100 * statistics.mean(ca):.2f} ± {100 * statistics.stdev(ca):.2f}% | "
                           f"{100 * (statistics.mean(fa) - statistics.mean(ca)):+.2f} pp | "
                           f"{100 * statistics.mean(mr):.1f} ± {100 * statistics.stdev(mr):.1f}% | - |")
        out.append("")
    if not results:
        print("no bundles found; run `make bundles` first", file=sys.stderr)
        return 1
    img = Path(a.img)
    plot(results, img)
    doc = Path(a.doc)
    rel = os.path.relpath(img, doc.parent)
    head = [
        "## Accuracy vs MACs of the default bundles",
        "",
        "Generated by `python benchmarks/accuracy_vs_macs.py` (torch-free: every number below is measured by "
        "`edge_ee.core.engine.Engine` on the ONNX bundle, one sample at a time). *MACs* count conv and linear "
        "multiply-accumulates; *mean MACs vs full* is the adaptive run (segments and exit heads actually executed) "
        "divided by the plain model's MACs (all segments plus the final classifier, no early heads). "
        "Thresholds and temperatures were chosen on calibration splits, never on these test sets. The *oracle* "
        "answers at the earliest exit that is right (judges placement, not policy). The other exit rules are "
        "baselines at their own calibrated thresholds.",
        "",
        f"![accuracy vs MACs]({rel})",
        "",
    ]
    write_section(doc, "accuracy-vs-macs", "\n".join(head + out))
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1, default=float))
    assert "torch" not in sys.modules, "the benchmark must not import torch"
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
