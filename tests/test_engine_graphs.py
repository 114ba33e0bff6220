"""Engine chaining (IO-bound sessions), merged stage graphs and the one-graph full model (manifest schema v2),
and batches: same answers, exits and MACs as the separate-session path, v1 bundles still load, bad merged
graphs are refused (exit 3), a batch with the wrong shape is a runtime error (exit 5)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from factory import build_bundle, edit_manifest

from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.core.sessions import SessionConfig, make_session
from edge_ee.errors import BundleError, ExitCode, InferenceError

merge = pytest.importorskip("edge_ee_export.merge")  # torch-free part of the exporter (needs onnx)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["edge_ee/bundles/fashion_mnist", "edge_ee/bundles/kws", "benchmarks/bundles/fashion_mnist_wide"]


def _inputs(e: Engine, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *e.input_shape[1:])).astype(e.input_dtype)


@pytest.fixture
def merged_bundle(tmp_path: Path) -> Path:
    b = build_bundle(tmp_path / "m", head_kind="confidence", thresholds=[0.5, 0.5])
    merge.add_merged_graphs(b)
    return b


def _same(a, b, exact: bool) -> None:
    assert (a.exit_index, a.label_index, a.macs) == (b.exit_index, b.label_index, b.macs)
    if exact:
        assert np.array_equal(a.probs, b.probs)
        assert a.score == b.score or (math.isnan(a.score) and math.isnan(b.score))
    else:
        assert np.allclose(a.probs, b.probs, atol=1e-5)


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_bundles_chain_bit_for_bit_and_merged_graphs_agree(path: str) -> None:
    """IO-bound chaining gives the logits of plain session.run calls bit for bit; the merged graphs give the same
    exits, labels and MACs (probabilities within float rounding: onnxruntime may fuse across the old cut)."""
    b = load_bundle(ROOT / path)
    sep, mer = Engine(b, merged=False, warmup=0), Engine(b, warmup=0)
    assert mer.graphs["one_graph_full"] and mer.graphs["merged_stages"] == list(range(mer.num_stages))
    cfg = SessionConfig()
    segs = [make_session(b.file(s.segment.file), cfg) for s in b.manifest.stages]
    heads = [make_session(b.file(s.head.file), cfg) if s.head else None for s in b.manifest.stages]
    xs = _inputs(sep, 12)
    for i in range(len(xs)):
        x = xs[i: i + 1]
        a = sep.infer_all_exits(x)
        cur = x
        for k, s in enumerate(b.manifest.stages):
            cur = segs[k].run([s.segment.output], {s.segment.input: cur})[0]
            ref = heads[k].run([s.head.logits], {s.head.input: cur})[0] if s.head else cur
            assert np.array_equal(a.logits[k], ref.reshape(-1))
        for mode, k in [("adaptive", None), ("full", None)] + [("exit_at", k) for k in range(sep.num_stages)]:
            _same(sep.infer(x, mode=mode, exit_at=k), mer.infer(x, mode=mode, exit_at=k), exact=False)


def test_merged_and_separate_paths_agree_on_every_mode(merged_bundle: Path) -> None:
    sep, mer = Engine(str(merged_bundle), merged=False), Engine(str(merged_bundle))
    assert mer.graphs == {"merged_stages": [0, 1, 2], "one_graph_full": True}
    xs = _inputs(sep, 40)
    exits = set()
    for i in range(len(xs)):
        x = xs[i: i + 1]
        for mode, k in [("adaptive", None), ("full", None), ("exit_at", 0), ("exit_at", 1)]:
            a, b = sep.infer(x, mode=mode, exit_at=k), mer.infer(x, mode=mode, exit_at=k)
            _same(a, b, exact=False)
            if mode == "adaptive":
                exits.add(a.exit_index)
                # a merged stage is timed as one call: all segment, no separate head time
                assert b.head_ms[: b.stages_run] == [0.0] * b.stages_run
    assert len(exits) > 1  # the thresholds give mixed exits on these inputs


def test_one_graph_full_mode(merged_bundle: Path) -> None:
    e = Engine(str(merged_bundle))
    r = e.infer(_inputs(e, 1), mode="full")
    assert r.one_graph and r.exit_index == 2 and r.macs == e.manifest.full_model_macs()
    assert r.head_ms[:2] == [None, None] and r.head_ms[2] is not None and r.stages_run == 3
    assert sum(r.segment_ms) + r.head_ms[2] <= r.total_ms + 1e-9
    assert not Engine(str(merged_bundle), merged=False).infer(_inputs(e, 1), mode="full").one_graph


def test_latency_model_is_updated_only_under_a_deadline(bundle: Path) -> None:
    e = Engine(str(bundle))
    e.set_thresholds([2.0, 2.0])
    n0 = [s.n for s in e.latency.segments]
    e.infer(_inputs(e, 1))
    assert [s.n for s in e.latency.segments] == n0
    e.infer(_inputs(e, 1), deadline_s=10.0)
    assert [s.n for s in e.latency.segments] == [n + 1 for n in n0]


def test_v1_bundle_loads_and_v1_manifest_cannot_name_merged_graphs(bundle: Path, merged_bundle: Path) -> None:
    assert json.loads((bundle / "manifest.json").read_text())["schema_version"] == 1
    assert load_bundle(bundle).manifest.full is None and Engine(str(bundle)).graphs["merged_stages"] == []
    m = load_bundle(merged_bundle).manifest
    assert m.schema_version == 2 and m.to_dict()["schema_version"] == 2
    edit_manifest(merged_bundle, lambda d: d.update(schema_version=1))
    with pytest.raises(BundleError, match="needs schema_version 2"):
        load_bundle(merged_bundle)


def _break(d: dict, what: str) -> None:
    if what == "sources":
        d["stages"][1]["merged"]["sources"][0] = "0" * 64
    elif what == "outputs":
        d["stages"][0]["merged"]["outputs"] = ["feat0", "logits"]
    elif what == "full_sources":
        d["full"]["sources"] = d["full"]["sources"][:-1]


@pytest.mark.parametrize("what,needle", [("sources", "built from other files"), ("outputs", "its parts map"),
                                         ("full_sources", "built from other files")])
def test_merged_graph_that_does_not_match_its_parts_is_refused(merged_bundle: Path, what: str, needle: str) -> None:
    edit_manifest(merged_bundle, lambda d: _break(d, what))
    with pytest.raises(BundleError, match=needle) as ei:
        load_bundle(merged_bundle)
    assert ei.value.exit_code == ExitCode.BUNDLE


def test_missing_or_wrong_merged_file_is_refused(merged_bundle: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(merged_bundle, other)
    (merged_bundle / "full.onnx").unlink()
    with pytest.raises(BundleError, match="full.onnx named in the manifest is missing"):
        load_bundle(merged_bundle)
    from edge_ee.core.manifest import sha256_file

    # a merged graph replaced by one with other outputs, or other weights (checksums updated by hand)
    third = tmp_path / "third"
    shutil.copytree(other, third)
    shutil.copy(other / "stage0.onnx", other / "full.onnx")
    edit_manifest(other, lambda d: d["full"].update(sha256=sha256_file(other / "full.onnx")))
    with pytest.raises(BundleError, match="full .*full.onnx.*ONNX maps"):
        Engine(str(other))
    build_bundle(tmp_path / "w", head_kind="confidence", seed=7)
    merge.add_merged_graphs(tmp_path / "w")
    shutil.copy(tmp_path / "w" / "stage1.onnx", third / "stage1.onnx")
    edit_manifest(third, lambda d: d["stages"][1]["merged"].update(sha256=sha256_file(third / "stage1.onnx")))
    with pytest.raises(BundleError, match=r"stages\[1\].merged .*does not match the segments"):
        Engine(str(third))
    r = subprocess.run([sys.executable, "-m", "edge_ee", "run", "--model", str(other), "--source", "synthetic",
                        "-n", "2", "--mode", "full"], capture_output=True, text=True, timeout=120)
    assert r.returncode == ExitCode.BUNDLE and "ONNX maps" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("merged", [True, False])
def test_batch_with_mixed_exits_equals_one_at_a_time(merged_bundle: Path, merged: bool) -> None:
    e = Engine(str(merged_bundle), merged=merged)
    xs = _inputs(e, 64, seed=3)
    for mode, k in [("adaptive", None), ("full", None), ("exit_at", 1)]:
        batch = e.infer_batch(xs, mode=mode, exit_at=k)
        single = [e.infer(xs[i: i + 1], mode=mode, exit_at=k) for i in range(len(xs))]
        for a, b in zip(batch, single):
            _same(a, b, exact=False)
            assert len(a.segment_ms) == len(b.segment_ms)
        if mode == "adaptive":
            assert len({r.exit_index for r in batch}) == 3  # samples left the batch at every exit


def test_batch_with_the_wrong_shape_names_it(merged_bundle: Path) -> None:
    e = Engine(str(merged_bundle))
    with pytest.raises(InferenceError, match=r"batch has shape \(4, 1, 27, 28\).*expects \(N, 1, 28, 28\)") as ei:
        e.infer_batch(np.zeros((4, 1, 27, 28), np.float32))
    assert ei.value.exit_code == ExitCode.RUNTIME
    with pytest.raises(InferenceError, match=r"batch has shape \(1, 28, 28\)"):
        e.infer_batch(np.zeros((1, 28, 28), np.float32))


def test_merge_command_upgrades_a_bundle_in_place(bundle: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edge_ee_export.merge", str(bundle)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "schema v2" in r.stdout and "agree" in r.stdout
    m = load_bundle(bundle).manifest
    assert m.full is not None and [s.merged is not None for s in m.stages] == [True, True, True]
