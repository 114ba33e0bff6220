"""An exported bundle validates, runs in the runtime without torch, and matches PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_ee.core.bundle import load_bundle

ENGINE_SCRIPT = r"""
import json, sys
import numpy as np
from edge_ee.core.engine import Engine
eng = Engine(sys.argv[1])
x = np.load(sys.argv[2])
res = []
for i in range(x.shape[0]):
    r = eng.infer(x[i:i + 1], mode="adaptive")
    f = eng.infer(x[i:i + 1], mode="full")
    res.append([r.exit_index, r.label_index, r.macs, f.label_index, f.macs])
assert "torch" not in sys.modules, "the runtime imported torch"
print(json.dumps(res))
"""


def test_bundle_validates(fm_bundle: Path) -> None:
    b = load_bundle(fm_bundle)
    m = b.manifest
    assert m.task == "image_classification"
    assert len(m.stages) == 3 and m.stages[-1].head is not None and m.stages[-1].head.kind == "final"
    assert m.input.preprocess["kind"] == "image" and m.input.shape[0] == "N"
    assert m.producer["onnx_opset"] == 17 and m.producer["torch"].startswith("2.")
    assert m.producer["verification"]["max_abs_diff"] <= 1e-3
    cal = m.calibration.to_dict()
    pts = cal["operating_points"]
    assert pts and [p["mean_macs"] for p in pts] == sorted(p["mean_macs"] for p in pts)
    for p in pts:
        assert len(p["thresholds"]) == 2 and len(p["exit_fractions"]) == 3
        assert 0 <= p["agreement"] <= 1 and abs(sum(p["exit_fractions"]) - 1) < 1e-9
    accs = [p["accuracy"] for p in pts]
    assert accs == sorted(accs), "operating points must form a Pareto frontier"
    for key in ("full_accuracy", "full_macs", "oracle_macs_ratio", "target_drop", "split", "temperatures",
                "guarantee"):
        assert key in cal
    g = m.calibration.guarantee
    assert g is not None and g.risk == "accuracy_drop" and g.confidence == 0.9 and g.n == 150
    for h in m.exits[:-1]:
        assert h.kind == "confidence" and h.confidence == "confidence"
        assert "accuracy" in h.stats and "exit_fraction" in h.stats
    assert not list(fm_bundle.parent.glob(".bundle.partial-*"))


def test_runs_in_runtime_without_torch(fm_bundle: Path, tmp_path: Path) -> None:
    from edge_ee_export.data import fashion_mnist

    imgs, _ = fashion_mnist.load_raw(split="test")
    x = fashion_mnist.to_input(imgs[:8]).numpy()
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, str(fm_bundle), str(tmp_path / "x.npy")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert len(res) == 8
    full_macs = load_bundle(fm_bundle).manifest.full_model_macs()
    for _exit, _lab, _macs, _flab, fmacs in res:
        assert fmacs == full_macs


def test_chained_onnx_matches_pytorch(fm_export, fm_data) -> None:
    import torch
    from edge_ee_export.onnx_export import run_chain

    ee, path = fm_export
    m = load_bundle(path).manifest
    assert m.producer["verification"]["samples"] >= 16
    x = fm_data.test.x[:32]
    ee.eval()
    with torch.no_grad():
        ref = ee(x)
    got = run_chain(path, m, x.numpy())
    assert len(got) == 3
    for (rl, rc), (gl, gc) in zip(ref, got):
        np.testing.assert_allclose(gl, rl.numpy(), atol=1e-4, rtol=1e-3)
        if rc is not None:
            np.testing.assert_allclose(gc, rc.reshape(-1).numpy(), atol=1e-4, rtol=1e-3)


def test_engine_probabilities_match_pytorch(fm_export, fm_data) -> None:
    import torch
    from edge_ee_export.calibrate import softmax

    from edge_ee.core.engine import Engine

    ee, path = fm_export
    eng = Engine(str(path))
    temps = [h.temperature for h in eng.heads]  # type: ignore[union-attr]
    with torch.no_grad():
        ref = ee(fm_data.test.x[:4])
    for i in range(4):
        for k in range(3):
            r = eng.infer(fm_data.test.x[i: i + 1].numpy(), mode="exit_at", exit_at=k)
            p = softmax(ref[k][0][i: i + 1].double().numpy(), temps[k])[0]
            np.testing.assert_allclose(r.probs, p, atol=1e-4)
