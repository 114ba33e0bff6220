"""The early-exit engine: onnxruntime sessions for the segments and heads, run stage by stage.

``Engine.infer`` runs segment k, then its exit head, applies the exit rule, and stops at the first
exit that fires. Modes:

* ``adaptive`` (default): early exits with the thresholds in force;
* ``full``: never exit early, skip every intermediate head (the plain model's cost);
* ``exit_at``: run up to stage k and answer from head k (for measurement).

With ``deadline_s`` the deadline guard stops before a stage that is predicted not to finish in
time and answers from the deepest exit evaluated so far.

How a stage runs (the fastest path the bundle allows; ``benchmarks/engine_overhead.py`` measures each):

* one sample: every session runs through an IO binding whose inputs and outputs are fixed numpy
  buffers, bound once at load (a segment's output buffer *is* the next segment's and its head's input),
  so a stage is one onnxruntime call with no copy, allocation or name lookup in Python;
* a schema-v2 bundle's merged stage graph (segment + head, ``stages[k].merged``) replaces the two calls
  of a stage whose head runs: ``segment_ms[k]`` is then the whole stage and ``head_ms[k]`` is 0.0;
* a schema-v2 bundle's one-graph full model (``full``) answers ``mode="full"`` in one call: the total
  time is apportioned to ``segment_ms``/``head_ms`` by MACs and ``Result.one_graph`` is set;
* a batch (``infer_batch``): plain ``session.run`` on the samples still running; a sample whose exit
  fires leaves the batch.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from ..errors import BundleError, EdgeEEError, InferenceError, UsageError
from .bundle import Bundle, load_bundle
from .deadline import DeadlineGuard, LatencyModel, StrictGuard
from .exit_rules import DEFAULT_RULE, ExitRule, get_rule, softmax_terms
from .manifest import GraphRef, Head
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
    segment_ms: list[float]  # per executed segment
    head_ms: list[float | None]  # per executed stage: head time or None when the head was skipped
    total_ms: float
    macs: int
    deadline_stop: bool = False  # the guard stopped early to meet the deadline
    thresholds: list[float] = field(default_factory=list)
    t_start: float = 0.0  # perf_counter() when infer() began (stage k spans the cumulative segment/head times)
    one_graph: bool = False  # answered by the bundle's one-graph full model (stage times apportioned by MACs)
    terms: list[float] | np.ndarray = field(default_factory=list, repr=False)  # softmax numerators ...
    terms_sum: float = 1.0  # ... and their sum (exit_rules.softmax_terms)

    @property
    def probs(self) -> np.ndarray:
        """Softmax probabilities at the answering exit (float64), computed on access: most runs need only the
        label and the confidence."""
        return np.asarray(self.terms, np.float64) / self.terms_sum

    @property
    def stages_run(self) -> int:
        return len(self.segment_ms)


class Graph:
    """One onnxruntime session with its I/O names, runnable two ways: ``bound()`` through an IO binding
    on fixed buffers (one sample; set up by ``bind``) and ``run(feeds)`` with numpy arrays (any batch)."""

    __slots__ = ("sess", "input", "outputs", "_binding", "_keep", "_run_bound", "file")

    def __init__(self, sess: ort.InferenceSession, inp: str, outputs: list[str], file: str) -> None:
        self.sess = sess
        self.input = inp
        self.outputs = outputs
        self.file = file
        self._binding: Any = None
        self._keep: list[Any] = []

    def bind(self, inp: np.ndarray, outs: list[np.ndarray]) -> None:
        """Bind ``inp`` and ``outs`` (C-contiguous numpy buffers, shared, never copied) for ``bound()``."""
        b = self.sess.io_binding()
        vals = [ort.OrtValue.ortvalue_from_numpy(inp)]
        b.bind_ortvalue_input(self.input, vals[0])
        for name, arr in zip(self.outputs, outs):
            v = ort.OrtValue.ortvalue_from_numpy(arr)
            b.bind_ortvalue_output(name, v)
            vals.append(v)
        self._keep = [vals, inp, outs]  # the buffers must outlive the binding
        self._binding = b
        self._run_bound = self.sess.run_with_iobinding

    def bound(self) -> None:
        self._run_bound(self._binding)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.sess.run(self.outputs, {self.input: x})


@dataclass(frozen=True)
class GraphSet:
    """The graphs an engine runs (for inspection and benchmarks): per stage the segment, the head (None: the
    final segment outputs the logits), the merged stage graph (None: not in the bundle or ``merged=False``);
    the one-graph full model; and per stage the calls ``infer`` makes to run it with its head."""

    segments: list[Graph]
    heads: list[Graph | None]
    merged: list[Graph | None]
    full: Graph | None
    stage_calls: list[list[Graph]]


class Engine:
    """Runs a bundle adaptively. Not thread-safe: one engine per inference thread."""

    def __init__(self, bundle: Bundle | str | None = None, session: SessionConfig | None = None,
                 thresholds: list[float] | None = None, rule: str | None = None, warmup: int = 3,
                 merged: bool = True) -> None:
        """``merged=False`` ignores a schema-v2 bundle's merged stage graphs and one-graph full model
        (two calls per stage, full mode chained: the v1 path, for measurement)."""
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.manifest = m = self.bundle.manifest
        self.session_config = session or SessionConfig()
        self._segs, self._heads = self._load_stage_graphs()
        self._check_io()
        self.heads: list[Head | None] = [s.head for s in m.stages]
        self.num_stages = len(m.stages)
        self.rules = [h.rule if h else DEFAULT_RULE for h in self.heads]
        if rule is not None:
            self.set_rule(rule)
        self.thresholds = list(thresholds) if thresholds is not None else m.default_thresholds()
        self.set_thresholds(self.thresholds)
        self.latency = LatencyModel(self.num_stages)  # measured here, read by the guard in force
        self.guard: DeadlineGuard = StrictGuard(self.latency)
        self._segment_macs_cum = list(itertools.accumulate(s.segment.macs for s in m.stages))
        self._stage_macs_cum = m.cumulative_macs()
        self._full_macs = m.full_model_macs()
        self.input_shape = m.input.sample_shape
        self.input_dtype = np.dtype(m.input.dtype)
        self._merged: list[Graph | None] = [None] * self.num_stages
        self._full: Graph | None = None
        if merged:
            self._merged = [None if s.merged is None else self._load_graph(s.merged, f"stages[{k}].merged")
                            for k, s in enumerate(m.stages)]
            self._full = None if m.full is None else self._load_graph(m.full, "full")
        self._bind()
        if warmup > 0:
            self.warm_up(warmup)

    # ------------------------------------------------------------------ setup
    def _load_stage_graphs(self) -> tuple[list[Graph], list[Graph | None]]:
        """The separate files: one session per segment and per head."""
        cfg, b = self.session_config, self.bundle
        segs, heads = [], []
        for s in self.manifest.stages:
            segs.append(Graph(make_session(b.file(s.segment.file), cfg), s.segment.input, [s.segment.output],
                              s.segment.file))
            h = s.head
            heads.append(None if h is None else Graph(make_session(b.file(h.file), cfg), h.input,
                                                      [h.logits] + ([h.confidence] if h.confidence else []), h.file))
        return segs, heads

    def _load_graph(self, ref: GraphRef, where: str) -> Graph:
        """A merged graph: its ONNX inputs/outputs must be the ones the manifest names."""
        sess = make_session(self.bundle.file(ref.file), self.session_config)
        ins, outs = io_names(sess)
        if list(ins) != [ref.input] or sorted(outs) != sorted(ref.outputs):
            raise BundleError(f"{where} ({ref.file}): ONNX maps {list(ins)} -> {list(outs)}, the manifest "
                              f"{ref.input!r} -> {ref.outputs}",
                              "rebuild the merged graphs: python -m edge_ee_export.merge BUNDLE")
        return Graph(sess, ref.input, list(ref.outputs), ref.file)

    def _bind(self) -> None:
        """Allocate one buffer per tensor that crosses a session boundary (input, features of every stage,
        logits and confidence of every head) from a probe run of the separate files, check that every merged
        graph reproduces them, and bind every session to the buffers."""
        probe = np.random.default_rng(0).standard_normal(self.input_shape).astype(self.input_dtype)
        try:
            ref = self._probe(probe)
            self._check_merged_graphs(probe, ref)
            self._bind_buffers()
        except EdgeEEError:
            raise
        except Exception as e:  # onnxruntime errors on the probe run: the graphs do not fit together
            raise BundleError(f"bundle {self.bundle.path}: the probe run failed: "
                              f"{str(e).splitlines()[0][:300]}", "re-export the bundle") from e
        n = self.num_stages
        # per stage: the calls that run it with its head (merged when available) and without
        self._with_head = [[g] if g is not None else [self._segs[k]] + ([self._heads[k]] if self._heads[k] else [])
                           for k, g in enumerate(self._merged)]
        self._seg_only = [[g] for g in self._segs]
        # 1-D views of the logits buffers: the exit rule and the answer step read them without a reshape per call
        self._flat: list[np.ndarray] = [lg.reshape(-1) for lg in self._logits]  # type: ignore[union-attr]
        self.graph_set = GraphSet(self._segs, self._heads, self._merged, self._full, self._with_head)
        macs = self._full_macs
        fh = self.heads[-1]
        # one-graph full model: its time apportioned to the stages by MACs
        self._full_split = ([s.segment.macs / macs if macs else 0.0 for s in self.manifest.stages],
                            [None] * (n - 1) + [fh.macs / macs if macs and fh is not None else None])
        if not macs:
            self._full_split[0][-1] = 1.0

    def _probe(self, probe: np.ndarray) -> list[list[np.ndarray]]:
        """Run the separate files on ``probe``; allocate the input, feature, logits and confidence buffers
        from the outputs' shapes. Per stage: the features, then the head's outputs."""
        n = self.num_stages
        self._x = np.zeros(self.input_shape, self.input_dtype)
        self._feats: list[np.ndarray] = []
        self._logits: list[np.ndarray | None] = [None] * n
        self._conf: list[np.ndarray | None] = [None] * n
        ref: list[list[np.ndarray]] = []
        cur = probe
        for k in range(n):
            f = np.ascontiguousarray(self._segs[k].run(cur)[0])
            self._feats.append(np.empty_like(f))
            ref.append([f])
            h = self._heads[k]
            if h is None:
                self._logits[k] = self._feats[k]
            else:
                hout = h.run(f)
                ref[k] += hout
                self._logits[k] = np.empty_like(np.ascontiguousarray(hout[0]))
                if len(hout) > 1:
                    self._conf[k] = np.empty_like(np.ascontiguousarray(hout[1]))
            cur = f
        return ref

    def _check_merged_graphs(self, probe: np.ndarray, ref: list[list[np.ndarray]]) -> None:
        last = self.num_stages - 1
        for k, g in enumerate(self._merged):
            if g is not None:  # last stage: final logits only
                self._check_merged(g, f"stages[{k}].merged", g.run(probe if k == 0 else ref[k - 1][0]),
                                   ref[k] if k < last else ref[k][1:2])
        if self._full is not None:
            want = ref[-1][-1:] if self._heads[-1] else ref[-1][:1]
            self._check_merged(self._full, "full", self._full.run(probe), want)

    def _bind_buffers(self) -> None:
        """A segment's output buffer is the next segment's and its head's input buffer: no copies between calls."""
        last = self.num_stages - 1
        for k in range(self.num_stages):
            inp = self._x if k == 0 else self._feats[k - 1]
            self._segs[k].bind(inp, [self._feats[k]])
            head_outs = [o for o in (self._logits[k], self._conf[k]) if o is not None]
            h = self._heads[k]
            if h is not None:
                h.bind(self._feats[k], head_outs)
            g = self._merged[k]
            if g is not None:
                g.bind(inp, ([] if k == last else [self._feats[k]]) + (head_outs if k < last else head_outs[:1]))
        if self._full is not None:
            self._full.bind(self._x, [self._logits[last]])  # type: ignore[list-item]

    @staticmethod
    def _check_merged(g: Graph, where: str, got: list[np.ndarray], want: list[np.ndarray]) -> None:
        """A merged graph must reproduce the separate files' outputs on the probe input (float rounding aside:
        onnxruntime may fuse across the old cut)."""
        for name, a, b in zip(g.outputs, got, want):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-4):
                diff = float(np.abs(a - b).max()) if a.shape == b.shape else math.inf
                raise BundleError(
                    f"{where} ({g.file}): output {name!r} does not match the segments and heads it replaces "
                    f"(shape {a.shape} vs {b.shape}, max |diff| {diff:.3g} on a probe input)",
                    "rebuild the merged graphs from this bundle's files: python -m edge_ee_export.merge BUNDLE")

    def _check_io(self) -> None:
        """ONNX input/output names and shapes chain from the bundle input through every segment; every head
        reads its segment's output and gives one logit per label."""
        m = self.manifest
        prev_out_shape: list = list(m.input.shape)
        for k, s in enumerate(m.stages):
            prev_out_shape = self._check_segment_io(k, prev_out_shape)
            if s.head is not None:
                self._check_head_io(k, prev_out_shape)
        if m.stages[-1].head is None and isinstance(prev_out_shape[-1], int) and prev_out_shape[-1] != len(m.labels):
            raise BundleError(f"final segment outputs {prev_out_shape[-1]} values for {len(m.labels)} labels")

    def _check_segment_io(self, k: int, prev_out_shape: list) -> list:
        """Segment k's names and shapes against the manifest and the previous output; returns its output shape."""
        s = self.manifest.stages[k]
        ins, outs = io_names(self._segs[k].sess)
        where = f"stages[{k}].segment ({s.segment.file})"
        if s.segment.input not in ins or len(ins) != 1:
            raise BundleError(f"{where}: ONNX inputs {list(ins)} do not match manifest input {s.segment.input!r}")
        if s.segment.output not in outs:
            raise BundleError(f"{where}: ONNX outputs {list(outs)} lack manifest output {s.segment.output!r}")
        in_shape = ins[s.segment.input]
        if not shapes_compatible(in_shape, prev_out_shape):
            what = "match the bundle input" if k == 0 else "chain to the previous segment's output shape"
            raise BundleError(f"{where}: input shape {in_shape} does not {what} {prev_out_shape}")
        out_shape = outs[s.segment.output]
        if s.segment.output_shape and not shapes_compatible(out_shape, s.segment.output_shape):
            raise BundleError(f"{where}: output shape {out_shape} differs from the manifest {s.segment.output_shape}")
        return out_shape

    def _check_head_io(self, k: int, seg_out_shape: list) -> None:
        head = self.manifest.stages[k].head
        assert head is not None and self._heads[k] is not None
        hin, hout = io_names(self._heads[k].sess)  # type: ignore[union-attr]
        hw = f"stages[{k}].head ({head.file})"
        if head.input not in hin:
            raise BundleError(f"{hw}: ONNX inputs {list(hin)} lack manifest input {head.input!r}")
        if not shapes_compatible(hin[head.input], seg_out_shape):
            raise BundleError(f"{hw}: input shape {hin[head.input]} does not match segment output {seg_out_shape}")
        for name in (head.logits, head.confidence):
            if name is not None and name not in hout:
                raise BundleError(f"{hw}: ONNX outputs {list(hout)} lack manifest output {name!r}")
        n_logits = hout[head.logits][-1]
        if isinstance(n_logits, int) and n_logits != len(self.manifest.labels):
            raise BundleError(f"{hw}: {n_logits} logits for {len(self.manifest.labels)} labels")

    @property
    def providers(self) -> list[str]:
        """onnxruntime execution providers actually used by the sessions, in order of first use."""
        used: list[str] = []
        graphs = [*self._segs, *self._heads, *self._merged, self._full]
        for g in graphs:
            for p in g.sess.get_providers() if g is not None else []:
                if p not in used:
                    used.append(p)
        return used

    @property
    def intra_op_threads(self) -> int:
        return int(self.session_config.intra_op_threads or 1)

    @property
    def graphs(self) -> dict[str, Any]:
        """Which graphs the engine runs: ``merged_stages`` (stage indices run as one merged graph when their
        head runs) and ``one_graph_full`` (``mode="full"`` answered by the one-graph full model)."""
        return {"merged_stages": [k for k, g in enumerate(self._merged) if g is not None],
                "one_graph_full": self._full is not None}

    def use_guard(self, guard: DeadlineGuard) -> None:
        """Decide stages under a deadline with ``guard``, which must read this engine's latency model."""
        if guard.latency is not self.latency:
            raise ValueError("a deadline guard must read the engine's own latency model (engine.latency)")
        self.latency.whole_runs = guard.whole_runs
        self.guard = guard

    def warm_up(self, runs: int = 3) -> None:
        """Run every graph on zeros: the first runs of a session are slow (allocation, kernel selection)
        and are discarded; the next ``4 * runs + 3`` runs of every stage (as ``infer`` runs it with its
        head) seed the deadline guard's latency model, so it starts from warm measurements."""
        x = np.zeros(self.input_shape, self.input_dtype)
        for _ in range(runs):
            self.infer_all_exits(x)
            self._all_stages(x)
            if self._full is not None:
                self._full.bound()
        seeds = [self._all_stages(x) for _ in range(4 * runs + 3)]
        self.latency.seed([[a[0][k] for a in seeds] for k in range(self.num_stages)],
                          [[a[1][k] for a in seeds] for k in range(self.num_stages)])

    def _all_stages(self, x: np.ndarray) -> tuple[list[float], list[float]]:
        """Every stage with its head, as ``infer`` runs it: (segment seconds, head seconds) per stage; a merged
        stage's time is all segment, a stage without a head has 0.0 head time."""
        np.copyto(self._x, x)
        seg_s, head_s = [], []
        for calls in self._with_head:
            ts = _now()
            calls[0].bound()
            te = _now()
            seg_s.append(te - ts)
            if len(calls) > 1:
                calls[1].bound()
                head_s.append(_now() - te)
            else:
                head_s.append(0.0)
        return seg_s, head_s

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

    def _decide(self, k: int, logits: np.ndarray, conf: float | None) -> tuple[float, bool]:
        """The exit decision, in one place: exit k's rule score for these logits (and learned confidence)
        and whether it fires at the threshold in force."""
        rule = self._rules[k]
        score = rule.score(logits, self.heads[k].temperature, conf)  # type: ignore[union-attr]
        return score, rule.fires(score, self.thresholds[k])

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

    def _stop_at(self, mode: str, exit_at: int | None) -> int:
        last = self.num_stages - 1
        if mode == "exit_at":
            if exit_at is None or not 0 <= exit_at <= last:
                raise UsageError(f"exit_at must be between 0 and {last}")
            return exit_at
        if mode not in ("adaptive", "full"):
            raise UsageError(f"unknown mode {mode!r}; use adaptive, full or exit_at")
        return last

    def infer(self, x: np.ndarray, mode: Mode = "adaptive", exit_at: int | None = None,
              deadline_s: float | None = None) -> Result:
        """Classify one input of shape ``input_shape``. ``deadline_s`` is relative to the call."""
        t0 = _now()
        x = self.check_input(x)
        stop_at = self._stop_at(mode, exit_at)
        np.copyto(self._x, x)
        if mode == "full" and self._full is not None:
            return self._infer_one_graph(t0)
        adaptive = mode == "adaptive"
        seg_ms: list[float] = []
        head_ms: list[float | None] = []
        try:
            k, score, deadline_stop = self._run_stages(t0, stop_at, adaptive, deadline_s, seg_ms, head_ms)
        except (UsageError, InferenceError):
            raise
        except Exception as e:
            raise InferenceError(f"inference failed in stage {len(seg_ms)}: {str(e).splitlines()[0][:300]}") from e
        return self._result(k, self._flat[k], score, seg_ms, head_ms,
                            self._macs_spent(k, adaptive, head_ms), t0, deadline_stop, False)

    def _run_stages(self, t0: float, stop_at: int, adaptive: bool, deadline_s: float | None, seg_ms: list[float],
                    head_ms: list[float | None]) -> tuple[int, float, bool]:
        """Run stages 0..stop_at through the bound graphs (heads only where ``adaptive`` or at ``stop_at``),
        appending each stage's times; stop at the first exit that fires, or where the deadline guard says the
        next stage does not fit. Returns (answering exit, its rule score (NaN: the final classifier, which always
        answers), whether the guard stopped). The guard's latency model is only used and updated under a
        deadline."""
        guard = None if deadline_s is None else self.guard
        last = self.num_stages - 1
        best, score = -1, math.nan  # the deepest exit evaluated so far and its score
        for k in range(stop_at + 1):
            if guard is not None and best >= 0 and not guard.fits(
                    k, _now() - t0, deadline_s, lambda b=best: self._wrong_prob(b)):  # type: ignore[arg-type]
                return best, score, True
            final_segment = self.heads[k] is None  # the last segment outputs the logits itself
            run_head = (adaptive or k == stop_at) and not final_segment
            calls = self._with_head[k] if run_head else self._seg_only[k]
            ts = _now()
            calls[0].bound()
            te = _now()
            seg_ms.append((te - ts) * 1e3)
            th: float | None = None
            if run_head:
                if len(calls) > 1:
                    calls[1].bound()
                    th = _now() - te
                else:
                    th = 0.0  # merged stage: the head ran inside the segment's call
            head_ms.append(None if th is None else th * 1e3)
            if guard is not None:
                self._observe(self.latency, k, te - ts, th, final_segment)
            if k == last:
                return k, math.nan, False
            if run_head:
                c = self._conf[k]
                score, fire = self._decide(k, self._flat[k], None if c is None else float(c[0, 0]))
                best = k
                if fire or k == stop_at:
                    return k, score, False
        raise AssertionError("unreachable: the stage loop answers at stop_at")

    @staticmethod
    def _observe(latency: LatencyModel, k: int, seg_s: float, head_s: float | None, final_segment: bool) -> None:
        """Feed stage k's measured times to the deadline guard's latency model."""
        latency.update_segment(k, seg_s)
        if final_segment:
            latency.update_stage(k, seg_s)
        elif head_s is not None:
            latency.update_head(k, head_s)

    def _macs_spent(self, k: int, adaptive: bool, head_ms: list[float | None]) -> int:
        """MACs actually spent, in every mode: the segments run plus the heads run (adaptive: every head up to
        the last stage run; full and exit_at: only the answering head)."""
        n_run = len(head_ms)
        if adaptive:
            return self._stage_macs_cum[n_run - 1]
        h = self.heads[k]
        return self._segment_macs_cum[n_run - 1] + (h.macs if h is not None and head_ms[-1] is not None else 0)

    def _result(self, k: int, logits: np.ndarray, score: float, seg_ms: list[float], head_ms: list[float | None],
                macs: int, t0: float, deadline_stop: bool, one_graph: bool) -> Result:
        head = self.heads[k]
        idx, terms, total = softmax_terms(logits, head.temperature if head else 1.0)
        return Result(
            label=self.manifest.labels[idx],
            label_index=idx,
            exit_index=k,
            confidence=float(terms[idx] / total),
            score=score,
            segment_ms=seg_ms,
            head_ms=head_ms,
            total_ms=(_now() - t0) * 1e3,
            macs=macs,
            deadline_stop=deadline_stop,
            thresholds=self.thresholds,
            t_start=t0,
            one_graph=one_graph,
            terms=terms,
            terms_sum=total,
        )

    def answer(self, k: int) -> Result:
        """The answer step alone: a Result from exit k's logits buffer as the last bound run left it (no model
        run, zero times; for measuring the engine's own per-answer cost)."""
        return self._result(k, self._flat[k], math.nan, [0.0], [0.0], 0, _now(), False, False)

    def _infer_one_graph(self, t0: float) -> Result:
        """``mode="full"`` through the one-graph full model: one call; its time is apportioned to the stages
        by MACs (the graph cannot be timed per stage)."""
        last = self.num_stages - 1
        try:
            ts = _now()
            self._full.bound()  # type: ignore[union-attr]
            t_ms = (_now() - ts) * 1e3
        except Exception as e:
            raise InferenceError(f"inference failed in the one-graph full model: {str(e).splitlines()[0][:300]}") from e
        seg_f, head_f = self._full_split
        return self._result(last, self._flat[last], math.nan, [f * t_ms for f in seg_f],  # type: ignore[arg-type]
                            [None if f is None else f * t_ms for f in head_f], self._full_macs, t0, False, True)

    def _wrong_prob(self, k: int) -> float:
        """1 - top softmax probability of exit k's answer (the deadline guard's risk weight)."""
        head = self.heads[k]
        idx, terms, total = softmax_terms(self._flat[k], head.temperature if head else 1.0)
        return 1.0 - float(terms[idx] / total)

    def infer_all_exits(self, x: np.ndarray) -> AllExits:
        """Run every segment and every head once, as separate calls (for profiling and calibration): each
        exit's logits, learned confidence (or None) and the per-segment/per-head times in seconds."""
        x = self.check_input(x)
        np.copyto(self._x, x)
        logits: list[np.ndarray] = []
        conf: list[float | None] = []
        seg_s: list[float] = []
        head_s: list[float] = []
        t_start = _now()
        try:
            for k in range(self.num_stages):
                ts = _now()
                self._segs[k].bound()
                seg_s.append(_now() - ts)
                h = self._heads[k]
                if h is None:
                    logits.append(self._logits[k].reshape(-1).copy())  # type: ignore[union-attr]
                    conf.append(None)
                    head_s.append(0.0)
                    continue
                ts = _now()
                h.bound()
                head_s.append(_now() - ts)
                logits.append(self._logits[k].reshape(-1).copy())  # type: ignore[union-attr]
                c = self._conf[k]
                conf.append(float(c.reshape(-1)[0]) if c is not None else None)
        except Exception as e:
            if isinstance(e, (UsageError, InferenceError)):
                raise
            raise InferenceError(f"inference failed in stage {len(seg_s)}: {str(e).splitlines()[0][:300]}") from e
        return AllExits(logits, conf, seg_s, head_s, t_start)

    # ------------------------------------------------------------------ batch
    def check_batch(self, xs: np.ndarray) -> np.ndarray:
        """A batch is ``(N, *input_shape[1:])`` with N >= 1."""
        want = self.input_shape[1:]
        if xs.ndim != len(self.input_shape) or tuple(xs.shape[1:]) != want or xs.shape[0] < 1:
            raise InferenceError(
                f"batch has shape {tuple(xs.shape)}, the bundle expects (N, {', '.join(map(str, want))})",
                "stack preprocessed samples along a first (batch) dimension",
            )
        fixed = self._fixed_batch
        if fixed is not None and xs.shape[0] != fixed[0]:
            raise InferenceError(
                f"batch has shape {tuple(xs.shape)}, but {fixed[1]} has a fixed batch dimension of {fixed[0]}",
                "re-export the bundle with a dynamic batch dimension (edge-ee-export does), or run one sample "
                "at a time")
        if xs.dtype != self.input_dtype:
            xs = xs.astype(self.input_dtype)
        return xs

    @property
    def _fixed_batch(self) -> tuple[int, str] | None:
        """(batch size, file) of the first segment whose ONNX input has a fixed batch dimension, if any."""
        for g in self._segs:
            d = g.sess.get_inputs()[0].shape[0]
            if isinstance(d, int) and d > 0:
                return d, g.file
        return None

    def infer_batch(self, xs: np.ndarray, mode: Mode = "adaptive", exit_at: int | None = None) -> list[Result]:
        """Classify a batch ``(N, *input_shape[1:])``: one call per stage for the samples still running; a
        sample whose exit fires leaves the batch. Per sample the same answer, exit and MACs as ``infer``
        (the logits of a batched call may differ from a single-sample call in the last float bits).
        ``segment_ms``/``head_ms`` of a sample are the times of the batched calls it took part in."""
        t0 = _now()
        xs = self.check_batch(xs)
        stop_at = self._stop_at(mode, exit_at)
        adaptive = mode == "adaptive"
        n = xs.shape[0]
        out: list[Result | None] = [None] * n
        alive = np.arange(n)
        seg_ms: list[list[float]] = [[] for _ in range(n)]
        head_ms: list[list[float | None]] = [[] for _ in range(n)]
        cur = xs
        k = 0
        try:
            for k in range(stop_at + 1):
                feat, hout, s_t, h_t = self._batch_stage(k, cur, adaptive or k == stop_at)
                for i in alive:
                    seg_ms[i].append(s_t * 1e3)
                    head_ms[i].append(None if h_t is None else h_t * 1e3)
                if hout is None:
                    cur = feat  # type: ignore[assignment]
                    continue
                answer_all = k == self.num_stages - 1 or (k == stop_at and not adaptive)
                keep = self._batch_answers(k, hout, alive, answer_all, out, (seg_ms, head_ms, t0))
                alive = alive[keep]
                if not alive.size:
                    break
                cur = feat[keep]  # type: ignore[index]
        except (UsageError, InferenceError):
            raise
        except Exception as e:
            raise InferenceError(f"batch inference failed in stage {k}: {str(e).splitlines()[0][:300]}") from e
        return out  # type: ignore[return-value]

    def _batch_stage(self, k: int, cur: np.ndarray, head_wanted: bool
                     ) -> tuple[np.ndarray | None, list[np.ndarray] | None, float, float | None]:
        """Stage k on a batch: (features, the head's outputs or None when no head ran, segment seconds, head
        seconds or None). A merged stage graph runs both in one call (head time 0.0); the final segment's
        output is its logits."""
        head = self.heads[k]
        run_head = head is not None and head_wanted
        g = self._merged[k] if run_head else None
        ts = _now()
        if g is not None:
            outs = g.run(cur)
            s_t = _now() - ts
            return (None, outs, s_t, 0.0) if k == self.num_stages - 1 else (outs[0], outs[1:], s_t, 0.0)
        feat = self._segs[k].run(cur)[0]
        te = _now()
        if run_head:
            hout = self._heads[k].run(feat)  # type: ignore[union-attr]
            return feat, hout, te - ts, _now() - te
        return feat, ([feat] if head is None else None), te - ts, None

    def _batch_answers(self, k: int, hout: list[np.ndarray], alive: np.ndarray, answer_all: bool,
                       out: list[Result | None], times: tuple[list[list[float]], list[list[float | None]], float]
                       ) -> np.ndarray:
        """Apply exit k's rule to each running sample; fill ``out`` for those that answer here. Returns the mask
        of the samples that go on. ``times``: per-sample segment and head times, and the batch's start."""
        seg_ms, head_ms, t0 = times
        logits, conf = hout[0], (hout[1] if len(hout) > 1 else None)
        decide = k < self.num_stages - 1 and self.heads[k] is not None
        keep = np.ones(len(alive), bool)
        for j, i in enumerate(alive):
            score = math.nan
            if decide:
                c = None if conf is None else float(conf[j].reshape(-1)[0])
                score, fire = self._decide(k, logits[j], c)
                if not (fire or answer_all):
                    continue
            keep[j] = False
            macs = self._segment_macs_cum[k] + sum(
                h.macs for h, t in zip(self.heads, head_ms[i]) if h is not None and t is not None)
            out[i] = self._result(k, logits[j], score, seg_ms[i], head_ms[i], macs, t0, False, False)
        return keep

@dataclass
class AllExits:
    """Every exit's output for one input (``Engine.infer_all_exits``). Times in seconds."""

    logits: list[np.ndarray]
    confidence: list[float | None]
    segment_s: list[float]
    head_s: list[float]  # 0.0 where a stage has no head (the final segment outputs logits)
    t_start: float
