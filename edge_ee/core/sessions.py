"""onnxruntime sessions: low-latency options, provider selection, and I/O checks against the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from ..errors import BundleError, UsageError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


OPT_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass
class SessionConfig:
    providers: list[str] | None = None  # None: CPU
    intra_op_threads: int = 1  # per-sample latency on small models: 1 thread avoids sync overhead
    allow_spinning: bool = False  # idle spinning burns CPU and skews energy readings
    # graph optimisation level: "all" adds layout transformations (NCHWc on x86) that pay a conversion at
    # every segment boundary; "extended" avoids them but loses the faster kernels. Measured per bundle by
    # benchmarks/engine_overhead.py --opt-levels: "all" is faster on every shipped bundle here.
    optimization: str = "all"


def resolve_providers(names: list[str] | None) -> list[str]:
    """Map user names (``cpu``, ``cuda``, ``tensorrt`` or full provider names) to available providers."""
    available = ort.get_available_providers()
    if not names:
        return ["CPUExecutionProvider"]
    out = []
    for n in names:
        full = PROVIDER_ALIASES.get(n.lower(), n)
        if full not in available:
            raise UsageError(
                f"execution provider {n!r} is not available in this onnxruntime build",
                f"available: {', '.join(available)}",
            )
        out.append(full)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


def make_session(path: Path, cfg: SessionConfig) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, cfg.intra_op_threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if cfg.optimization not in OPT_LEVELS:
        raise UsageError(f"unknown graph optimisation level {cfg.optimization!r}; use {', '.join(OPT_LEVELS)}")
    so.graph_optimization_level = OPT_LEVELS[cfg.optimization]
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.allow_spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if cfg.allow_spinning else "0")
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=resolve_providers(cfg.providers))
    except UsageError:
        raise
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise BundleError(
            f"{path}: onnxruntime cannot load this model: {str(e).splitlines()[0][:300]}",
            "the file is not a valid ONNX model for this onnxruntime; re-export the bundle",
        ) from e


def io_names(sess: ort.InferenceSession) -> tuple[dict[str, list], dict[str, list]]:
    """(inputs, outputs) as name -> shape (dynamic dims as strings/None)."""
    return ({i.name: list(i.shape) for i in sess.get_inputs()}, {o.name: list(o.shape) for o in sess.get_outputs()})


def shapes_compatible(a: list, b: list) -> bool:
    """Equal rank and every pair of fixed dimensions equal (symbolic/None dims match anything)."""
    if len(a) != len(b):
        return False
    return all(not (isinstance(x, int) and isinstance(y, int)) or x == y for x, y in zip(a, b))
