"""The early-exit engine: one onnxruntime session per segment and per head, run stage by stage.

``Engine.infer`` runs segment k, then its exit head, applies the exit rule, and stops at the first
exit that fires. Modes:

* ``adaptive`` (default): early exits with the thresholds in force;
* ``full``: never exit early, skip every intermediate head (the plain model's cost);
* ``exit_at``: run up to stage k and answer from head k (for measurement).

With ``deadline_s`` the deadline guard stops before a stage that is predicted not to finish in
time and answers from the deepest exit evaluated so far.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .bundle import Bundle, load_bundle
from .deadline import LatencyModel
from .errors import BundleError, InferenceError, UsageError
from .exit_rules import ExitRule, get_rule, softmax
from .manifest import Head
from .sessions import SessionConfig, io_names, make_session, shapes_compatible

Mode = Literal["adaptive", "full", "exit_at"]
_now = time.perf_counter


@dataclass
class Result:
    label: str
    label_index: int
    exit_index: int  # stage whose head answered (num_stages - 1 = final)
    confidence: float  # max softmax probability at that exit
    score: float  # value compared with the threshold (NaN when the rule was not applied)
    probs: np.ndarray
    segment_ms: list[float]  # per executed segment
    head_ms: list[float | None]  # per executed stage: head time or None when the head was skipped
    total_ms: float
    macs: int
    deadline_stop: bool = False  # the guard stopped early to meet the deadline
    thresholds: list[float] = field(default_factory=list)
    t_start: float = 0.0  # perf_counter() when infer() began (stage k spans the cumulative segment/head times)

    @property
    def stages_run(self) -> int:
        return len(self.segment_ms)


class Engine:
    """Runs a bundle adaptively. Not thread-safe: one engine per inference thread."""

    def __init__(self, bundle: Bundle | str | None = None, session: SessionConfig | None = None,
                 thresholds: list[float] | None = None, rule: str | None = None, warmup: int = 3) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.manifest = m = self.bundle.manifest
        self.session_config = session or SessionConfig()
        self._seg = [make_session(self.bundle.file(s.segment.file), self.session_config) for s in m.stages]
        self._head = [
            make_session(self.bundle.file(s.head.file), self.session_config) if s.head else None
            for s in m.stages
        ]
        self._check_io()
        self.heads: list[Head | None] = [s.head for s in m.stages]
        self.num_stages = len(m.stages)
        self.rules = [h.rule if h else "max_softmax" for h in self.heads]
        if rule is not None:
            self.set_rule(rule)
        self.thresholds = list(thresholds) if thresholds is not None else m.default_thresholds()
        self.set_thresholds(self.thresholds)
        self.latency = LatencyModel(self.num_stages)
        self._seg_io = [(s.segment.input, [s.segment.output]) for s in m.stages]
        self._head_out = [
            ([h.logits] + ([h.confidence] if h.confidence else []), h.input) if h else None for h in self.heads
        ]
        self._segment_macs_cum = list(itertools.accumulate(s.segment.macs for s in m.stages))
        self.input_shape = m.input.sample_shape
        self.input_dtype = np.dtype(m.input.dtype)
        if warmup > 0:
            self.warm_up(warmup)

    # ------------------------------------------------------------------ setup
    def _check_io(self) -> None:
        m = self.manifest
        prev_out_shape: list | None = None
        for k, s in enumerate(m.stages):
            ins, outs = io_names(self._seg[k])
            where = f"stages[{k}].segment ({s.segment.file})"
            if s.segment.input not in ins or len(ins) != 1:
                raise BundleError(f"{where}: ONNX inputs {list(ins)} do not match manifest input {s.segment.input!r}")
            if s.segment.output not in outs:
                raise BundleError(f"{where}: ONNX outputs {list(outs)} lack manifest output {s.segment.output!r}")
            in_shape = ins[s.segment.input]
            if k == 0 and not shapes_compatible(in_shape, list(m.input.shape)):
                raise BundleError(f"{where}: input shape {in_shape} does not match the bundle input {m.input.shape}")
            if prev_out_shape is not None and not shapes_compatible(in_shape, prev_out_shape):
                raise BundleError(
                    f"{where}: input shape {in_shape} does not chain to the previous segment's output "
                    f"shape {prev_out_shape}"
                )
            out_shape = outs[s.segment.output]
            if s.segment.output_shape and not shapes_compatible(out_shape, s.segment.output_shape):
                raise BundleError(
                    f"{where}: output shape {out_shape} differs from the manifest {s.segment.output_shape}")
            prev_out_shape = out_shape
            if s.head is not None:
                hin, hout = io_names(self._head[k])  # type: ignore[arg-type]
                hw = f"stages[{k}].head ({s.head.file})"
                if s.head.input not in hin:
                    raise BundleError(f"{hw}: ONNX inputs {list(hin)} lack manifest input {s.head.input!r}")
                if not shapes_compatible(hin[s.head.input], out_shape):
                    raise BundleError(
                        f"{hw}: input shape {hin[s.head.input]} does not match segment output {out_shape}")
                for name in (s.head.logits, s.head.confidence):
                    if name is not None and name not in hout:
                        raise BundleError(f"{hw}: ONNX outputs {list(hout)} lack manifest output {name!r}")
                logits_shape = hout[s.head.logits]
                if isinstance(logits_shape[-1], int) and logits_shape[-1] != len(m.labels):
                    raise BundleError(f"{hw}: {logits_shape[-1]} logits for {len(m.labels)} labels")
        last = m.stages[-1]
        if last.head is None and isinstance(prev_out_shape[-1], int) and prev_out_shape[-1] != len(m.labels):  # type: ignore[index]
            raise BundleError(f"final segment outputs {prev_out_shape[-1]} values for {len(m.labels)} labels")  # type: ignore[index]

    @property
    def providers(self) -> list[str]:
        """onnxruntime execution providers actually used by the sessions, in order of first use."""
        used: list[str] = []
        for sess in [*self._seg, *self._head]:
            for p in sess.get_providers() if sess is not None else []:
                if p not in used:
                    used.append(p)
        return used

    @property
    def intra_op_threads(self) -> int:
        return int(self.session_config.intra_op_threads or 1)

    def warm_up(self, runs: int = 3) -> None:
        """Run every segment and head on zeros: the first runs of a session are slow (allocation,
        kernel selection) and are discarded; the next ``4 * runs + 3`` seed the deadline guard's
        latency model for every stage, so it starts from warm measurements."""
        x = np.zeros(self.input_shape, self.input_dtype)
        for _ in range(runs):
            self.infer_all_exits(x)
        seeds = [self.infer_all_exits(x) for _ in range(4 * runs + 3)]
        self.latency = LatencyModel(self.num_stages, self.latency.margin_s, self.latency.margin_frac)
        self.latency.seed([[a.segment_s[k] for a in seeds] for k in range(self.num_stages)],
                          [[a.head_s[k] for a in seeds] for k in range(self.num_stages)])

    # ------------------------------------------------------------------ control
    def set_thresholds(self, thresholds: list[float]) -> None:
        n = self.num_stages - 1
        if len(thresholds) != n:
            raise UsageError(f"this bundle has {n} early exits; got {len(thresholds)} thresholds")
        self.thresholds = [float(t) for t in thresholds]

    @property
    def rules(self) -> list[str]:
        """The exit rule in force per stage, by name (the last stage's final classifier always answers)."""
        return [r.name for r in self._rules]

    @rules.setter
    def rules(self, names: list[str]) -> None:
        self._rules: list[ExitRule] = [get_rule(n) for n in names]

    def set_rule(self, rule: str) -> None:
        """Use ``rule`` at every early exit; its thresholds must be set to match (``set_thresholds``)."""
        r = get_rule(rule)
        for k, h in enumerate(self.heads[:-1]):
            if h is not None and r.needs_confidence and h.confidence is None:
                raise UsageError(f"exit {k} has no learned confidence output; rule {rule!r} is not possible")
        self._rules = [r if h is not None and k < self.num_stages - 1 else self._rules[k]
                       for k, h in enumerate(self.heads)]

    # ------------------------------------------------------------------ inference
    def check_input(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self.input_shape:
            raise InferenceError(
                f"input has shape {tuple(x.shape)}, the bundle expects {self.input_shape}",
                "check the source's preprocessing against the bundle's input spec (edge-ee info)",
            )
        if x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        return x

    def infer(self, x: np.ndarray, mode: Mode = "adaptive", exit_at: int | None = None,
              deadline_s: float | None = None) -> Result:
        """Classify one input of shape ``input_shape``. ``deadline_s`` is relative to the call."""
        t0 = _now()
        x = self.check_input(x)
        last = self.num_stages - 1
        if mode == "exit_at":
            if exit_at is None or not 0 <= exit_at <= last:
                raise UsageError(f"exit_at must be between 0 and {last}")
            stop_at = exit_at
        else:
            stop_at = last
        seg_ms: list[float] = []
        head_ms: list[float | None] = []
        best: tuple | None = None  # (exit index, logits, rule score)
        cur = x
        deadline_stop = False
        lat = self.latency
        try:
            for k in range(stop_at + 1):
                if deadline_s is not None and best is not None and not lat.fits(
                        k, _now() - t0, deadline_s, lambda b=best: self._wrong_prob(b)):
                    deadline_stop = True
                    break
                inp, outs = self._seg_io[k]
                ts = _now()
                cur = self._seg[k].run(outs, {inp: cur})[0]
                te = _now()
                seg_ms.append((te - ts) * 1e3)
                lat.update_segment(k, te - ts)
                head = self.heads[k]
                run_head = k == stop_at or mode == "adaptive"
                if head is None:  # final segment outputs logits directly
                    lat.update_stage(k, te - ts)
                    best = (k, cur, math.nan)
                    head_ms.append(None)
                    break
                if not run_head:
                    head_ms.append(None)
                    continue
                names, hin = self._head_out[k]  # type: ignore[misc]
                ts = _now()
                hout = self._head[k].run(names, {hin: cur})  # type: ignore[union-attr]
                te = _now()
                head_ms.append((te - ts) * 1e3)
                lat.update_head(k, te - ts)
                conf_out = float(np.asarray(hout[1]).reshape(-1)[0]) if len(hout) > 1 else None
                if k < last:
                    rule = self._rules[k]
                    score = rule.score(hout[0], head.temperature, conf_out)
                    best = (k, hout[0], score)
                    if k == stop_at or rule.fires(score, self.thresholds[k]):
                        break
                else:
                    best = (k, hout[0], math.nan)
        except Exception as e:
            if isinstance(e, (UsageError, InferenceError)):
                raise
            raise InferenceError(f"inference failed in stage {len(seg_ms)}: {str(e).splitlines()[0][:300]}") from e
        assert best is not None
        k, logits, score = best  # score is NaN for the final classifier, which always answers
        head = self.heads[k]
        probs = softmax(logits, head.temperature if head else 1.0)
        idx = int(probs.argmax())
        total_ms = (_now() - t0) * 1e3
        # MACs actually spent, in every mode: the segments run plus the heads run
        macs = self._segment_macs_cum[len(seg_ms) - 1] + sum(
            h.macs for h, t in zip(self.heads, head_ms) if h is not None and t is not None)
        return Result(
            label=self.manifest.labels[idx],
            label_index=idx,
            exit_index=k,
            confidence=float(probs[idx]),
            score=score,
            probs=probs,
            segment_ms=seg_ms,
            head_ms=head_ms,
            total_ms=total_ms,
            macs=macs,
            deadline_stop=deadline_stop,
            thresholds=self.thresholds,
            t_start=t0,
        )

    def _wrong_prob(self, best: tuple) -> float:
        """1 - top softmax probability of the answer so far (the deadline guard's risk weight)."""
        head = self.heads[best[0]]
        return 1.0 - float(softmax(best[1], head.temperature if head else 1.0).max())

    def infer_all_exits(self, x: np.ndarray) -> AllExits:
        """Run every segment and every head once (for profiling and calibration): each exit's logits,
        learned confidence (or None) and the per-segment/per-head times in seconds."""
        x = self.check_input(x)
        logits: list[np.ndarray] = []
        conf: list[float | None] = []
        seg_s: list[float] = []
        head_s: list[float] = []
        cur = x
        t_start = _now()
        try:
            for k in range(self.num_stages):
                inp, outs = self._seg_io[k]
                ts = _now()
                cur = self._seg[k].run(outs, {inp: cur})[0]
                seg_s.append(_now() - ts)
                if self.heads[k] is None:
                    logits.append(np.asarray(cur).reshape(-1))
                    conf.append(None)
                    head_s.append(0.0)
                    continue
                names, hin = self._head_out[k]  # type: ignore[misc]
                ts = _now()
                hout = self._head[k].run(names, {hin: cur})  # type: ignore[union-attr]
                head_s.append(_now() - ts)
                logits.append(np.asarray(hout[0]).reshape(-1))
                conf.append(float(np.asarray(hout[1]).reshape(-1)[0]) if len(hout) > 1 else None)
        except Exception as e:
            if isinstance(e, (UsageError, InferenceError)):
                raise
            raise InferenceError(f"inference failed in stage {len(seg_s)}: {str(e).splitlines()[0][:300]}") from e
        return AllExits(logits, conf, seg_s, head_s, t_start)


@dataclass
class AllExits:
    """Every exit's output for one input (``Engine.infer_all_exits``). Times in seconds."""

    logits: list[np.ndarray]
    confidence: list[float | None]
    segment_s: list[float]
    head_s: list[float]  # 0.0 where a stage has no head (the final segment outputs logits)
    t_start: float
