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
      "producer": {"tool": "edge-ee-export 0.1.0", "torch": "2.13.0", "onnx_opset": 17, ...}
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

from .calibration.record import Calibration
from .errors import BundleError, UsageError
from .exit_rules import get_rule, rule_names

SCHEMA_VERSION = 2
SCHEMA_VERSIONS = (1, 2)  # versions this runtime reads
MANIFEST_NAME = "manifest.json"
PROFILE_NAME = "profile.json"

TASKS = ("image_classification", "keyword_spotting")
HEAD_KINDS = ("softmax", "confidence", "final")
DTYPES = ("float32", "uint8", "int8", "float16")
LAYOUTS = ("NCHW", "NHWC", "NTF", "NCTF", "NF")
PREPROCESS_KINDS = ("image", "audio_mfcc", "none")


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
        sha = _req(d, "sha256", where, str)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BundleError(f"manifest: {where}.sha256 is not a lowercase hex sha256 digest")
        macs = _req(d, "macs", where, int)
        if macs < 0:
            raise BundleError(f"manifest: {where}.macs must be >= 0")
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
        sha = _req(d, "sha256", where, str)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BundleError(f"manifest: {where}.sha256 is not a lowercase hex sha256 digest")
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
        return cls(
            name=_req(d, "name", w, str),
            shape=_shape(_req(d, "shape", w, list), "input.shape"),
            dtype=dtype,
            layout=layout,
            preprocess=pre,
        )


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
        return d


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
    raw_stages = _req(data, "stages", "manifest", list)
    if not raw_stages:
        raise BundleError("manifest: stages is empty; a bundle needs at least one stage")
    stages: list[Stage] = []
    for i, rs in enumerate(raw_stages):
        where = f"stages[{i}]"
        if not isinstance(rs, dict):
            raise BundleError(f"manifest: {where} must be an object")
        seg = FileRef.from_dict(_req(rs, "segment", where, dict), f"{where}.segment")
        head = Head.from_dict(rs["head"], f"{where}.head") if rs.get("head") is not None else None
        last = i == len(raw_stages) - 1
        if not last and head is None:
            raise BundleError(f"manifest: {where} has no exit head; only the last stage may omit it")
        if not last and head is not None and head.is_final:
            raise BundleError(f"manifest: {where}.head has kind 'final' but is not the last stage")
        if last and head is not None and not head.is_final:
            raise BundleError(f"manifest: {where}.head is the model's last classifier and must have kind 'final'")
        if head is not None and head.input != seg.output:
            raise BundleError(
                f"manifest: {where}.head.input = {head.input!r} does not match the segment output {seg.output!r}"
            )
        if i > 0 and seg.input != stages[-1].segment.output:
            raise BundleError(
                f"manifest: {where}.segment.input = {seg.input!r} does not chain to "
                f"stages[{i - 1}].segment.output = {stages[-1].segment.output!r}"
            )
        merged = None
        if rs.get("merged") is not None:
            if version < 2:
                raise BundleError(f"manifest: {where}.merged needs schema_version 2")
            merged = GraphRef.from_dict(rs["merged"], f"{where}.merged")
        stages.append(Stage(seg, head, merged))
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
    probe = Manifest("", task, labels, inp, stages, full=full)
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
    )


def read_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not Path(bundle_dir).is_dir():
        raise BundleError(f"bundle {bundle_dir} is not a directory", "pass the directory that holds manifest.json"
                          + ("; make one from an ONNX model with `edge-ee-export onnx MODEL.onnx --data DIR ...`"
                             if str(bundle_dir).endswith(".onnx") else ""))
    if not path.is_file():
        raise BundleError(f"bundle {bundle_dir} has no {MANIFEST_NAME}", "is this an edge-ee bundle directory?")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
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
