"""Merge a bundle's ONNX files with ``onnx.compose`` (torch-free: benchmarks import it too).

* :func:`merge_full`: the whole model as ONE graph (every segment chained, then the final head): what a
  plain onnxruntime deployment of the same network would run. The benchmarks' baseline, and the optional
  ``full`` entry of a schema-v2 bundle that ``edge-ee run --mode full`` uses.
* :func:`merge_stage`: segment k and its exit head as one graph with both outputs (the features for the
  next segment and the exit's logits / learned confidence): one onnxruntime call per stage.
* :func:`add_merged_graphs`: write those graphs into an existing bundle and rewrite its manifest (schema
  v2, sha256 of every file); no retraining. ``python -m edge_ee_export.merge BUNDLE_DIR``.

Node, edge and initializer names inside each source graph get a per-file prefix so the graphs never
collide; the graph inputs and outputs keep the names the manifest uses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import onnx
import typer
from onnx import compose

from edge_ee.core.bundle import load_bundle
from edge_ee.core.manifest import GraphRef, Manifest, read_manifest, write_manifest


def _load(path: Path, prefix: str) -> onnx.ModelProto:
    m = onnx.load(str(path))
    return compose.add_prefix(m, prefix, rename_inputs=False, rename_outputs=False)


def _chain(a: onnx.ModelProto, b: onnx.ModelProto, link: str, outputs: list[str] | None = None) -> onnx.ModelProto:
    return compose.merge_models(a, b, io_map=[(link, link)], outputs=outputs,
                                producer_name=a.producer_name or "edge-ee-export",
                                producer_version=a.producer_version)


def merge_full(bundle_dir: str | Path, m: Manifest | None = None) -> onnx.ModelProto:
    """The whole model (segments 0..n-1 and the final head, no early heads) as one graph: input
    ``m.input.name``, one output, the final logits."""
    d = Path(bundle_dir)
    m = m or read_manifest(d)
    model = _load(d / m.stages[0].segment.file, "s0_")
    for k, s in enumerate(m.stages[1:], start=1):
        model = _chain(model, _load(d / s.segment.file, f"s{k}_"), s.segment.input)
    last = m.stages[-1]
    if last.head is not None:
        model = _chain(model, _load(d / last.head.file, f"h{len(m.stages) - 1}_"), last.head.input,
                       outputs=[last.head.logits])
    return model


def merge_stage(bundle_dir: str | Path, m: Manifest, k: int) -> onnx.ModelProto:
    """Segment k and its head as one graph: outputs the segment's features, then the head's outputs (the
    last stage: the final logits only)."""
    d = Path(bundle_dir)
    s = m.stages[k]
    if s.head is None:
        raise ValueError(f"stage {k} has no head to merge")
    outs = s.merged_io(k == len(m.stages) - 1)[1]
    return _chain(_load(d / s.segment.file, "s_"), _load(d / s.head.file, "h_"), s.head.input, outputs=outs)


def add_merged_graphs(bundle_dir: str | Path, stages: bool = True, full: bool = True) -> Manifest:
    """Add the one-graph full model (``full.onnx``) and/or the merged stage graphs (``stage{k}.onnx``, every
    stage with a head) to a bundle in place, and rewrite its manifest as schema v2 with their checksums. The
    bundle is checked first (checksums of the existing files) and loaded by the runtime afterwards."""
    d = Path(bundle_dir)
    m = load_bundle(d).manifest
    n = len(m.stages)
    if full:
        onnx.save(merge_full(d, m), str(d / "full.onnx"))
        inp, outs, _ = m.full_io()
        m.full = GraphRef(file="full.onnx", sha256="0" * 64, input=inp, outputs=outs)
    for k, s in enumerate(m.stages):
        if not stages or s.head is None:
            continue
        f = f"stage{k}.onnx"
        onnx.save(merge_stage(d, m, k), str(d / f))
        inp, outs, _ = s.merged_io(k == n - 1)
        s.merged = GraphRef(file=f, sha256="0" * 64, input=inp, outputs=outs)
    write_manifest(m, d)
    return load_bundle(d).manifest


def verify_merged(bundle_dir: str | Path, x: np.ndarray, atol: float = 1e-4, rtol: float = 1e-3) -> float:
    """The runtime must give the same answers through the merged graphs as through the separate files on the
    samples ``x`` (a batch): every exit's logits within ``atol + rtol * |ref|`` and the same labels. Returns the
    largest absolute difference; raises :class:`~edge_ee_export.errors.VerificationError` otherwise."""
    from edge_ee.core.engine import Engine
    from edge_ee.core.exit_rules import get_rule

    from .errors import VerificationError

    sep, mer = Engine(str(bundle_dir), merged=False, warmup=0), Engine(str(bundle_dir), warmup=0)
    worst = 0.0
    for e in (sep, mer):
        e.set_thresholds([get_rule(r).never for r in e.rules[:-1]])
    for i in range(len(x)):
        xi = x[i: i + 1]
        for mode, k in [("exit_at", k) for k in range(sep.num_stages)] + [("full", None)]:
            a, b = sep.infer(xi, mode=mode, exit_at=k), mer.infer(xi, mode=mode, exit_at=k)  # type: ignore[arg-type]
            err = np.abs(a.probs - b.probs)
            worst = max(worst, float(err.max()))
            if a.label_index != b.label_index or (err > atol + rtol * np.abs(a.probs)).any():
                raise VerificationError(f"merged graphs disagree with the separate files ({mode}, exit {k}, sample "
                                        f"{i}): max |diff| of the probabilities {float(err.max()):.3g}")
    return worst


app = typer.Typer(add_completion=False)


@app.command(help=(__doc__ or "").split("\n\n")[0])
def upgrade(
    bundles: Annotated[list[str], typer.Argument(metavar="BUNDLE...", help="bundle directories to upgrade in place")],
    no_stages: Annotated[bool, typer.Option("--no-stages", help="do not write the merged stage graphs")] = False,
    no_full: Annotated[bool, typer.Option("--no-full", help="do not write the one-graph full model")] = False,
) -> None:
    for b in bundles:
        m = add_merged_graphs(b, stages=not no_stages, full=not no_full)
        x = np.random.default_rng(0).standard_normal((8, *m.input.sample_shape[1:])).astype(m.input.dtype)
        worst = verify_merged(b, x)
        print(f"{b}: schema v{m.schema_version}, files {', '.join(f for f, _ in m.files())}; merged graphs agree "
              f"with the separate files (max |diff| of the probabilities {worst:.2g} on 8 random inputs)")


def main(argv: list[str] | None = None) -> int:
    """``python -m edge_ee_export.merge BUNDLE...``: the exit code (bad options: typer's ``SystemExit``)."""
    try:
        app(args=argv, prog_name="python -m edge_ee_export.merge")
    except SystemExit as e:
        if e.code in (0, None):
            return 0
        raise
    return 0  # pragma: no cover - typer always ends with SystemExit


if __name__ == "__main__":
    sys.exit(main())
