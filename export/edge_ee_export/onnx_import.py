"""Use an existing model: an ONNX classifier (converted to PyTorch with onnx2torch) or a PyTorch module from
``module.path:factory`` with a state_dict.

An ONNX model must be a single-input image classifier: input ``[N, C, H, W]`` float with fixed C, H, W (the batch
axis may be dynamic), one output ``[N, classes]`` of logits. The converted module is checked against the original
ONNX model in onnxruntime before anything is trained, and the exported bundle's final exit is checked against the
original again at the end (:func:`parity`), so the bundle's full model is the user's model.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from .errors import ModelError, UsageError


def _import_onnx2torch() -> types.ModuleType:
    """onnx2torch imports torchvision at import time, only for its NonMaxSuppression and RoiAlign converters
    (never used by a classifier). Where torchvision is missing or does not load beside this torch, a stand-in
    whose functions raise is put in place for that import only."""
    try:
        import onnx2torch
        return onnx2torch
    except ModuleNotFoundError as e:
        if e.name == "onnx2torch":
            raise ModelError("importing ONNX models needs onnx2torch, which is not installed",
                             "pip install -c constraints.txt --no-deps onnx2torch (see export/README.md)") from e
    except Exception:  # noqa: BLE001 - a torchvision built for another torch raises RuntimeError on import
        pass
    saved = {k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")}
    for k in list(sys.modules):
        if k == "torchvision" or k.startswith(("torchvision.", "onnx2torch")):
            del sys.modules[k]

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise ModelError("this ONNX operator needs torchvision, which does not load here")

    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        import onnx2torch
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.ops"]
        sys.modules.update(saved)
    return onnx2torch


@dataclass
class ImportedModel:
    """A converted model and what the exporter needs to know about it."""

    module: nn.Module
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    source: dict[str, Any]  # recorded in the manifest's producer.source_model
    onnx_bytes: bytes | None = None  # the original ONNX model (batch axis made dynamic) for parity checks

    def example(self, n: int = 2) -> torch.Tensor:
        return torch.randn(n, *self.input_shape, generator=torch.Generator().manual_seed(0))


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def _dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    t = vi.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _inline_identities(model: onnx.ModelProto) -> None:
    """torch.onnx.export shares equal weights through Identity nodes; onnx2torch wants weights as initializers."""
    inits = {i.name: i for i in model.graph.initializer}
    keep = []
    for n in model.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            t = copy.deepcopy(inits[n.input[0]])
            t.name = n.output[0]
            model.graph.initializer.append(t)
            inits[t.name] = t
        else:
            keep.append(n)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """The operators of ``model`` onnx2torch has no converter for, as ``Op (opset N)``."""
    from onnx2torch.node_converters.registry import get_converter

    opset = {o.domain: o.version for o in model.opset_import}
    bad: list[str] = []
    for n in model.graph.node:
        dom = n.domain or ""
        try:
            get_converter(operation_type=n.op_type, version=opset.get(dom, opset.get("", 17)), domain=dom)
        except NotImplementedError:
            s = f"{(dom + '.') if dom else ''}{n.op_type} (opset {opset.get(dom, '?')})"
            if s not in bad:
                bad.append(s)
    return bad


def ort_session(onnx_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    ort.set_default_logger_severity(3)  # a failing probe run is reported as a ModelError, not as an ORT log line
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])


def ort_logits(sess: ort.InferenceSession, x: np.ndarray, batch: int = 256) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i: i + batch].astype(np.float32)})[0]
                           for i in range(0, len(x), batch)])


def _read_onnx(p: Path) -> onnx.ModelProto:
    if not p.is_file():
        raise ModelError(f"{p}: no such file", "give the path of an .onnx model file")
    try:
        return onnx.load(str(p))
    except Exception as e:  # noqa: BLE001 - protobuf decode errors have many types
        raise ModelError(f"{p} is not an ONNX model: {str(e).splitlines()[0][:200]}") from e


def _image_input(p: Path, model: onnx.ModelProto) -> tuple[onnx.ValueInfoProto, tuple[int, int, int]]:
    """The one float32 [N, C, H, W] input with fixed C, H, W, and the one output, checked."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"{p} takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                         "only single-input image classifiers can get early exits")
    if len(g.output) != 1:
        raise ModelError(f"{p} has {len(g.output)} outputs ({', '.join(o.name for o in g.output)}); "
                         "a classifier has one output, the logits [N, classes]",
                         "export the model with only its logits as output")
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError(f"{p}: input {inp.name!r} is not float32", "export the model with a float32 input")
    dims = _dims(inp)
    if len(dims) != 4:
        raise ModelError(f"{p}: input {inp.name!r} has shape {dims}; an image classifier takes [N, C, H, W]")
    if not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise ModelError(f"{p}: input {inp.name!r} has shape {dims}: channels, height and width must be fixed "
                         "numbers (a dynamic spatial size cannot be split into fixed segments)",
                         "re-export the model with a fixed input size; only the batch axis may be dynamic")
    return inp, (int(dims[1]), int(dims[2]), int(dims[3]))


def _reference_logits(p: Path, model: onnx.ModelProto, onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """The original model's logits on ``x`` in onnxruntime, checked to be logits [N, classes]."""
    try:
        ref = ort_logits(ort_session(onnx_bytes), x)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError(f"{p} does not run in onnxruntime on a batch of 2: {str(e).splitlines()[0][:300]}",
                         "re-export the model with a dynamic batch axis (dynamic_axes={'input': {0: 'N'}})") from e
    if ref.ndim != 2 or ref.shape[1] < 2:
        raise ModelError(f"{p} is not a classifier: its output has shape {list(ref.shape)} for a batch of 2 "
                         "(expected [N, classes] with at least 2 classes)")
    g = model.graph
    last = next((n for n in g.node if g.output[0].name in n.output), None)
    if last is not None and last.op_type in ("Softmax", "LogSoftmax", "Sigmoid"):
        raise ModelError(f"{p} ends in {last.op_type}: exits are calibrated on logits",
                         "export the model without its final softmax (its argmax is unchanged)")
    return ref


def _convert(p: Path, model: onnx.ModelProto, x: np.ndarray, ref: np.ndarray) -> tuple[nn.Module, float]:
    """The onnx2torch module (frozen), checked to reproduce ``ref``; and the largest difference."""
    o2t = _import_onnx2torch()
    bad = unsupported_ops(model)
    if bad:
        raise ModelError(f"{p} uses operators the ONNX-to-PyTorch converter (onnx2torch) cannot handle: "
                         f"{', '.join(bad)}", "re-export the model with standard operators (e.g. a lower opset), "
                         "or pass the PyTorch module with --model module:factory")
    conv = onnx.ModelProto()
    conv.CopyFrom(model)
    _inline_identities(conv)
    try:
        module = o2t.convert(conv)
    except Exception as e:  # noqa: BLE001 - converters raise NotImplementedError, KeyError, ...
        raise ModelError(f"{p} cannot be converted to PyTorch: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
                         "pass the PyTorch module with --model module:factory instead") from e
    module.eval()
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    err = float(np.max(np.abs(got - ref)))
    if not np.allclose(got, ref, atol=1e-4, rtol=1e-3):
        raise ModelError(f"the converted {p.name} disagrees with the original in onnxruntime (max |diff| {err:.3g})",
                         "the converter mishandles one of its operators; pass the PyTorch module with --model")
    for prm in module.parameters():
        prm.requires_grad_(False)
    return module, err


def load_onnx(path: str | Path) -> ImportedModel:
    """Check that ``path`` is a usable ONNX classifier and convert it; every problem is a :class:`ModelError`."""
    p = Path(path)
    model = _read_onnx(p)
    inp, chw = _image_input(p, model)
    g = model.graph
    # a dynamic batch axis: the exporter trains and verifies in batches
    for vi in (inp, g.output[0]):
        d0 = vi.type.tensor_type.shape.dim
        if len(d0):
            d0[0].ClearField("dim_value")
            d0[0].dim_param = "N"
    onnx_bytes = model.SerializeToString()
    x = np.random.default_rng(0).standard_normal((2, *chw)).astype(np.float32)
    ref = _reference_logits(p, model, onnx_bytes, x)
    module, err = _convert(p, model, x, ref)
    src = {"kind": "onnx", "path": str(p), "sha256": _sha256(p), "input": inp.name, "output": g.output[0].name,
           "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
           "converter": f"onnx2torch {_version('onnx2torch')}", "conversion_max_abs_diff": err}
    return ImportedModel(module, chw, int(ref.shape[1]), src, onnx_bytes)


def load_factory(spec: str, weights: str | None = None, factory_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """``package.module:factory`` or ``path/to/file.py:factory``: call the factory, load ``weights`` (a state_dict,
    or a checkpoint dict holding one under ``state_dict`` / ``model``) strictly."""
    if ":" not in spec:
        raise UsageError(f"--model {spec!r}: give module.path:factory or file.py:factory",
                         "e.g. --model mypkg.models:build or --model ./net.py:Net")
    mod_name, fn_name = spec.rsplit(":", 1)
    try:
        if mod_name.endswith(".py"):
            f = Path(mod_name)
            if not f.is_file():
                raise UsageError(f"--model {spec!r}: {f} does not exist")
            s = importlib.util.spec_from_file_location(f"_edge_ee_user_{f.stem}", f)
            if s is None or s.loader is None:
                raise UsageError(f"--model {spec!r}: cannot load {f}")
            mod = importlib.util.module_from_spec(s)
            sys.modules[s.name] = mod
            s.loader.exec_module(mod)
        else:
            mod = importlib.import_module(mod_name)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything on import
        raise UsageError(f"--model {spec!r}: importing {mod_name} failed: {type(e).__name__}: {e}") from e
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise UsageError(f"--model {spec!r}: {mod_name} has no callable {fn_name!r}")
    try:
        model = fn(**(factory_kwargs or {}))
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"--model {spec!r}: calling {fn_name}() failed: {type(e).__name__}: {e}") from e
    if isinstance(model, torch.jit.ScriptModule) or not isinstance(model, nn.Module):
        raise UsageError(f"--model {spec!r}: {fn_name}() returned {type(model).__name__}, not a torch.nn.Module "
                         "(TorchScript modules cannot be split)")
    if weights:
        load_weights(model, weights)
    model.eval()
    return model


def load_weights(model: nn.Module, weights: str) -> None:
    w = Path(weights)
    if not w.is_file():
        raise UsageError(f"--weights {weights}: no such file")
    if w.suffix == ".onnx":
        raise UsageError(f"--weights {weights} is an ONNX model", f"use `edge-ee-export onnx {weights} ...`")
    try:
        state = torch.load(str(w), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"--weights {weights}: not a PyTorch state_dict ({str(e).splitlines()[0][:200]})",
                         "save it with torch.save(model.state_dict(), PATH)") from e
    if isinstance(state, dict):
        for k in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(k), dict):
                state = state[k]
                break
    if not isinstance(state, dict):
        raise UsageError(f"--weights {weights} holds a {type(state).__name__}, not a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    try:
        res = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        lines = [ln.strip() for ln in str(e).splitlines()[1:4]]
        raise ModelError(f"--weights {weights} does not fit {type(model).__name__}: {'; '.join(lines)}",
                         "build the model with the same architecture and options it was trained with") from e
    if res.missing_keys or res.unexpected_keys:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        raise ModelError(f"--weights {weights} does not fit {type(model).__name__}: "
                         + "; ".join(s for s in (f"missing {few(res.missing_keys)}" if res.missing_keys else "",
                                                 f"unexpected {few(res.unexpected_keys)}" if res.unexpected_keys
                                                 else "") if s),
                         "build the model with the same architecture and options it was trained with")


def parity(onnx_bytes: bytes, bundle_dir: Path, x: np.ndarray, y: np.ndarray, atol: float = 1e-3,
           rtol: float = 1e-3) -> dict[str, Any]:
    """The bundle's full model (every segment + the final head, in onnxruntime) against the original ONNX model on
    ``x``: logits within ``atol + rtol * |ref|``, same predictions; raises :class:`VerificationError` otherwise."""
    from edge_ee.core.bundle import load_bundle

    from .errors import VerificationError
    from .onnx_export import run_chain

    m = load_bundle(bundle_dir).manifest
    ref = ort_logits(ort_session(onnx_bytes), x)
    got = np.concatenate([np.asarray(run_chain(bundle_dir, m, x[i: i + 256])[-1][0]).reshape(len(x[i: i + 256]), -1)
                          for i in range(0, len(x), 256)])
    diff = np.abs(got - ref)
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    res = {"samples": int(len(x)), "max_abs_diff": float(diff.max()), "prediction_agreement": agree,
           "original_accuracy": float((ref.argmax(1) == y).mean()),
           "bundle_accuracy": float((got.argmax(1) == y).mean())}
    if not np.all(diff <= atol + rtol * np.abs(ref)):
        raise VerificationError(f"the bundle's full model differs from the original ONNX model: max |diff| "
                                f"{res['max_abs_diff']:.3g}, predictions agree on {100 * agree:.2f}% of "
                                f"{len(x)} samples")
    return res
