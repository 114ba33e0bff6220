"""Per-inference overhead of Engine.infer beyond the raw onnxruntime session.run calls.

The same sessions are called directly in a loop (segments chained, plus the heads the engine would
run) and through ``Engine.infer``; the difference of the medians is the engine's own cost (input
check, exit rule, timing, result). Adaptive mode with thresholds that never fire (every head runs,
the same work as the raw loop with all heads) and full mode (segments + final head).

    .venv/bin/python benchmarks/engine_overhead.py [--model BUNDLE] [--n 3000] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_ee.bundle import load_bundle  # noqa: E402
from edge_ee.engine import Engine  # noqa: E402
from edge_ee.exit_rules import get_rule  # noqa: E402


def median_us(fn, n: int, reps: int = 5) -> float:
    for _ in range(min(200, n)):
        fn()
    best = []
    for _ in range(reps):  # median of per-block means, robust to the shared machine
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best.append((time.perf_counter() - t0) / n * 1e6)
    return float(np.median(best))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    b = load_bundle(a.model)
    e = Engine(b)
    x = np.random.default_rng(0).random(e.input_shape, dtype=np.float32).astype(e.input_dtype)
    segs = [(e._seg[k], e._seg_io[k]) for k in range(e.num_stages)]
    heads = [(e._head[k], e._head_out[k]) for k in range(e.num_stages)]

    def raw(all_heads: bool) -> None:
        cur = x
        for k, (s, (inp, outs)) in enumerate(segs):
            cur = s.run(outs, {inp: cur})[0]
            h, io = heads[k]
            if h is not None and (all_heads or k == e.num_stages - 1):
                h.run(io[0], {io[1]: cur})

    e.set_thresholds([get_rule(r).never for r in e.rules[:-1]])
    rows = []
    for mode, all_heads in (("adaptive", True), ("full", False)):
        r_us = median_us(lambda ah=all_heads: raw(ah), a.n)
        e_us = median_us(lambda m=mode: e.infer(x, mode=m), a.n)
        rows.append((mode, r_us, e_us))
    lines = [
        "## Engine overhead",
        "",
        f"`benchmarks/engine_overhead.py` on {platform.machine()} ({os.cpu_count()} cores, shared), bundle "
        f"`{b.manifest.name}` ({e.num_stages} stages), {a.n} inferences x 5 blocks, median of block means.",
        "",
        "| mode | raw session.run chain (us) | Engine.infer (us) | overhead (us) |",
        "|---|---|---|---|",
    ]
    for mode, r_us, e_us in rows:
        lines.append(f"| {mode} | {r_us:.1f} | {e_us:.1f} | {e_us - r_us:.1f} |")
    text = "\n".join(lines)
    print(text)
    if a.write:
        from budget_control import write_section

        write_section(ROOT / "docs/benchmarks.md", "engine-overhead", text)


if __name__ == "__main__":
    main()
