"""Bundle loading and validation failures: each gives a BundleError naming the problem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from factory import build_bundle, edit_manifest

from edge_ee.core.bundle import load_bundle
from edge_ee.core.engine import Engine
from edge_ee.core.manifest import parse_manifest, read_manifest
from edge_ee.errors import BundleError, ExitCode


def test_roundtrip(bundle: Path) -> None:
    b = load_bundle(bundle)
    m = b.manifest
    assert m.schema_version == 1
    assert len(m.stages) == 3
    assert m.exits[-1].is_final
    assert m.cumulative_macs()[-1] >= m.full_model_macs()
    again = parse_manifest(json.loads(json.dumps(m.to_dict())))
    assert again.to_dict() == m.to_dict()


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.update(schema_version=99), "unsupported schema_version 99"),
        (lambda d: d.pop("labels"), "labels is missing"),
        (lambda d: d.update(task="segmentation"), "task = 'segmentation'"),
        (lambda d: d["stages"][0]["segment"].update(file="../../etc/passwd"), "outside the bundle"),
        (lambda d: d["stages"][0]["segment"].update(file="/etc/passwd"), "outside the bundle"),
        (lambda d: d["stages"][1]["segment"].update(input="nope"), "does not chain"),
        (lambda d: d["stages"][0]["head"].update(input="nope"), "does not match the segment output"),
        (lambda d: d["stages"][0]["head"].update(kind="weird"), "kind = 'weird'"),
        (lambda d: d["stages"][0]["head"].update(rule="confidence"), "no confidence output"),
        (lambda d: d["stages"][0]["segment"].update(sha256="xyz"), "not a lowercase hex sha256"),
        (lambda d: d["stages"][0]["segment"].update(macs=-1), "macs must be >= 0"),
        (lambda d: d["stages"][0].update(head=None), "only the last stage may omit it"),
        (lambda d: d["stages"][2]["head"].update(kind="softmax"), "must have kind 'final'"),
        (lambda d: d["input"].update(dtype="float64"), "input.dtype"),
        (lambda d: d["stages"][0]["head"].update(temperature=0), "temperature must be a positive"),
        (lambda d: d.update(stages=[]), "stages is empty"),
        (lambda d: d["stages"][0]["segment"].update(macs="12"), "segment.macs has type str"),
        (lambda d: d["stages"][1]["head"].update(kind="final"), "has kind 'final' but is not the last stage"),
        # an image always becomes a [C, H, W] tensor: a non-image input shape is refused even with a size
        (lambda d: d["input"].update(shape=[1, 784], preprocess={"kind": "image", "size": [28, 28]}),
         "is not an image shape"),
    ],
)
def test_manifest_rejections(bundle: Path, mutate, needle: str) -> None:
    edit_manifest(bundle, mutate)
    with pytest.raises(BundleError) as ei:
        load_bundle(bundle)
    assert needle in str(ei.value)
    assert ei.value.exit_code == ExitCode.BUNDLE


def test_corrupt_json(bundle: Path) -> None:
    (bundle / "manifest.json").write_text('{"schema_version": 1, "name": ')
    with pytest.raises(BundleError, match="corrupt JSON at line 1"):
        read_manifest(bundle)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "missing")


def test_missing_file(bundle: Path) -> None:
    (bundle / "exit1.onnx").unlink()
    with pytest.raises(BundleError, match="exit1.onnx named in the manifest is missing"):
        load_bundle(bundle)


def test_tampered_file(bundle: Path) -> None:
    with open(bundle / "segment1.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="checksum mismatch for segment1.onnx"):
        load_bundle(bundle)
    load_bundle(bundle, verify_checksums=False)  # opt-out exists for trusted fast start


def test_symlink_escaping_bundle(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    os.replace(bundle / "segment0.onnx", outside)
    (bundle / "segment0.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle directory"):
        load_bundle(bundle)


def test_onnx_shapes_must_chain(tmp_path: Path) -> None:
    a = build_bundle(tmp_path / "a", hidden=16)
    b = build_bundle(tmp_path / "b", hidden=24)
    # put a segment with another width into bundle a, with a matching checksum: loading passes,
    # building the engine must notice the shapes do not chain
    (a / "segment1.onnx").write_bytes((b / "segment1.onnx").read_bytes())
    edit_manifest(a, lambda d: d["stages"][1]["segment"].update(
        sha256=__import__("hashlib").sha256((a / "segment1.onnx").read_bytes()).hexdigest(), output_shape=None))
    with pytest.raises(BundleError, match="does not chain|does not match"):
        Engine(str(a))


def test_not_onnx(bundle: Path) -> None:
    import hashlib

    (bundle / "exit0.onnx").write_bytes(b"this is not onnx")
    edit_manifest(bundle, lambda d: d["stages"][0]["head"].update(
        sha256=hashlib.sha256(b"this is not onnx").hexdigest()))
    with pytest.raises(BundleError, match="exit0.onnx is not a valid ONNX file"):
        Engine(str(bundle))
    with pytest.raises(BundleError, match="onnxruntime cannot load"):  # past the loader's checks
        Engine(load_bundle(bundle, verify_checksums=False))


def test_label_count_mismatch(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.update(labels=["a", "b"]))
    with pytest.raises(BundleError, match="10 logits for 2 labels"):
        Engine(str(bundle))


@pytest.mark.parametrize("path", ["edge_ee/bundles/fashion_mnist", "edge_ee/bundles/kws",
                                  "benchmarks/bundles/fashion_mnist_wide"])
def test_committed_bundles_verify_and_answer(path: str) -> None:
    """Every bundle in the repository (shipped and benchmark) passes its checksums, chains, and
    answers from its first exit and its final classifier."""
    import numpy as np

    root = Path(__file__).resolve().parents[1]
    e = Engine(load_bundle(root / path), warmup=0)
    x = np.zeros(e.input_shape, e.input_dtype)
    assert e.infer(x, mode="exit_at", exit_at=0).exit_index == 0
    full = e.infer(x, mode="full")
    assert full.exit_index == e.num_stages - 1 and full.label in e.manifest.labels
