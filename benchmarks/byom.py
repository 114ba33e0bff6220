"""Bring your own model: early exits on an ONNX classifier the project did not define.

    python benchmarks/byom.py                       # full run (image folder of 15k Fashion-MNIST images)
    python benchmarks/byom.py --per-class 300 --epochs 2 --exit-epochs 2 --no-doc   # quick look

1. an image folder (one sub-folder per class, PNG) made from Fashion-MNIST's training IDX files;
2. a torchvision-style ResNet-18 (``examples/export_torchvision.py``: torchvision's module paths, narrower) trained
   here on that folder's training split, exported to ONE ONNX file with torch.onnx (TorchScript path);
3. ``edge-ee-export onnx MODEL.onnx --data DIR ...`` as a subprocess, timed (the time to export);
4. the bundle measured with the runtime's Engine on the folder's test split (never used for training or
   calibration), beside the original ONNX model in onnxruntime on the same images.

Writes a section of ``docs/benchmarks.md`` between ``<!-- byom:start -->`` and ``<!-- byom:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "export"), str(ROOT / "examples")]

MEAN, STD = 0.286, 0.353  # Fashion-MNIST pixel statistics on the [0, 1] scale


def make_folder(out: Path, per_class: int) -> Path:
    import cv2

    from edge_ee.pipeline.datasets import load_fashion_mnist

    done = out / ".complete"
    if done.exists() and done.read_text() == str(per_class):
        return out
    x, y = load_fashion_mnist(None, "train")
    for c in range(10):
        d = out / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i, j in enumerate(np.flatnonzero(y == c)[:per_class]):
            cv2.imwrite(str(d / f"{i:05d}.png"), x[j])
    done.write_text(str(per_class))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int, default=1500)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--exit-epochs", type=int, default=20)
    p.add_argument("--calib", type=int, default=4000)
    p.add_argument("--exits", default="layer1/layer1/0,layer1")
    p.add_argument("--head", default="dws_conf")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=str(ROOT / ".cache" / "byom"))
    p.add_argument("--no-doc", action="store_true")
    a = p.parse_args()
    import torch
    from edge_ee_export.data import image_folder
    from edge_ee_export.onnx_import import ort_logits, ort_session
    from edge_ee_export.train import evaluate, train_backbone
    from export_torchvision import LocalResNet

    from edge_ee.core.bundle import load_bundle
    from edge_ee.core.engine import Engine

    torch.set_num_threads(a.threads)
    work = Path(a.work)
    folder = make_folder(work / f"fmnist-{a.per_class}", a.per_class)
    data = image_folder.load(folder, size=(28, 28), color="gray", seed=0, mean=[MEAN], std=[STD], calib=a.calib)
    onnx_path = work / f"resnet18w{a.width}-{a.per_class}-e{a.epochs}.onnx"
    if not onnx_path.exists():
        model = LocalResNet(num_classes=10, width=a.width, in_channels=1)
        t = time.perf_counter()
        train_backbone(model, data, epochs=a.epochs, progress=False)
        print(f"trained the ResNet in {time.perf_counter() - t:.0f} s: test accuracy {evaluate(model, data.test):.4f}")
        model.eval()
        torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    bundle = work / "bundle"
    cmd = [sys.executable, "-m", "edge_ee_export.cli", "onnx", str(onnx_path), "--data", str(folder), "--mean",
           str(MEAN), "--std", str(STD), "--exits", a.exits, "--head", a.head, "--exit-epochs", str(a.exit_epochs),
           "--calib", str(a.calib), "--threads", str(a.threads), "--no-progress", "--out", str(bundle)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "export")])}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    export_s = time.perf_counter() - t

    test = data.test
    x, y = test.x.numpy(), test.y.numpy()
    orig = float((ort_logits(ort_session(onnx_path.read_bytes()), x).argmax(1) == y).mean())
    b = load_bundle(bundle)
    eng = Engine(b)
    full = ada = 0
    macs = 0.0
    for xi, yi in zip(x, y):
        r = eng.infer(xi[None], mode="full")
        full += r.label_index == yi
        r = eng.infer(xi[None])
        ada += r.label_index == yi
        macs += r.macs
    n = len(y)
    m = b.manifest
    res = {"images_per_class": a.per_class, "test_images": n, "onnx": onnx_path.name, "exits": a.exits,
           "export_seconds": export_s, "threads": a.threads, "original_onnx_accuracy": orig,
           "bundle_full_accuracy": full / n, "early_exit_accuracy": ada / n,
           "macs_ratio": macs / n / m.full_model_macs(), "full_macs": m.full_model_macs(),
           "guarantee": m.calibration.guarantee.describe() if m.calibration and m.calibration.guarantee else None,
           "calib_thr": len(data.calib_thr)}
    print(json.dumps(res, indent=1))
    if not a.no_doc:
        write_doc(res, " ".join(["python benchmarks/byom.py", *sys.argv[1:]]))
    return 0


def write_doc(r: dict, command: str) -> None:
    drop = 100 * (r["bundle_full_accuracy"] - r["early_exit_accuracy"])
    g = r.get("guarantee")
    eq = abs(r["bundle_full_accuracy"] - r["original_onnx_accuracy"]) <= 0.0005
    ok = drop <= 1.0 and r["macs_ratio"] <= 0.6
    text = f"""<!-- byom:start -->
## Bring your own model (ONNX in, early-exit bundle out)

`{command}` ({r['threads']} threads). A torchvision-style ResNet-18 (narrow, `{r['onnx']}`) trained here on an image
folder of {10 * r['images_per_class']} Fashion-MNIST PNGs, exported to one ONNX file, then `edge-ee-export onnx`
with exits `{r['exits']}` and {r['calib_thr']} threshold-calibration frames. Measured with the runtime's Engine on the
folder's test split ({r['test_images']} images, never used for training or calibration):

| | accuracy | MACs |
|---|---|---|
| original ONNX model (onnxruntime) | {100 * r['original_onnx_accuracy']:.2f}% | {r['full_macs']:,} |
| bundle, `--mode full` | {100 * r['bundle_full_accuracy']:.2f}% | 100% |
| bundle, early exit | {100 * r['early_exit_accuracy']:.2f}% (drop {drop:.2f} pp) | {100 * r['macs_ratio']:.1f}% |

Time to export (convert, train the exits, calibrate, export, verify, parity with the original ONNX):
{r['export_seconds']:.0f} s. Guarantee recorded: {g or 'none'}.

Targets: full model equal to the original ONNX (+-0.05 pp): **{'met' if eq else 'not met'}**
({100 * (r['bundle_full_accuracy'] - r['original_onnx_accuracy']):+.2f} pp); early exit at <= 1 pp drop and <= 60% of
the MACs: **{'met' if ok else 'not met'}** ({drop:.2f} pp at {100 * r['macs_ratio']:.1f}% on the test split).
<!-- byom:end -->"""
    doc = ROOT / "docs" / "benchmarks.md"
    s = doc.read_text()
    if "<!-- byom:start -->" in s:
        s = s[: s.index("<!-- byom:start -->")] + text + s[s.index("<!-- byom:end -->") + len("<!-- byom:end -->"):]
    else:
        s = s.rstrip("\n") + "\n\n" + text + "\n"
    doc.write_text(s)


if __name__ == "__main__":
    sys.exit(main())
