"""Start-up time of the ``edge-ee`` command line in two source trees, side by side.

Each call is a fresh ``python -m edge_ee ARGS`` process (default ``--version``: the command line is imported,
nothing runs); the trees are timed in interleaved blocks (A, B, B, A, ...), the first block discarded as
warm-up, wall time and the child's CPU time (user + system, ``resource.RUSAGE_CHILDREN``) per call, median and
[min-max] of the block means.

    .venv/bin/python benchmarks/cli_startup.py TREE_A TREE_B [--calls 10] [--blocks 7] [--args '--version']
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path


def block(tree: Path, args: list[str], calls: int) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for _ in range(calls):
        subprocess.run([sys.executable, "-m", "edge_ee", *args], env=env, cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return (t1 - t0) / calls * 1e3, cpu / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", type=Path, nargs=2)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--args", default="--version", help="the command line after `python -m edge_ee`")
    a = ap.parse_args()
    a.args = shlex.split(a.args)
    if a.blocks < 5:
        ap.error("at least 5 blocks")
    res: dict[Path, tuple[list[float], list[float]]] = {t: ([], []) for t in a.trees}
    for b in range(a.blocks + 1):  # block 0: warm-up, discarded
        for t in a.trees if b % 2 == 0 else a.trees[::-1]:
            wall, cpu = block(t, a.args, a.calls)
            if b:
                res[t][0].append(wall)
                res[t][1].append(cpu)
    print(f"python -m edge_ee {' '.join(a.args)}: ms per call, median [min-max] of {a.blocks} blocks of {a.calls}")
    for t, (w, c) in res.items():
        print(f"  {str(t):<40} wall {statistics.median(w):7.1f} [{min(w):.1f}-{max(w):.1f}]   "
              f"CPU {statistics.median(c):7.1f} [{min(c):.1f}-{max(c):.1f}]")


if __name__ == "__main__":
    main()
