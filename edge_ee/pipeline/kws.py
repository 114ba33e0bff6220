"""Keyword-spotting post-processing: posterior smoothing, detection events and their scoring.

A streaming spotter sees the same word in several overlapping windows (1 s windows every 250 ms), so
per-window answers are noisy and repeat. As keyword spotters do (e.g. TensorFlow's RecognizeCommands):

* average the posteriors of the windows that ended in the last ``average_s`` seconds;
* the best *keyword* (labels such as ``silence``/``_unknown_`` are never reported) fires when its
  average reaches ``threshold``;
* after a detection nothing fires for ``suppress_s`` seconds, and the same keyword fires again only
  after its average has dropped below the threshold (one word, one event).

:class:`KwsHook` runs this on every result of a run with an audio source: it adds ``t_audio``,
``kws_label``, ``kws_score`` and ``detection`` to the telemetry record, prints each event on stdout
and lists the detections (and precision/recall/F1 when ground truth is known) in the summary.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .runner import RunHook

IGNORED_LABELS = frozenset({"silence", "unknown", "background", "background_noise", "noise", "other", "none",
                            "filler", "negative"})


def is_keyword(label: str) -> bool:
    return label.strip("_ ").lower() not in IGNORED_LABELS


@dataclass
class Detection:
    keyword: str
    time: float  # stream time [s] at the end of the window that fired
    confidence: float  # smoothed posterior of the keyword
    exit: int  # exit that answered the window that fired
    wall_time: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["confidence"] = round(self.confidence, 4)
        d["time"] = round(self.time, 3)
        return d


class KeywordDetector:
    def __init__(self, labels: Sequence[str], *, threshold: float = 0.7, average_s: float = 0.75,
                 suppress_s: float = 1.0) -> None:
        self.labels = list(labels)
        self.keyword_mask = np.array([is_keyword(lab) for lab in self.labels])
        if not self.keyword_mask.any():
            raise ValueError("no keyword labels: every label is silence/unknown")
        self.threshold = float(threshold)
        self.average_s = float(average_s)
        self.suppress_s = float(suppress_s)
        self._hist: deque[tuple[float, np.ndarray]] = deque()
        self._last: Detection | None = None
        self._armed = np.ones(len(self.labels), dtype=bool)  # keyword fell below threshold since it fired
        self.smoothed = np.zeros(len(self.labels))

    def update(self, t: float, probs: np.ndarray, exit_index: int = 0) -> Detection | None:
        p = np.asarray(probs, dtype=np.float64).ravel()
        if p.size != len(self.labels):
            raise ValueError(f"posterior has {p.size} values for {len(self.labels)} labels")
        self._hist.append((t, p))
        while self._hist and self._hist[0][0] <= t - self.average_s:
            self._hist.popleft()
        self.smoothed = avg = np.mean([h[1] for h in self._hist], axis=0)
        self._armed |= avg < self.threshold
        scores = np.where(self.keyword_mask, avg, -1.0)
        k = int(np.argmax(scores))
        if scores[k] < self.threshold or not self._armed[k]:
            return None
        if self._last is not None and t - self._last.time < self.suppress_s:
            return None
        self._armed[k] = False
        self._last = Detection(self.labels[k], t, float(avg[k]), int(exit_index), time.time())
        return self._last

    @property
    def top(self) -> tuple[str, float]:
        scores = np.where(self.keyword_mask, self.smoothed, -1.0)
        k = int(np.argmax(scores))
        return self.labels[k], float(self.smoothed[k])


def score_detections(detections: Sequence[dict[str, Any] | Detection], truth: Sequence[dict[str, Any]],
                     late_s: float = 1.25) -> dict[str, Any]:
    """Match detections to ground-truth words ``{"keyword", "start", "end"}``: a detection counts when it has
    the right keyword and fires between the word's start and ``late_s`` after its end (a window ends after
    the word it contains); each word matches at most one detection. Returns tp/fp/fn, precision, recall, F1."""
    dets = [d.to_json() if isinstance(d, Detection) else d for d in detections]
    used = [False] * len(truth)
    tp = 0
    for d in sorted(dets, key=lambda d: d["time"]):
        for i, w in enumerate(truth):
            if not used[i] and w["keyword"] == d["keyword"] and w["start"] <= d["time"] <= w["end"] + late_s:
                used[i] = True
                tp += 1
                break
    fp = len(dets) - tp
    fn = len(truth) - tp
    precision = tp / (tp + fp) if tp + fp else (1.0 if not truth else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
            "words": len(truth)}


class KwsHook(RunHook):
    """Smooth posteriors over the stream, emit detection events to telemetry, stdout and the summary."""

    phase = "measure"

    def __init__(self, labels: Sequence[str], *, threshold: float = 0.7, average_s: float = 0.75,
                 suppress_s: float = 1.0, truth: list[dict[str, Any]] | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.detector = KeywordDetector(labels, threshold=threshold, average_s=average_s, suppress_s=suppress_s)
        self.detections: list[Detection] = []
        self.truth = truth
        self.echo = echo if echo is not None else _stdout

    def on_result(self, runner: Any, frame: Any, result: Any, record: dict[str, Any]) -> None:
        t = float(frame.meta.get("t_audio", frame.index))
        det = self.detector.update(t, result.probs, result.exit_index)
        label, score = self.detector.top
        record["t_audio"] = round(t, 4)
        record["kws_label"] = label
        record["kws_score"] = round(score, 4)
        record["detection"] = det.to_json() if det else None
        if det is not None:
            self.detections.append(det)
            self.echo(f"keyword {det.keyword!r} at {det.time:.2f} s (confidence {det.confidence:.2f}, "
                      f"exit {det.exit})")

    def on_stop(self, runner: Any, summary: dict[str, Any]) -> None:
        summary["detections"] = [d.to_json() for d in self.detections]
        if self.truth is not None:
            summary["kws_score"] = score_detections(self.detections, self.truth)


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def format_detections(summary: dict[str, Any], limit: int = 20) -> str:
    dets = summary.get("detections")
    if dets is None:
        return ""
    lines = [f"keywords detected: {len(dets)}"]
    for d in dets[:limit]:
        lines.append(f"  {d['time']:8.2f} s  {d['keyword']:<12} confidence {d['confidence']:.2f}  exit {d['exit']}")
    if len(dets) > limit:
        lines.append(f"  ... {len(dets) - limit} more (see the telemetry log)")
    sc = summary.get("kws_score")
    if sc:
        lines.append(f"keyword detection vs ground truth: precision {100 * sc['precision']:.1f}%  recall "
                     f"{100 * sc['recall']:.1f}%  F1 {100 * sc['f1']:.1f}%  ({sc['tp']} hits, {sc['fp']} false alarms, "
                     f"{sc['fn']} missed of {sc['words']} words)")
    return "\n".join(lines)
