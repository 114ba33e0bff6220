"""Cut an :class:`EarlyExitModel` into ONNX segments and heads, verify, write a bundle.

* opset 17, batch dimension dynamic (``N``), one file per segment and per head;
* verification: the chained ONNX graphs (onnxruntime) must reproduce the PyTorch exits on real
  samples within ``atol + rtol * |ref|`` (defaults 1e-4 / 1e-3) or the export fails; then the
  runtime's own :class:`edge_ee.core.engine.Engine` must load the bundle and agree too;
* optional int8 static quantisation (onnxruntime, QDQ, per-channel weights) calibrated on real
  samples; the accuracy change is measured and recorded in ``calibration.quantization``;
* merged graphs (manifest schema v2, ``edge_ee_export.merge``): every segment with its head as one graph
  and the whole model as one graph, which the runtime runs instead of the separate files where it is
  faster (one onnxruntime call per stage; ``--mode full`` at one-graph speed);
* the bundle is written to a temporary directory next to ``out`` and renamed into place only when
  everything passed: no half-written bundle is ever left behind.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from edge_ee.calibration import ExitTable
from edge_ee.calibration.record import Calibration
from edge_ee.core.bundle import load_bundle
from edge_ee.core.exit_rules import DEFAULT_RULE
from edge_ee.core.manifest import FileRef, Head, InputSpec, Manifest, Stage, write_manifest
from edge_ee.errors import OutputError

from . import __version__
from .attach import EarlyExitModel
from .calibrate import ExitOutputs, per_condition, select_thresholds, softmax
from .data import Dataset, TensorSplit
from .errors import VerificationError
from .merge import add_merged_graphs, verify_merged

log = logging.getLogger("edge_ee_export")
OPSET = 17


class _HeadWrap(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> Any:
        return self.head(x)


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, outputs: list[str]) -> None:
    module.eval()
    dyn = {input_name: {0: "N"}, **{o: {0: "N"} for o in outputs}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buf, opset_version=OPSET, dynamo=False, input_names=[input_name],
                          output_names=outputs, dynamic_axes=dyn, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    model.producer_name = "edge-ee-export"
    model.producer_version = __version__
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_chain(bundle_dir: Path, m: Manifest, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every exit's (logits, confidence) for a batch through the ONNX files (all heads run)."""
    outs = []
    cur = x
    for s in m.stages:
        cur = _session(bundle_dir / s.segment.file).run([s.segment.output], {s.segment.input: cur})[0]
        if s.head is None:
            outs.append((cur, None))
            continue
        names = [s.head.logits] + ([s.head.confidence] if s.head.confidence else [])
        r = _session(bundle_dir / s.head.file).run(names, {s.head.input: cur})
        outs.append((r[0], r[1].reshape(-1) if len(r) > 1 else None))
    return outs


@torch.no_grad()
def _torch_outputs(ee: EarlyExitModel, x: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray | None]]:
    ee.eval()
    return [(lg.numpy(), c.reshape(-1).numpy() if c is not None else None) for lg, c in ee(x)]


def verify(ee: EarlyExitModel, bundle_dir: Path, m: Manifest, x: torch.Tensor, atol: float = 1e-4,
           rtol: float = 1e-3) -> dict[str, Any]:
    ref = _torch_outputs(ee, x)
    got = run_chain(bundle_dir, m, x.numpy())
    worst = 0.0
    for k, ((rl, rc), (gl, gc)) in enumerate(zip(ref, got)):
        for name, r, g in (("logits", rl, gl), ("confidence", rc, gc)):
            if r is None:
                continue
            if g is None or g.shape != r.shape:
                raise VerificationError(f"exit {k}: ONNX {name} has shape {None if g is None else g.shape}, "
                                        f"PyTorch {r.shape}")
            err = np.abs(g - r)
            worst = max(worst, float(err.max()))
            bad = err > atol + rtol * np.abs(r)
            if bad.any():
                raise VerificationError(
                    f"ONNX/PyTorch mismatch at exit {k} ({name}): max |diff| = {float(err.max()):.3g} "
                    f"on {int(bad.sum())} of {bad.size} values (tolerance {atol:g} + {rtol:g}*|ref|)",
                    "an operator may export differently from its PyTorch semantics; the bundle was not written",
                )
        if not np.array_equal(rl.argmax(1), gl.argmax(1)):
            raise VerificationError(f"ONNX/PyTorch mismatch at exit {k}: predicted labels differ")
    return {"samples": int(x.shape[0]), "max_abs_diff": worst, "atol": atol, "rtol": rtol}


def verify_engine(bundle_dir: Path, ee: EarlyExitModel, x: torch.Tensor, temps: list[float]) -> None:
    """The runtime engine must load the bundle and give the same probabilities as PyTorch."""
    from edge_ee.core.engine import Engine

    eng = Engine(str(bundle_dir))
    ref = _torch_outputs(ee, x)
    for i in range(x.shape[0]):
        for k in range(len(ref)):
            r = eng.infer(x[i: i + 1].numpy(), mode="exit_at", exit_at=k)
            p = softmax(ref[k][0][i: i + 1].astype(np.float64), temps[k])[0]
            if np.abs(r.probs - p).max() > 1e-3:
                raise VerificationError(f"edge_ee Engine disagrees with PyTorch at exit {k} on sample {i}")


# --------------------------------------------------------------------------- quantisation


def quantize_bundle(src: Path, dst: Path, m: Manifest, samples: np.ndarray) -> None:
    """Static int8 quantisation (QDQ, per-channel) of every file, calibrated on real ``samples``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str, data: np.ndarray) -> None:
            self.it = iter([{name: data[i: i + 16]} for i in range(0, len(data), 16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    cur = samples
    for s in m.stages:
        items = [(s.segment.file, s.segment.input, cur)]
        nxt = _session(src / s.segment.file).run([s.segment.output], {s.segment.input: cur})[0]
        if s.head is not None:
            items.append((s.head.file, s.head.input, nxt))
        for fname, iname, data in items:
            pre = dst / (fname + ".pre.onnx")
            try:
                quant_pre_process(str(src / fname), str(pre), skip_symbolic_shape=True)
            except Exception:  # noqa: BLE001 - pre-processing is an optimisation only
                shutil.copy(src / fname, pre)
            quantize_static(str(pre), str(dst / fname), Reader(iname, data), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            pre.unlink()
        cur = nxt


def chain_outputs(bundle_dir: Path, m: Manifest, split: TensorSplit, batch: int = 512) -> ExitOutputs:
    """Every exit's logits (and learned confidence) of the bundle's ONNX chain on ``split`` (batch mode)."""
    k = len(m.stages)
    logits: list[list[np.ndarray]] = [[] for _ in range(k)]
    conf: list[list[np.ndarray]] = [[] for _ in range(k)]
    for i in range(0, len(split), batch):
        for j, (lg, c) in enumerate(run_chain(bundle_dir, m, split.x[i: i + batch].numpy())):
            logits[j].append(np.asarray(lg, np.float64).reshape(len(lg), -1))
            if c is not None:
                conf[j].append(np.asarray(c, np.float64))
    return ExitOutputs([np.concatenate(v) for v in logits], [np.concatenate(v) if v else None for v in conf],
                       split.y.numpy().copy())


def chain_accuracy(bundle_dir: Path, m: Manifest, split: TensorSplit,
                   batch: int = 512) -> dict[str, Any]:
    """Per-exit and adaptive accuracy of the ONNX chain at the manifest's thresholds (batch mode)."""
    out = chain_outputs(bundle_dir, m, split, batch)
    heads = [s.head for s in m.stages[:-1]]
    rules = [h.rule for h in heads if h is not None]
    table = ExitTable.from_outputs([*rules, DEFAULT_RULE], [h.temperature if h else 1.0 for h in [*heads, None]],
                                   out.logits, out.conf, np.asarray(m.cumulative_macs(), np.float64),
                                   labels=out.labels)
    ex = table.exits(table.key_thresholds([h.threshold for h in heads if h is not None]))
    y = out.labels
    pr = table.preds
    final_pred = pr[ex, np.arange(len(y))]
    return {"exit_accuracy": [float((p == y).mean()) for p in pr], "adaptive_accuracy": float((final_pred == y).mean()),
            "exit_fractions": (np.bincount(ex, minlength=len(m.stages)) / len(y)).tolist()}


def apply_thresholds(m: Manifest, cal: dict[str, Any]) -> None:
    """Write a calibration's chosen thresholds into the heads and the calibration section into the manifest."""
    chosen = cal["chosen"]
    for i, s in enumerate(m.stages):
        if s.head is None:
            continue
        if not s.head.is_final:
            s.head.rule = cal["rule"]
            s.head.threshold = float(chosen["thresholds"][i])
        s.head.stats["exit_fraction"] = chosen["exit_fractions"][i]
        s.head.stats["accuracy"] = cal["exit_accuracy"][i]
    m.calibration = Calibration.from_dict(cal)


# --------------------------------------------------------------------------- bundle


def build_manifest(ee: EarlyExitModel, cal: dict[str, Any], *, name: str, task: str, labels: list[str],
                   preprocess: dict[str, Any], layout: str, description: str, producer: dict[str, Any]) -> Manifest:
    meta = ee.meta
    k = ee.num_early
    ct = ee.cost_table()
    rule = cal["rule"]
    chosen = cal["chosen"]
    stages: list[Stage] = []
    prev = "input"
    cum = 0
    for i in range(k + 1):
        last = i == k
        feat = f"feat{i}" if (not last or ee.final_head is not None) else "logits"
        out_shape = ["N", *meta.exits[i].feat_shape[1:]] if not last else None
        seg = FileRef(file=f"segment{i}.onnx", sha256="0" * 64, macs=int(ct["segment_macs"][i]), input=prev,
                      output=feat, output_shape=out_shape)
        cum += ct["segment_macs"][i] + (ct["head_macs"][i] if not last else 0)
        head = None
        if not last:
            e = meta.exits[i]
            conf = "confidence" if ee.heads[i].conf is not None else None
            head = Head(file=f"exit{i}.onnx", sha256="0" * 64, macs=int(e.head_macs), input=feat, logits="logits",
                        kind="confidence" if conf else "softmax", confidence=conf, rule=rule,
                        threshold=float(chosen["thresholds"][i]), temperature=float(cal["temperatures"][i]),
                        stats={"split_point": e.split, "family": e.family,
                               "accuracy": cal["exit_accuracy"][i], "exit_fraction": chosen["exit_fractions"][i],
                               "cumulative_macs": int(cum), "macs_fraction": cum / ct["full_macs"],
                               "ece_before": cal["ece_before"][i], "ece_after": cal["ece_after"][i],
                               "stats_split": cal["split"]["thresholds"]["name"]})
        elif ee.final_head is not None:
            head = Head(file=f"exit{i}.onnx", sha256="0" * 64, macs=int(ct["head_macs"][i]), input=feat,
                        logits="logits", kind="final", rule="max_softmax", threshold=0.0,
                        temperature=float(cal["temperatures"][i]),
                        stats={"split_point": meta.final_split, "accuracy": cal["exit_accuracy"][i],
                               "exit_fraction": chosen["exit_fractions"][i], "early_view": meta.early_view,
                               "ece_before": cal["ece_before"][i], "ece_after": cal["ece_after"][i],
                               "stats_split": cal["split"]["thresholds"]["name"]})
        stages.append(Stage(seg, head))
        prev = feat
    spec = InputSpec(name="input", shape=["N", *meta.input_shape], dtype="float32", layout=layout,
                     preprocess=preprocess)
    return Manifest(name=name, task=task, labels=list(labels), input=spec, stages=stages, description=description,
                    calibration=Calibration.from_dict(cal), producer=producer)


def _write_files(ee: EarlyExitModel, m: Manifest, d: Path, example: torch.Tensor) -> None:
    x = example[:2].clone()
    with torch.no_grad():
        for i, s in enumerate(m.stages):
            _export(ee.segments[i], x, d / s.segment.file, s.segment.input, [s.segment.output])
            y = ee.segments[i](x)
            if s.head is not None:
                hm = ee.heads[i] if i < ee.num_early else ee.final_head
                outs = [s.head.logits] + ([s.head.confidence] if s.head.confidence else [])
                _export(_HeadWrap(hm), y, d / s.head.file, s.head.input, outs)  # type: ignore[arg-type]
            x = y


def producer_info(seed: int, command: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "tool": f"edge-ee-export {__version__}",
        "torch": torch.__version__.split("+")[0],
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "onnx_opset": OPSET,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "seed": seed,
        "command": command if command is not None else " ".join(["edge-ee-export", *sys.argv[1:]]),
        **extra,
    }


@dataclass(frozen=True)
class WriteOptions:
    """How :func:`export_bundle` verifies and writes: samples and tolerances of the ONNX-vs-PyTorch check,
    whether an existing ``out`` may be replaced, whether the merged graphs are added."""

    verify_samples: int = 64
    atol: float = 1e-4
    rtol: float = 1e-3
    overwrite: bool = True
    merged: bool = True


def _quantize(ee: EarlyExitModel, cal: dict[str, Any], tmp: Path, m: Manifest, qs: TensorSplit) -> None:
    """int8 static quantisation of the bundle in ``tmp``, thresholds re-selected on the int8 outputs, the
    accuracy change recorded in the manifest."""
    fp32 = chain_accuracy(tmp, m, qs)
    qdir = Path(tempfile.mkdtemp(prefix=".q-", dir=tmp))
    quantize_bundle(tmp, qdir, m, qs.x[:256].numpy())
    for f, _ in m.files():
        os.replace(qdir / f, tmp / f)
    shutil.rmtree(qdir)
    write_manifest(m, tmp)
    # thresholds from the int8 model's own outputs: quantisation moves the scores
    ct = ee.cost_table()
    cal8 = {**cal, **select_thresholds(chain_outputs(tmp, m, qs), cal["temperatures"], ct["segment_macs"],
                                       ct["head_macs"], cal["target_drop"], cal.get("confidence", 0.9),
                                       rules=[cal["rule"]],
                                       conditions=qs.conditions if per_condition(cal) else None)}
    cal8["method"] = str(cal.get("method", "")) + "; thresholds re-selected on the int8 bundle's outputs"
    apply_thresholds(m, cal8)
    int8 = chain_accuracy(tmp, m, qs)
    m.calibration.extra["quantization"] = {
        "kind": "onnxruntime static QDQ int8 (per-channel weights, uint8 activations)",
        "calibration_samples": int(min(256, len(qs))), "measured_on": qs.name,
        "fp32": fp32, "int8": int8,
        "adaptive_accuracy_change": int8["adaptive_accuracy"] - fp32["adaptive_accuracy"],
        "thresholds": "re-selected on the int8 outputs (fp32 adaptive accuracy at the fp32 thresholds)",
    }
    m.producer["quantized"] = True


def _put_in_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` (two renames; an existing bundle is removed only once the new one is there)."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def export_bundle(ee: EarlyExitModel, cal: dict[str, Any], out: str | os.PathLike[str], data: Dataset, *, name: str,
                  description: str = "", producer: dict[str, Any] | None = None, quantize: bool = False,
                  check: Callable[[Path], dict[str, Any]] | None = None, options: WriteOptions = WriteOptions(),
                  ) -> Path:
    """Write a verified bundle for ``data``'s task, labels, preprocessing and layout to ``out`` (atomically:
    temp dir, then rename), verified (and, with ``quantize``, quantised) on ``data.calib_thr``; with
    ``options.merged`` (default) add the merged stage graphs and the one-graph full model. ``check(bundle_dir)``
    runs last on the finished bundle (e.g. parity with an original ONNX model); it raises to reject the bundle,
    its result is recorded as ``producer.check``."""
    out = Path(out)
    if out.exists() and not options.overwrite:
        raise OutputError(f"{out} already exists", "pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    ee.eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes 0700; a bundle is shipped and read by service users
        m = build_manifest(ee, cal, name=name, task=data.task, labels=data.labels, preprocess=data.preprocess,
                           layout=data.layout, description=description, producer=producer or producer_info(0, None))
        xs = data.calib_thr.x[:options.verify_samples]
        _write_files(ee, m, tmp, xs)
        write_manifest(m, tmp)
        ver = verify(ee, tmp, m, xs, options.atol, options.rtol)
        verify_engine(tmp, ee, xs[:4], cal["temperatures"])
        m.producer["verification"] = ver
        if quantize:
            _quantize(ee, cal, tmp, m, data.calib_thr)
        write_manifest(m, tmp)
        if options.merged:
            m = add_merged_graphs(tmp)
            verify_merged(tmp, xs[:8].numpy())
        if check is not None:
            m.producer["check"] = check(tmp)
            write_manifest(m, tmp)
        load_bundle(tmp)  # the runtime must accept it
        _put_in_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
