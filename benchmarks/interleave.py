"""Fair speed comparisons for the benchmarks: variants timed side by side in one process, in interleaved
blocks (A, B, B, A, ...), warm-up discarded, thread CPU time beside wall time, median and spread of the
per-block means. The "plain onnxruntime" baseline is the whole model as ONE graph (every segment and
the final head merged with ``onnx.compose.merge_models``, built here at benchmark time) in a session
with the runtime's own options.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "export"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from edge_ee_export.merge import merge_full  # noqa: E402

from edge_ee.core.bundle import Bundle  # noqa: E402
from edge_ee.core.sessions import SessionConfig, make_session  # noqa: E402


@dataclass
class Timing:
    """Per-block means of one variant, microseconds per call."""

    cpu_us: list[float]
    wall_us: list[float]

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_us)

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_us)

    def spread(self, kind: str = "cpu") -> tuple[float, float]:
        v = self.cpu_us if kind == "cpu" else self.wall_us
        return min(v), max(v)

    def fmt(self, kind: str = "cpu", d: int = 1) -> str:
        lo, hi = self.spread(kind)
        med = self.cpu if kind == "cpu" else self.wall
        return f"{med:.{d}f} [{lo:.{d}f}-{hi:.{d}f}]"


def interleaved(variants: dict[str, Callable[[], object]], n: int, blocks: int = 7,
                warmup: int | None = None, per_call: dict[str, int] | None = None) -> dict[str, Timing]:
    """Time each variant in ``blocks`` blocks of ``n`` calls, the order reversed every other block
    (A, B, B, A, ...), after ``warmup`` discarded calls each (default ``n // 5``, at least 20). A variant
    named in ``per_call`` handles that many samples per call: it makes ``n // per_call`` calls per block and its
    times are per sample."""
    per_call = per_call or {}
    if blocks < 5:
        raise ValueError("at least 5 blocks")
    names = list(variants)
    for name in names:
        f = variants[name]
        for _ in range(max(2, (max(20, n // 5) if warmup is None else warmup) // per_call.get(name, 1))):
            f()
    out = {name: Timing([], []) for name in names}
    for b in range(blocks):
        for name in names if b % 2 == 0 else names[::-1]:
            f = variants[name]
            k = per_call.get(name, 1)
            calls = max(1, n // k)
            c0, t0 = time.thread_time(), time.perf_counter()
            for _ in range(calls):
                f()
            t1, c1 = time.perf_counter(), time.thread_time()
            out[name].cpu_us.append((c1 - c0) / (calls * k) * 1e6)
            out[name].wall_us.append((t1 - t0) / (calls * k) * 1e6)
    return out


def one_graph_session(bundle: Bundle, cfg: SessionConfig | None = None) -> tuple[ort.InferenceSession, str, str]:
    """(session, input name, output name) of the bundle's whole model merged into one graph at benchmark
    time (the bundle's own ``full`` entry is not used: the baseline must not depend on the bundle)."""
    model = merge_full(bundle.path, bundle.manifest)
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "one_graph.onnx"
        onnx.save(model, str(path))
        sess = make_session(path, cfg or SessionConfig())
    return sess, model.graph.input[0].name, model.graph.output[0].name


def upgraded_copy(bundle_dir: Path, into: Path) -> Path:
    """A copy of a bundle with the merged graphs added (through the exporter's code path) when it has none."""
    import shutil

    from edge_ee_export.merge import add_merged_graphs

    from edge_ee.core.manifest import read_manifest

    m = read_manifest(bundle_dir)
    if m.full is not None and all(s.merged is not None for s in m.stages if s.head is not None):
        return bundle_dir
    dst = into / bundle_dir.name
    shutil.copytree(bundle_dir, dst)
    add_merged_graphs(dst)
    return dst
