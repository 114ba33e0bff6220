"""`edge-ee run --mode full` throughput against a plain onnxruntime loop with the same source and preprocessing.

* **plain onnxruntime loop**: ``source.read()`` -> the bundle's preprocessing -> ``session.run`` on the whole
  model as ONE graph (merged at benchmark time, the runtime's session options), nothing else;
* **edge-ee run --mode full**: the ``Runner`` with the hooks ``edge-ee run`` builds (``make_run_hooks`` and the
  stream hooks) and ``--power-source none``: the same work as the plain loop plus what edge-ee adds per frame
  (engine result, run statistics, hooks; no telemetry record: without ``--log`` and without a hook
  that reads records, the runner does not build one). The default ``--power-source auto`` also measures
  energy per inference (a power sensor or the CPU-utilisation estimate), which the plain loop does not do.

Same synthetic source (random frames of the bundle's input) and preprocessing for all; ``--frames`` frames per
block, interleaved blocks (A, B, B, A, ...), the first block of each discarded as warm-up; thread CPU
time and wall time per frame, median and [min-max] of the block means; throughput = frames / wall time.

    .venv/bin/python benchmarks/run_throughput.py [--model BUNDLE ...] [--frames 2000] [--blocks 7] [--write]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import ROOT, one_graph_session  # noqa: E402

from edge_ee.control.settings import RunSettings  # noqa: E402
from edge_ee.control.setup import make_run_hooks  # noqa: E402
from edge_ee.core.bundle import load_bundle  # noqa: E402
from edge_ee.core.engine import Engine  # noqa: E402
from edge_ee.pipeline.preprocess import make_preprocessor  # noqa: E402
from edge_ee.pipeline.runner import RunConfig, Runner  # noqa: E402
from edge_ee.pipeline.streams import stream_hooks  # noqa: E402
from edge_ee.sources import open_source  # noqa: E402

DEFAULT_MODELS = [ROOT / "edge_ee/bundles/fashion_mnist", ROOT / "benchmarks/bundles/fashion_mnist_wide"]


def variants(bundle_dir: Path) -> dict[str, Callable[[int], None]]:
    b = load_bundle(bundle_dir)
    m = b.manifest
    one, one_in, one_out = one_graph_session(b)
    engine = Engine(b)

    def plain(n: int) -> None:
        src = open_source("synthetic", m)
        pre = make_preprocessor(m.input)
        for _ in range(n):
            fr = src.read()
            one.run([one_out], {one_in: pre(fr.data)})  # type: ignore[union-attr]

    def edge_ee(power_source: str) -> Callable[[int], None]:
        def run(n: int) -> None:
            src = open_source("synthetic", m)
            hooks, _ = make_run_hooks(b, engine, RunSettings(mode="full", power_source=power_source),
                                      echo=lambda s: None)
            r = Runner(engine, src, RunConfig(mode="full", max_frames=n, status=False), hooks=hooks)
            r.hooks.extend(stream_hooks(src, m, {}))
            r.run()
        return run

    return {"plain onnxruntime loop (one graph)": plain, "edge-ee run --mode full --power-source none":
            edge_ee("none")}


def measure(bundle_dir: Path, frames: int, blocks: int) -> dict[str, tuple[list[float], list[float]]]:
    vs = variants(bundle_dir)
    names = list(vs)
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in names}
    for b in range(blocks + 1):  # block 0: warm-up, discarded
        for name in names if b % 2 == 0 else names[::-1]:
            c0, t0 = time.thread_time(), time.perf_counter()
            vs[name](frames)
            t1, c1 = time.perf_counter(), time.thread_time()
            if b:
                out[name][0].append((c1 - c0) / frames * 1e6)
                out[name][1].append((t1 - t0) / frames * 1e6)
    return out


def report(bundle_dir: Path, res: dict[str, tuple[list[float], list[float]]], frames: int, blocks: int) -> list[str]:
    m = load_bundle(bundle_dir).manifest
    base = list(res)[0]
    bw = statistics.median(res[base][1])
    bc = statistics.median(res[base][0])
    where = os.path.relpath(bundle_dir, ROOT) if bundle_dir.resolve().is_relative_to(ROOT) else bundle_dir
    lines = [f"**{m.name}** (`{where}`; {frames} frames per block x {blocks} interleaved blocks)", "",
             "| loop | CPU us/frame median [min-max] | wall us/frame median [min-max] | frames/s | "
             "throughput vs plain (wall) | throughput vs plain from CPU time |", "|---|---|---|---|---|---|"]
    for name, (cpu, wall) in res.items():
        cw, ww = statistics.median(cpu), statistics.median(wall)
        lines.append(f"| {name} | {cw:.1f} [{min(cpu):.1f}-{max(cpu):.1f}] | {ww:.1f} "
                     f"[{min(wall):.1f}-{max(wall):.1f}] | {1e6 / ww:.0f} | {bw / ww:.3f} | **{bc / cw:.3f}** |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--write", action="store_true", help="write the run-throughput section of docs/benchmarks.md")
    a = ap.parse_args()
    logging.disable(logging.WARNING)
    models = [Path(p) for p in a.model] if a.model else [p for p in DEFAULT_MODELS if (p / "manifest.json").is_file()]
    lines = ["## `edge-ee run --mode full` throughput vs a plain onnxruntime loop", "",
             f"`benchmarks/run_throughput.py` on {platform.machine()} ({os.cpu_count()} cores, shared; load average "
             f"{os.getloadavg()[0]:.1f} at the start), 1 onnxruntime thread, synthetic source and the bundle's own "
             "preprocessing on both sides; the plain loop runs the "
             "whole model merged into one graph at benchmark time. Throughput vs plain = plain time per frame / this "
             "loop's, from wall time (what a user sees, but on a shared machine it moves with the other jobs) and "
             "from thread CPU time (robust to them: the throughput on a core of its own).", ""]
    for p in models:
        frames = a.frames if "wide" not in p.name else max(200, a.frames // 10)
        res = measure(p, frames, a.blocks)
        part = report(p, res, frames, a.blocks)
        print("\n".join(part), flush=True)
        lines += part
    if a.write:
        from docsection import write_section

        write_section(ROOT / "docs/benchmarks.md", "run-throughput", "\n".join(lines).rstrip())


if __name__ == "__main__":
    main()
