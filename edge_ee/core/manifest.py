"""Bundle manifest schema v2 (v1 still reads): the single source of truth for the bundle format.

The exporter (``edge_ee_export``) builds a :class:`Manifest` and writes it with
:func:`write_manifest`; the runtime reads it with :func:`parse_manifest`. Parsing is strict:
unknown schema versions, missing keys, wrong types and paths that leave the bundle directory are
rejected with a :class:`~edge_ee.errors.BundleError` that names the offending field.

Layout of ``manifest.json`` (v1)::

    {
      "schema_version": 1,
      "name": "fashion-mnist-resnet8-ee",
      "task": "image_classification" | "keyword_spotting",
      "description": "...",
      "labels": ["T-shirt/top", ...],
      "input": {"name": "input", "shape": [1, 1, 28, 28], "dtype": "float32", "layout": "NCHW",
                "preprocess": {...}},
      "stages": [
        {"segment": {"file": "segment0.onnx", "sha256": "...", "macs": 123,
                     "input": "input", "output": "feat0", "output_shape": [1, 16, 28, 28]},
         "head": {"file": "exit0.onnx", "sha256": "...", "macs": 45, "kind": "softmax",
                  "input": "feat0", "logits": "logits", "confidence": null,
                  "rule": "max_softmax", "threshold": 0.9, "temperature": 1.0,
                  "stats": {"accuracy": 0.81, "exit_fraction": 0.55}}},
        ...
        {"segment": {...}, "head": {... final classifier, "kind": "final" ...}}
      ],
      "full": {...optional (v2): the whole model as one graph, see below...},
      "calibration": {...optional, edge_ee.calibration.record: rule, temperatures, operating points,
                      the chosen point and its guarantee...},
      "producer": {"tool": "edge-ee-export 0.1.0", "torch": "2.13.0", "onnx_opset": 17, ...},
      "external_data": [{"file": "weights.bin", "sha256": "..."}]   (optional: ONNX external-data files)
    }

The last stage's head is the model's own classifier (``kind: "final"``): it always answers.
A final stage may also omit its head, in which case its segment outputs the logits.

Schema v2 adds optional merged graphs, written by ``python -m edge_ee_export.merge`` from the files above
(no retraining); a v1 bundle is a v2 bundle without them:

* ``stages[k].merged``: segment k and its head as one graph, ``{"file", "sha256", "input", "outputs":
  [segment output, head logits, (head confidence)], "sources": [sha256 of the segment, of the head]}``
  (the last stage: ``outputs`` is the final logits only);
* ``full``: every segment and the final head as one graph, ``{"file", "sha256", "input", "outputs":
  [final logits], "sources": [sha256 of every segment, then of the final head]}``.

``sources`` ties a merged graph to the files it was built from: a bundle whose segments changed after the
merge is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..calibration.record import Calibration
from ..errors import BundleError, UsageError
from .exit_rules import get_rule, rule_names

SCHEMA_VERSION = 2
SCHEMA_VERSIONS = (1, 2)  # versions this runtime reads
MANIFEST_NAME = "manifest.json"

TASKS = ("image_classification", "keyword_spotting")
HEAD_KINDS = ("softmax", "confidence", "final")
DTYPES = ("float32", "uint8", "int8", "float16")
LAYOUTS = ("NCHW", "NHWC", "NTF", "NCTF", "NF")
PREPROCESS_KINDS = ("image", "audio_mfcc", "none")

# Limits (README "Limits"): far above any real bundle, low enough that a hostile manifest cannot make
# the runtime read, allocate or open without bound before it fails.
MAX_MANIFEST_BYTES = 8 << 20  # manifest.json size
MAX_NESTING = 64  # JSON objects/arrays nested in the manifest
MAX_STAGES = 64  # stages (each opens up to three onnxruntime sessions: segment, head, merged graph)
MAX_MACS = (1 << 63) - 1  # per file: an int64
MAX_INPUT_VALUES = 1 << 24  # values in one input sample (64 MiB of float32)
MAX_IMAGE_SIDE = 8192  # preprocess.size [H, W]
IMAGE_COLORS = ("gray", "rgb", "bgr")
IMAGE_CROPS = ("center", "none")


# --------------------------------------------------------------------------- helpers


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _req(d: dict[str, Any], key: str, where: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict):
        raise BundleError(f"manifest: {where} must be an object, got {type(d).__name__}")
    if key not in d:
        raise BundleError(f"manifest: {where}.{key} is missing")
    v = d[key]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in _as_tuple(types)):
        raise BundleError(
            f"manifest: {where}.{key} has type {type(v).__name__}, expected "
            + " or ".join(t.__name__ for t in _as_tuple(types))
        )
    return v


def _opt(d: dict[str, Any], key: str, where: str, types: type | tuple[type, ...], default: Any) -> Any:
    if d.get(key) is None:
        return default
    return _req(d, key, where, types)


def _sha256(d: dict[str, Any], where: str) -> str:
    sha = _req(d, "sha256", where, str)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise BundleError(f"manifest: {where}.sha256 is not a lowercase hex sha256 digest")
    return sha


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _shape(v: Any, where: str) -> list[int | str]:
    if not isinstance(v, list) or not v:
        raise BundleError(f"manifest: {where} must be a non-empty list of dimensions")
    out: list[int | str] = []
    for d in v:
        if isinstance(d, bool) or not isinstance(d, (int, str)) or (isinstance(d, int) and d < 0):
            raise BundleError(f"manifest: {where} has an invalid dimension {d!r}")
        out.append(d)
    return out


def check_relative_path(rel: str, where: str) -> str:
    """A bundle file name must be a relative POSIX path that stays inside the bundle."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"manifest: {where} must be a non-empty file name")
    if any(ord(c) < 32 or c == "\x7f" for c in rel) or len(rel) > 1024:
        raise BundleError(f"manifest: {where} = {rel[:80]!r} contains control characters (NUL, newline...) "
                          "or is longer than 1024 characters", "re-export the bundle")
    p = PurePosixPath(rel)
    if p.is_absolute() or "\\" in rel or rel.startswith("~") or ".." in p.parts:
        raise BundleError(
            f"manifest: {where} = {rel!r} points outside the bundle directory",
            "bundle files must be relative paths inside the bundle (no '..', no absolute paths)",
        )
    return rel


# --------------------------------------------------------------------------- schema


@dataclass
class FileRef:
    """An ONNX file of the bundle with its checksum and cost."""

    file: str
    sha256: str
    macs: int
    input: str
    output: str
    output_shape: list[int | str] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> FileRef:
        sha = _sha256(d, where)
        macs = _req(d, "macs", where, int)
        if not 0 <= macs <= MAX_MACS:
            raise BundleError(f"manifest: {where}.macs must be >= 0 and <= 2**63-1")
        out_shape = d.get("output_shape")
        return cls(
            file=check_relative_path(_req(d, "file", where, str), f"{where}.file"),
            sha256=sha,
            macs=macs,
            input=_req(d, "input", where, str),
            output=_req(d, "output", where, str),
            output_shape=_shape(out_shape, f"{where}.output_shape") if out_shape is not None else None,
        )


@dataclass
class Head:
    """An exit head (or the final classifier) attached after a segment."""

    file: str
    sha256: str
    macs: int
    input: str
    logits: str
    kind: str = "softmax"
    confidence: str | None = None  # output name of the learned confidence (kind == "confidence")
    rule: str = "max_softmax"
    threshold: float = 1.0
    temperature: float = 1.0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.kind == "final"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Head:
        ref = FileRef.from_dict({**d, "output": d.get("logits")}, where) if "logits" in d else None
        if ref is None:
            raise BundleError(f"manifest: {where}.logits is missing (name of the logits output)")
        kind = _opt(d, "kind", where, str, "softmax")
        if kind not in HEAD_KINDS:
            raise BundleError(f"manifest: {where}.kind = {kind!r}; expected one of {', '.join(HEAD_KINDS)}")
        conf = _opt(d, "confidence", where, str, None)
        if kind == "confidence" and conf is None:
            raise BundleError(f"manifest: {where} has kind 'confidence' but no 'confidence' output name")
        rule = _opt(d, "rule", where, str, "confidence" if kind == "confidence" else "max_softmax")
        try:
            r = get_rule(rule)
        except UsageError:
            raise BundleError(f"manifest: {where}.rule = {rule!r}; expected one of {', '.join(rule_names())}") from None
        if r.needs_confidence and conf is None:
            raise BundleError(f"manifest: {where}.rule is {rule!r} but the head has no confidence output")
        thr = float(_opt(d, "threshold", where, (int, float), 1.0))
        temp = float(_opt(d, "temperature", where, (int, float), 1.0))
        why = r.check_threshold(thr) if kind != "final" else None
        if why is not None or not math.isfinite(thr):
            raise BundleError(f"manifest: {where}.threshold: {why or 'must be a finite number'}",
                              "re-calibrate the bundle (edge-ee profile) or fix the threshold")
        if not (temp > 0 and math.isfinite(temp)):
            raise BundleError(f"manifest: {where}.temperature must be a positive number")
        return cls(
            file=ref.file,
            sha256=ref.sha256,
            macs=ref.macs,
            input=ref.input,
            logits=ref.output,
            kind=kind,
            confidence=conf,
            rule=rule,
            threshold=thr,
            temperature=temp,
            stats=_opt(d, "stats", where, dict, {}),
        )


@dataclass
class GraphRef:
    """A merged graph (schema v2): an ONNX file built from other files of the bundle (``sources``: their sha256)."""

    file: str
    sha256: str
    input: str
    outputs: list[str]
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> GraphRef:
        sha = _sha256(d, where)
        outs = _req(d, "outputs", where, list)
        srcs = _req(d, "sources", where, list)
        if not outs or not all(isinstance(o, str) for o in outs):
            raise BundleError(f"manifest: {where}.outputs must be a non-empty list of output names")
        if not all(isinstance(o, str) for o in srcs):
            raise BundleError(f"manifest: {where}.sources must be a list of sha256 digests")
        return cls(file=check_relative_path(_req(d, "file", where, str), f"{where}.file"), sha256=sha,
                   input=_req(d, "input", where, str), outputs=list(outs), sources=list(srcs))

    def check(self, where: str, inp: str, outputs: list[str], sources: list[str]) -> None:
        """The merged graph must take ``inp``, give ``outputs`` and come from files with checksums ``sources``."""
        if self.input != inp or self.outputs != outputs:
            raise BundleError(f"manifest: {where} maps {self.input!r} -> {self.outputs}; its parts map "
                              f"{inp!r} -> {outputs}", "rebuild it: python -m edge_ee_export.merge BUNDLE")
        if self.sources != sources:
            raise BundleError(f"manifest: {where} ({self.file}) was built from other files than this bundle's "
                              "segments and heads (sources checksums differ)",
                              "rebuild it: python -m edge_ee_export.merge BUNDLE")


@dataclass
class Stage:
    segment: FileRef
    head: Head | None
    merged: GraphRef | None = None  # v2: segment + head as one graph

    def merged_io(self, last: bool) -> tuple[str, list[str], list[str]]:
        """(input, outputs, sources) that a merged graph of this stage must have."""
        assert self.head is not None
        outs = ([] if last else [self.segment.output]) + [self.head.logits] + (
            [self.head.confidence] if self.head.confidence and not last else [])
        return self.segment.input, outs, [self.segment.sha256, self.head.sha256]

    @property
    def macs(self) -> int:
        return self.segment.macs + (self.head.macs if self.head else 0)


@dataclass
class InputSpec:
    name: str
    shape: list[int | str]
    dtype: str = "float32"
    layout: str = "NCHW"
    preprocess: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample with the batch dimension forced to 1."""
        dims = [1 if not isinstance(d, int) or d == 0 else d for d in self.shape]
        dims[0] = 1
        return tuple(dims)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        w = "input"
        dtype = _opt(d, "dtype", w, str, "float32")
        if dtype not in DTYPES:
            raise BundleError(f"manifest: input.dtype = {dtype!r}; expected one of {', '.join(DTYPES)}")
        layout = _opt(d, "layout", w, str, "NCHW")
        if layout not in LAYOUTS:
            raise BundleError(f"manifest: input.layout = {layout!r}; expected one of {', '.join(LAYOUTS)}")
        pre = _opt(d, "preprocess", w, dict, {"kind": "none"})
        if pre.get("kind", "none") not in PREPROCESS_KINDS:
            raise BundleError(
                f"manifest: input.preprocess.kind = {pre.get('kind')!r}; "
                f"expected one of {', '.join(PREPROCESS_KINDS)}"
            )
        shape = _shape(_req(d, "shape", w, list), "input.shape")
        values = math.prod(x for x in shape[1:] if isinstance(x, int) and x > 0)
        if values > MAX_INPUT_VALUES:
            raise BundleError(f"manifest: input.shape {shape} has {values} values per sample; "
                              f"the limit is {MAX_INPUT_VALUES}")
        spec = cls(name=_req(d, "name", w, str), shape=shape, dtype=dtype, layout=layout, preprocess=pre)
        check_preprocess(spec)
        return spec


def _number(pre: dict[str, Any], key: str, default: Any, *, integer: bool = False, lo: float = 0.0,
            hi: float = math.inf, lo_open: bool = True) -> float:
    """preprocess[key] (or ``default``): a finite number (an integer if asked) in (lo, hi] ([lo, hi] when
    not ``lo_open``)."""
    v = pre.get(key, default)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and (v > lo if lo_open else v >= lo) and v <= hi and (not integer or isinstance(v, int))
    if not ok:
        kind = "an integer" if integer else "a finite number"
        rng = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi != math.inf else "")
        raise BundleError(f"manifest: input.preprocess.{key} = {v!r}; expected {kind} {rng}",
                          "fix the exporter's preprocessing spec and re-export the bundle")
    return v


def check_preprocess(spec: InputSpec) -> None:
    """Every value the preprocessors read: type and range, so a bundle that loads also runs (a zero std
    or a 100000x100000 resize is refused here, not found frame by frame)."""
    kind = spec.preprocess.get("kind", "none")
    if kind == "image":
        _check_image(spec)
    elif kind == "audio_mfcc":
        _check_audio_mfcc(spec.preprocess)


_PRE = "manifest: input.preprocess"


def _check_image(spec: InputSpec) -> None:
    pre, w = spec.preprocess, _PRE
    if pre.get("color", "rgb") not in IMAGE_COLORS:
        raise BundleError(f"{w}.color = {pre.get('color')!r}; expected one of {', '.join(IMAGE_COLORS)}")
    if pre.get("crop", "center") not in IMAGE_CROPS:
        raise BundleError(f"{w}.crop = {pre.get('crop')!r}; expected one of {', '.join(IMAGE_CROPS)}")
    if not isinstance(pre.get("invert", False), bool):
        raise BundleError(f"{w}.invert = {pre.get('invert')!r}; expected true or false")
    channels = 1 if pre.get("color", "rgb") == "gray" else 3
    _check_image_size(spec)
    _number(pre, "scale", 1 / 255.0, lo=-math.inf)
    if pre.get("scale", 1.0) == 0:
        raise BundleError(f"{w}.scale is 0: every input would be the same")
    for key, default in (("mean", [0.0]), ("std", [1.0])):
        v = pre.get(key, default)
        if not (isinstance(v, list) and len(v) in (1, channels) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)):
            raise BundleError(f"{w}.{key} = {v!r}; expected a list of 1 or {channels} finite numbers "
                              f"(one per channel)")
        if key == "std" and not all(x > 0 for x in v):
            raise BundleError(f"{w}.std = {v!r}; every value must be > 0 (a zero std divides by zero)")


def _check_image_size(spec: InputSpec) -> None:
    """``size`` [H, W] within limits, else an input shape that is an image ([N, C, H, W]) to take it from; an
    image always becomes a [C, H, W] tensor, so the input shape is an image shape either way."""
    pre, w = spec.preprocess, _PRE
    if "size" in pre:
        size = pre["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in size)):
            raise BundleError(f"{w}.size = {size!r}; expected [H, W], integers 1..{MAX_IMAGE_SIDE}")
        if len(spec.sample_shape) != 4:
            raise BundleError(f"{w} is an image but input.shape {spec.shape} is not an image shape [N, C, H, W]")
        return
    dims = spec.sample_shape
    if len(dims) != 4 or not all(1 <= v <= MAX_IMAGE_SIDE for v in dims[1:]):
        raise BundleError(f"{w} has no size and input.shape {spec.shape} is not a 4-d image shape "
                          f"with sides 1..{MAX_IMAGE_SIDE}")


def _check_audio_mfcc(pre: dict[str, Any]) -> None:
    from ..pipeline.features import DEFAULT_SPEC

    w = _PRE
    full = {**DEFAULT_SPEC, **pre}
    sr = _number(full, "sample_rate", None, integer=True, lo=1000, lo_open=False, hi=384000)
    clip = _number(full, "clip_samples", None, integer=True, hi=60 * sr)
    win_ms = _number(full, "window_ms", None, hi=10_000)
    hop_ms = _number(full, "stride_ms", None, hi=10_000)
    n_fft = _number(full, "n_fft", None, integer=True, hi=1 << 16)
    n_mels = _number(full, "n_mels", None, integer=True, hi=1024)
    fmin = _number(full, "fmin", None, lo=0, lo_open=False)
    _number(full, "fmax", None, lo=fmin, hi=sr / 2)
    _number(full, "n_mfcc", None, integer=True, hi=n_mels)
    _number(full, "log_offset", None)
    if not isinstance(full.get("peak_normalize", False), bool):
        raise BundleError(f"{w}.peak_normalize = {pre.get('peak_normalize')!r}; expected true or false")
    win, hop = round(sr * win_ms / 1000), round(sr * hop_ms / 1000)
    if not 1 <= win <= min(n_fft, clip) or hop < 1:
        raise BundleError(f"{w}: window of {win} samples and hop of {hop} must be >= 1 and the window "
                          f"no longer than n_fft ({n_fft}) or the clip ({clip})")


@dataclass
class Manifest:
    name: str
    task: str
    labels: list[str]
    input: InputSpec
    stages: list[Stage]
    description: str = ""
    calibration: Calibration = field(default_factory=Calibration)
    producer: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1  # written as the lowest version that expresses the manifest (to_dict)
    full: GraphRef | None = None  # v2: the whole model as one graph
    #: ONNX external-data files (tensor weights kept beside a model): {"file", "sha256"} each, checked
    #: like the models; a model that refers to a file not listed here is refused
    external_data: list[dict[str, str]] = field(default_factory=list)

    # ---- derived views
    @property
    def exits(self) -> list[Head]:
        """Heads in order; the last one is the final classifier when present."""
        return [s.head for s in self.stages if s.head is not None]

    @property
    def num_exits(self) -> int:
        """Number of places the model can answer (early exits + final)."""
        return len(self.stages)

    def cumulative_macs(self) -> list[int]:
        """MACs spent when answering at exit k (segments 0..k plus heads 0..k, adaptive mode)."""
        out, total = [], 0
        for s in self.stages:
            total += s.macs
            out.append(total)
        return out

    def full_model_macs(self) -> int:
        """MACs of the plain model: all segments plus the final classifier, no early heads."""
        last = self.stages[-1]
        return sum(s.segment.macs for s in self.stages) + (last.head.macs if last.head else 0)

    def files(self) -> list[tuple[str, str]]:
        """(relative path, sha256) of every file the manifest names."""
        out = []
        for s in self.stages:
            out.append((s.segment.file, s.segment.sha256))
            if s.head is not None:
                out.append((s.head.file, s.head.sha256))
            if s.merged is not None:
                out.append((s.merged.file, s.merged.sha256))
        if self.full is not None:
            out.append((self.full.file, self.full.sha256))
        out += [(e["file"], e["sha256"]) for e in self.external_data]
        return out

    def full_io(self) -> tuple[str, list[str], list[str]]:
        """(input, outputs, sources) that the one-graph full model must have."""
        last = self.stages[-1]
        out = last.head.logits if last.head is not None else last.segment.output
        srcs = [s.segment.sha256 for s in self.stages] + ([last.head.sha256] if last.head is not None else [])
        return self.input.name, [out], srcs

    def check_merged(self) -> None:
        """Every merged graph must have the I/O and sources of the files it replaces."""
        for k, s in enumerate(self.stages):
            if s.merged is not None:
                if s.head is None:
                    raise BundleError(f"manifest: stages[{k}].merged needs a head to merge with")
                s.merged.check(f"stages[{k}].merged", *s.merged_io(k == len(self.stages) - 1))
        if self.full is not None:
            self.full.check("full", *self.full_io())

    def default_thresholds(self) -> list[float]:
        return [s.head.threshold if s.head is not None else 0.0 for s in self.stages[:-1]]

    def to_dict(self) -> dict[str, Any]:
        # the lowest version that expresses the manifest: a bundle without merged graphs stays readable by v1 runtimes
        v2 = self.full is not None or any(s.merged is not None for s in self.stages)
        d = {
            "schema_version": 2 if v2 else 1,
            "name": self.name,
            "task": self.task,
            "description": self.description,
            "labels": list(self.labels),
            "input": asdict(self.input),
            "stages": [
                {"segment": asdict(s.segment), "head": asdict(s.head) if s.head is not None else None,
                 **({"merged": asdict(s.merged)} if s.merged is not None else {})}
                for s in self.stages
            ],
            **({"full": asdict(self.full)} if self.full is not None else {}),
            "calibration": self.calibration.to_dict(),
            "producer": self.producer,
        }
        if self.external_data:
            d["external_data"] = [dict(e) for e in self.external_data]
        return d


def _parse_stages(raw_stages: list[Any], version: int) -> list[Stage]:
    if not raw_stages:
        raise BundleError("manifest: stages is empty; a bundle needs at least one stage")
    if len(raw_stages) > MAX_STAGES:
        raise BundleError(f"manifest: {len(raw_stages)} stages; the limit is {MAX_STAGES}")
    stages: list[Stage] = []
    for i, rs in enumerate(raw_stages):
        stages.append(_parse_stage(rs, i, i == len(raw_stages) - 1, stages[-1] if stages else None, version))
    return stages


def _parse_stage(rs: Any, i: int, last: bool, before: Stage | None, version: int) -> Stage:
    """Stage ``i``: its segment chains to the one ``before``; only the last stage may lack an exit head, and its
    head (if any) is the final classifier."""
    where = f"stages[{i}]"
    if not isinstance(rs, dict):
        raise BundleError(f"manifest: {where} must be an object")
    seg = FileRef.from_dict(_req(rs, "segment", where, dict), f"{where}.segment")
    raw_head = _opt(rs, "head", where, dict, None)
    head = Head.from_dict(raw_head, f"{where}.head") if raw_head is not None else None
    if not last and head is None:
        raise BundleError(f"manifest: {where} has no exit head; only the last stage may omit it")
    if head is not None and head.is_final != last:
        raise BundleError(f"manifest: {where}.head has kind 'final' but is not the last stage" if not last else
                          f"manifest: {where}.head is the model's last classifier and must have kind 'final'")
    if head is not None and head.input != seg.output:
        raise BundleError(
            f"manifest: {where}.head.input = {head.input!r} does not match the segment output {seg.output!r}"
        )
    if before is not None and seg.input != before.segment.output:
        raise BundleError(
            f"manifest: {where}.segment.input = {seg.input!r} does not chain to "
            f"stages[{i - 1}].segment.output = {before.segment.output!r}"
        )
    merged = None
    if rs.get("merged") is not None:
        if version < 2:
            raise BundleError(f"manifest: {where}.merged needs schema_version 2")
        merged = GraphRef.from_dict(rs["merged"], f"{where}.merged")
    return Stage(seg, head, merged)


def parse_manifest(data: Any) -> Manifest:
    """Validate a decoded ``manifest.json`` and build a :class:`Manifest` (no file access)."""
    if not isinstance(data, dict):
        raise BundleError("manifest: top level must be a JSON object")
    version = data.get("schema_version")
    if version not in SCHEMA_VERSIONS or isinstance(version, bool):
        raise BundleError(
            f"manifest: unsupported schema_version {version!r} (this edge-ee reads versions "
            f"{', '.join(map(str, SCHEMA_VERSIONS))})",
            "re-export the bundle with a matching edge-ee-export, or upgrade edge-ee",
        )
    task = _req(data, "task", "manifest", str)
    if task not in TASKS:
        raise BundleError(f"manifest: task = {task!r}; expected one of {', '.join(TASKS)}")
    labels = _req(data, "labels", "manifest", list)
    if not labels or not all(isinstance(x, str) for x in labels):
        raise BundleError("manifest: labels must be a non-empty list of strings")
    stages = _parse_stages(_req(data, "stages", "manifest", list), version)
    full = None
    if data.get("full") is not None:
        if version < 2:
            raise BundleError("manifest: full needs schema_version 2")
        full = GraphRef.from_dict(data["full"], "full")
    inp = InputSpec.from_dict(_req(data, "input", "manifest", dict))
    if stages[0].segment.input != inp.name:
        raise BundleError(
            f"manifest: stages[0].segment.input = {stages[0].segment.input!r} is not the bundle input {inp.name!r}"
        )
    external = _external_data(_opt(data, "external_data", "manifest", list, []))
    probe = Manifest("", task, labels, inp, stages, full=full, external_data=external)
    names = [f for f, _ in probe.files()]
    if len(set(names)) != len(names):
        raise BundleError("manifest: the same file is named twice")
    probe.check_merged()
    return Manifest(
        name=_req(data, "name", "manifest", str),
        task=task,
        labels=list(labels),
        input=inp,
        stages=stages,
        description=_opt(data, "description", "manifest", str, ""),
        calibration=Calibration.from_dict(data.get("calibration")),
        producer=_opt(data, "producer", "manifest", dict, {}),
        schema_version=version,
        full=full,
        external_data=external,
    )


def _external_data(raw: list[Any]) -> list[dict[str, str]]:
    out = []
    for i, e in enumerate(raw):
        where = f"external_data[{i}]"
        sha = _req(e, "sha256", where, str)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BundleError(f"manifest: {where}.sha256 is not a lowercase hex sha256 digest")
        out.append({"file": check_relative_path(_req(e, "file", where, str), f"{where}.file"), "sha256": sha})
    return out


def _depth(data: Any) -> int:
    """Nesting depth of decoded JSON, without recursion."""
    best, todo = 0, [(data, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, (dict, list)):
            best = max(best, d)
            if best > MAX_NESTING:
                return best
            todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return best


def read_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not Path(bundle_dir).is_dir():
        raise BundleError(f"bundle {bundle_dir} is not a directory", "pass the directory that holds manifest.json"
                          + ("; make one from an ONNX model with `edge-ee-export onnx MODEL.onnx --data DIR ...`"
                             if str(bundle_dir).endswith(".onnx") else ""))
    if not path.is_file():
        raise BundleError(f"bundle {bundle_dir} has no {MANIFEST_NAME}", "is this an edge-ee bundle directory?")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB, the limit for a manifest",
                              "is this an edge-ee bundle? re-export it")
        text = raw.decode("utf-8")
        data = json.loads(text)
        if _depth(data) > MAX_NESTING:
            raise RecursionError
    except RecursionError:
        raise BundleError(f"{path}: JSON nested deeper than {MAX_NESTING} levels",
                          "the manifest was damaged or is not an edge-ee manifest; re-export the bundle") from None
    except UnicodeDecodeError as e:
        raise BundleError(f"{path}: not UTF-8 text ({e})", "re-export or re-copy the bundle") from e
    except json.JSONDecodeError as e:
        raise BundleError(
            f"{path}: corrupt JSON at line {e.lineno} column {e.colno}: {e.msg}",
            "the manifest was damaged; re-copy the bundle or re-export it",
        ) from e
    except OSError as e:
        raise BundleError(f"{path}: cannot read ({e.strerror})") from e
    return parse_manifest(data)


def write_manifest(manifest: Manifest, bundle_dir: str | os.PathLike[str], fill_checksums: bool = True) -> Path:
    """Write ``manifest.json`` into ``bundle_dir``; with ``fill_checksums`` compute every sha256.

    The exporter calls this after writing the ONNX files. The result is re-parsed so a
    manifest that the runtime would refuse is never written.
    """
    bundle_dir = Path(bundle_dir)
    if fill_checksums:
        for s in manifest.stages:
            for ref in (s.segment, s.head):
                if ref is None:
                    continue
                check_relative_path(ref.file, "file")
                ref.sha256 = sha256_file(bundle_dir / ref.file)
        for e in manifest.external_data:
            e["sha256"] = sha256_file(bundle_dir / check_relative_path(e["file"], "external_data.file"))
        # merged graphs last: their sources are the checksums just filled in
        last = len(manifest.stages) - 1
        for k, s in enumerate(manifest.stages):
            if s.merged is not None:
                s.merged.sources = s.merged_io(k == last)[2]
        for g in [s.merged for s in manifest.stages] + [manifest.full]:
            if g is not None:
                check_relative_path(g.file, "file")
                g.sha256 = sha256_file(bundle_dir / g.file)
        if manifest.full is not None:
            manifest.full.sources = manifest.full_io()[2]
    data = manifest.to_dict()
    parse_manifest(json.loads(json.dumps(data)))
    path = bundle_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
