"""Engine cost against plain onnxruntime: the one-graph baseline, the segment-boundary penalty, and the
engine's own overhead per stage run.

For each bundle (default: the shipped Fashion-MNIST bundle and the wide benchmark bundle), on a copy
with the merged graphs added when it has none (``edge_ee_export.merge``, the exporter's code path):

* **one graph**: the whole model merged into ONE graph at benchmark time, ``session.run`` in a loop
  (what a plain onnxruntime deployment runs; same session options as the runtime);
* **chain**: the bundle's segments and final head, ``session.run`` one after the other (the boundary
  penalty: layout conversions at every cut, no fusion across it);
* **Engine.infer** ``mode="full"`` and ``mode="adaptive"`` with thresholds that never fire (every stage and
  head runs), through the v1 path (``Engine(merged=False)``: one session per segment and per head) and the
  v2 path (merged stage graphs, one-graph full model);
* **engine overhead per stage run**, two ways: (1) inside each call: the wall time of ``Engine.infer`` minus the
  onnxruntime calls it made (its own per-stage timings), median over many calls, per stage run: the engine's
  Python work (input check and copy, exit rule, timing, result), robust to a load that slows every call alike;
  (2) across the interleaved blocks: (Engine.infer - the raw ``session.run`` calls of the same graphs for the
  same stages) / stages run, which also counts the difference between the engine's IO-bound calls and
  ``session.run`` (negative when the IO binding is cheaper); "vs its own IO-bound calls" subtracts those
  instead. On a shared machine (2) moves by several microseconds from run to run.

All variants of a bundle are timed side by side in interleaved blocks (``interleave.py``): median of the
per-block means and [min-max], thread CPU time and wall time. ``--opt-levels`` also times the one graph
and the chain at ``ORT_ENABLE_EXTENDED`` (no NCHWc layout conversions at the cuts, fewer fusions).

    .venv/bin/python benchmarks/engine_overhead.py [--model BUNDLE ...] [--blocks 7] [--opt-levels] [--write]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import ROOT, interleaved, one_graph_session, upgraded_copy  # noqa: E402

from edge_ee.core.bundle import load_bundle  # noqa: E402
from edge_ee.core.engine import Engine  # noqa: E402
from edge_ee.core.exit_rules import get_rule  # noqa: E402
from edge_ee.core.sessions import SessionConfig  # noqa: E402

DEFAULT_MODELS = [ROOT / "edge_ee/bundles/fashion_mnist", ROOT / "benchmarks/bundles/fashion_mnist_wide"]


def measure(bundle_dir: Path, blocks: int, opt_levels: bool, block_s: float) -> dict:
    b = load_bundle(bundle_dir)
    v1 = Engine(b, merged=False)
    v2 = Engine(b)
    for e in (v1, v2):
        e.set_thresholds([get_rule(r).never for r in e.rules[:-1]])
    one, one_in, one_out = one_graph_session(b)
    x = np.random.default_rng(0).random(v1.input_shape, dtype=np.float32).astype(v1.input_dtype)
    n_st = v1.num_stages

    def raw_one() -> None:
        one.run([one_out], {one_in: x})

    def chain_full(segs=v1.graph_set.segments, head=v1.graph_set.heads[-1]) -> None:
        cur = x
        for g in segs:
            cur = g.sess.run(g.outputs, {g.input: cur})[0]
        if head is not None:
            head.sess.run(head.outputs, {head.input: cur})

    def raw_stages_v1() -> None:
        cur = x
        for g, h in zip(v1.graph_set.segments, v1.graph_set.heads):
            cur = g.sess.run(g.outputs, {g.input: cur})[0]
            if h is not None:
                h.sess.run(h.outputs, {h.input: cur})

    def raw_stages_v2() -> None:
        cur = x
        for calls in v2.graph_set.stage_calls:
            for g in calls:
                cur = g.sess.run(g.outputs, {g.input: cur})[0]

    def bound_v2() -> None:
        for calls in v2.graph_set.stage_calls:
            for g in calls:
                g.bound()

    variants = {
        "one graph (session.run)": raw_one,
        "chain: segments + final head (session.run)": chain_full,
        "Engine full, v1 path (chain)": lambda: v1.infer(x, mode="full"),
        "Engine full, v2 path (one graph)": lambda: v2.infer(x, mode="full"),
        "all stages + heads, v1 graphs (session.run)": raw_stages_v1,
        "Engine adaptive all heads, v1 path": lambda: v1.infer(x),
        "all stages, merged graphs (session.run)": raw_stages_v2,
        "all stages, merged graphs (engine's IO-bound calls)": bound_v2,
        "Engine adaptive all heads, v2 path": lambda: v2.infer(x),
    }
    if opt_levels:
        ext = SessionConfig(optimization="extended")
        one_x, ox_in, ox_out = one_graph_session(b, ext)
        e_x = Engine(b, session=ext, merged=False, warmup=0)
        variants["one graph, EXTENDED (session.run)"] = lambda: one_x.run([ox_out], {ox_in: x})
        variants["chain, EXTENDED (session.run)"] = lambda: chain_full(e_x.graph_set.segments, e_x.graph_set.heads[-1])
    t0 = time.perf_counter()
    for _ in range(20):
        raw_one()
    per = (time.perf_counter() - t0) / 20
    n = max(50, int(block_s / max(per, 1e-6)))
    res = interleaved(variants, n, blocks)
    inline = {mode: inline_overhead(v2, x, mode, max(500, n * 4)) for mode in ("adaptive", "full")}
    return {"bundle": b, "stages": n_st, "n": n, "blocks": blocks, "res": res, "inline": inline,
            "cold": cold_vs_warm(v2, max(200, n))}


def cold_vs_warm(e: Engine, calls: int) -> tuple[float, float]:
    """Median time (us) of the engine's answer step (softmax over the answering logits, the Result) right after
    the one-graph full model ran, and the same step repeated at once: a large model's run evicts the
    interpreter's working set from the CPU caches, so the same Python work costs more after it."""
    full = e.graph_set.full
    if full is None:
        return math.nan, math.nan
    last = e.num_stages - 1
    cold, warm = [], []
    for _ in range(calls):
        full.bound()
        t0 = time.perf_counter()
        e.answer(last)
        t1 = time.perf_counter()
        e.answer(last)
        t2 = time.perf_counter()
        cold.append((t1 - t0) * 1e6)
        warm.append((t2 - t1) * 1e6)
    return float(np.median(cold)), float(np.median(warm))


def inline_overhead(e: Engine, x: np.ndarray, mode: str, calls: int) -> tuple[float, float]:
    """Median over ``calls`` inferences of (wall time of the ``Engine.infer`` call - the time of the onnxruntime
    calls it made, from its own per-stage timings), total and per stage run, microseconds. Measured within each
    call, so a load that slows every call alike cancels; it counts the engine's Python work only."""
    over, per_stage = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = e.infer(x, mode=mode)  # type: ignore[arg-type]
        t = (time.perf_counter() - t0) * 1e6
        ort_us = 1e3 * (sum(r.segment_ms) + sum(h for h in r.head_ms if h is not None))
        runs = 1 if r.one_graph else sum(1 for _ in r.segment_ms)
        over.append(t - ort_us)
        per_stage.append((t - ort_us) / runs)
    return float(np.median(over)), float(np.median(per_stage))


def report(r: dict) -> list[str]:
    res, n_st = r["res"], r["stages"]
    base = res["one graph (session.run)"]
    m = r["bundle"].manifest
    where = os.path.relpath(r["bundle"].path, ROOT) if r["bundle"].path.is_relative_to(ROOT) else r["bundle"].path
    lines = [
        f"**{m.name}** (`{where}`, {n_st} stages; {r['n']} calls per block x {r['blocks']} blocks, interleaved)",
        "",
        "| variant | CPU us/inference median [min-max] | wall us median [min-max] | CPU vs one graph |",
        "|---|---|---|---|",
    ]
    for name, t in res.items():
        lines.append(f"| {name} | {t.fmt('cpu')} | {t.fmt('wall')} | {t.cpu / base.cpu:.3f} |")

    def ovh(eng: str, raw: str, runs: int) -> str:
        c = (res[eng].cpu - res[raw].cpu) / runs
        w = (res[eng].wall - res[raw].wall) / runs
        return f"{c:+.1f} us CPU ({w:+.1f} us wall)"

    inl = r["inline"]
    lines += [
        "",
        f"Engine's own Python work per inference, measured inside each call (median over the calls of the wall "
        f"time of `Engine.infer` minus the onnxruntime calls it timed): adaptive v2 path, all heads, "
        f"{inl['adaptive'][0]:.1f} us = **{inl['adaptive'][1]:.1f} us per stage run**; full v2 path (one call) "
        f"{inl['full'][0]:.1f} us. Of that, the answer step (softmax, Result) takes {r['cold'][0]:.1f} us right "
        f"after the model ran and {r['cold'][1]:.1f} us when repeated at once: the model's run evicts the "
        "interpreter's working set from the CPU caches (the larger the model, the more), which a bare "
        "`session.run` loop, touching little Python between calls, does not pay.",
        "",
        f"Interleaved-block difference per stage run: adaptive v1 path {ovh('Engine adaptive all heads, v1 path', 'all stages + heads, v1 graphs (session.run)', n_st)}; "  # noqa: E501
        f"adaptive v2 path {ovh('Engine adaptive all heads, v2 path', 'all stages, merged graphs (session.run)', n_st)}, "  # noqa: E501
        f"vs its own IO-bound calls {ovh('Engine adaptive all heads, v2 path', 'all stages, merged graphs (engine' + chr(39) + 's IO-bound calls)', n_st)}; "  # noqa: E501
        f"full v1 path {ovh('Engine full, v1 path (chain)', 'chain: segments + final head (session.run)', n_st)}; "
        f"full v2 path (one call) {ovh('Engine full, v2 path (one graph)', 'one graph (session.run)', 1)}.",
        "",
        f"`--mode full` / one graph (CPU time): **{res['Engine full, v2 path (one graph)'].cpu / base.cpu:.3f}** "
        f"with the bundle's one-graph full model, {res['Engine full, v1 path (chain)'].cpu / base.cpu:.3f} "
        f"through the chain "
        f"(the chain alone: {res['chain: segments + final head (session.run)'].cpu / base.cpu:.3f}).",
        "",
    ]
    if "one graph, EXTENDED (session.run)" in res:
        ox, cx = res["one graph, EXTENDED (session.run)"], res["chain, EXTENDED (session.run)"]
        ch = res["chain: segments + final head (session.run)"]
        lines += [f"Optimisation level: at ORT_ENABLE_ALL chain/one graph = {ch.cpu / base.cpu:.3f}, at "
                  f"ORT_ENABLE_EXTENDED {cx.cpu / ox.cpu:.3f}, but EXTENDED is {ox.cpu / base.cpu:.2f}x slower for "
                  f"the one graph and {cx.cpu / ch.cpu:.2f}x for the chain: "
                  f"{'ALL' if ch.cpu <= cx.cpu else 'EXTENDED'} is the faster setting for this bundle.", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=None, help="bundle directory (repeatable)")
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--block-seconds", type=float, default=0.25, help="about this long per block and variant")
    ap.add_argument("--opt-levels", action="store_true", help="also time ORT_ENABLE_EXTENDED")
    ap.add_argument("--write", action="store_true", help="write the engine-overhead section of docs/benchmarks.md")
    a = ap.parse_args()
    models = [Path(p) for p in a.model] if a.model else [p for p in DEFAULT_MODELS if (p / "manifest.json").is_file()]
    lines = [
        "## Engine overhead and the one-graph baseline",
        "",
        f"`benchmarks/engine_overhead.py{' --opt-levels' if a.opt_levels else ''}` on {platform.machine()} "
        f"({os.cpu_count()} cores, shared; load average {os.getloadavg()[0]:.1f} at the start), "
        "1 onnxruntime thread, one sample per call, fixed random input. "
        "*One graph* is the whole model merged into one onnxruntime graph at benchmark time; the v2 path uses "
        "the merged graphs added to a copy of the bundle by `python -m edge_ee_export.merge` when it has none.",
        "",
    ]
    with tempfile.TemporaryDirectory() as td:
        for p in models:
            r = measure(upgraded_copy(p, Path(td)), a.blocks, a.opt_levels, a.block_seconds)
            r["bundle"].path = p
            lines += report(r)
            print("\n".join(report(r)), flush=True)
    text = "\n".join(lines).rstrip()
    if a.write:
        from docsection import write_section

        write_section(ROOT / "docs/benchmarks.md", "engine-overhead", text)


if __name__ == "__main__":
    main()
