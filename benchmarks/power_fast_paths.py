"""Do the power sampler's fast paths matter on the inference path?

``edge-ee run`` with energy measurement (``--power-source estimate``: the CPU-utilisation estimate, present on
every machine; a sensor goes through the same sampler code) on a bundle's synthetic source, adaptive mode: per frame
the energy hook splits the inference window into its stages (``PowerSampler.split_window``), rounds the telemetry
values (``round_mj``) and queues the windows for the per-exit means (``WindowIntegrator``). Variants, side by side in
one process, interleaved blocks (A, B, C, C, B, A, ...), the first block discarded as warm-up, thread CPU time and
wall time per frame, median and [min-max] of the block means:

* ``--power-source none``: no energy work at all (the floor);
* ``--power-source estimate``: the sampler as it is in this tree;
* ``--power-source estimate, general paths only``: the cumulative energy always found by binary search
  (``EnergyCurve._energy_at_searched``) and ``round`` without ``round_mj``'s float shortcut.

    .venv/bin/python benchmarks/power_fast_paths.py [--model BUNDLE] [--frames 2000] [--blocks 7]
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import ROOT  # noqa: E402

from edge_ee.control import energy_hook  # noqa: E402
from edge_ee.control.settings import RunSettings  # noqa: E402
from edge_ee.control.setup import make_run_hooks  # noqa: E402
from edge_ee.core.bundle import load_bundle  # noqa: E402
from edge_ee.core.engine import Engine  # noqa: E402
from edge_ee.pipeline.runner import RunConfig, Runner  # noqa: E402
from edge_ee.power.curve import EnergyCurve  # noqa: E402
from edge_ee.sources import open_source  # noqa: E402


def _plain_round(x: float | None, nd: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, nd) + 0.0


def variants(bundle_dir: Path) -> dict[str, Callable[[int], None]]:
    b = load_bundle(bundle_dir)
    engine = Engine(b)

    def run(power_source: str, general: bool = False) -> Callable[[int], None]:
        def go(n: int) -> None:
            fast_round, fast_at = energy_hook.round_mj, EnergyCurve._energy_at  # noqa: SLF001 - the switch measured
            if general:
                energy_hook.round_mj = _plain_round  # type: ignore[assignment]
                EnergyCurve._energy_at = EnergyCurve._energy_at_searched  # type: ignore[method-assign]  # noqa: SLF001
            try:
                src = open_source("synthetic", b.manifest)
                hooks, _ = make_run_hooks(b, engine, RunSettings(power_source=power_source, power_baseline_s=0.2),
                                          echo=lambda s: None)
                Runner(engine, src, RunConfig(max_frames=n, status=False), hooks=hooks).run()
            finally:
                energy_hook.round_mj = fast_round  # type: ignore[assignment]
                EnergyCurve._energy_at = fast_at  # type: ignore[method-assign]  # noqa: SLF001
        return go

    return {"--power-source none": run("none"), "--power-source estimate": run("estimate"),
            "--power-source estimate, general paths only": run("estimate", general=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "edge_ee/bundles/fashion_mnist")
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--blocks", type=int, default=7)
    a = ap.parse_args()
    if a.blocks < 5:
        ap.error("at least 5 blocks")
    logging.disable(logging.WARNING)
    vs = variants(a.model)
    names = list(vs)
    cpu: dict[str, list[float]] = {k: [] for k in names}
    wall: dict[str, list[float]] = {k: [] for k in names}
    for blk in range(a.blocks + 1):  # block 0: warm-up, discarded
        for name in names if blk % 2 == 0 else names[::-1]:
            c0, t0 = time.thread_time(), time.perf_counter()
            vs[name](a.frames)
            t1, c1 = time.perf_counter(), time.thread_time()
            if blk:
                cpu[name].append((c1 - c0) / a.frames * 1e6)
                wall[name].append((t1 - t0) / a.frames * 1e6)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    print(f"{a.model.name}, {a.frames} frames x {a.blocks} blocks, tree {rev}; us per frame, median [min-max]")
    print(f"{'variant':<48} {'thread CPU':>24} {'wall':>24}")
    for k in names:
        c, w = cpu[k], wall[k]
        print(f"{k:<48} {statistics.median(c):9.1f} [{min(c):6.1f}-{max(c):6.1f}] "
              f"{statistics.median(w):9.1f} [{min(w):6.1f}-{max(w):6.1f}]")


if __name__ == "__main__":
    main()
