"""Run hooks for streaming sources, chosen from the source: live-capture counters (dropped frames,
reconnects, capture gaps) in telemetry and summary, and keyword spotting for audio sources."""

from __future__ import annotations

from typing import Any

from ..core.manifest import Manifest
from ..sources.base import Source
from .kws import KwsHook, format_detections
from .runner import RunHook


class LiveSourceHook(RunHook):
    """Adds the live source's counters to each record (cumulative) and to the summary."""

    phase = "measure"

    def __init__(self, source: Source) -> None:
        self.source = source

    def _stats(self) -> dict[str, Any]:
        return self.source.stream_stats()

    def on_result(self, runner: Any, frame: Any, result: Any, record: dict[str, Any]) -> None:
        record.update(self._stats())
        if "capture_seq" in frame.meta:
            record["capture_seq"] = frame.meta["capture_seq"]

    def on_stop(self, runner: Any, summary: dict[str, Any]) -> None:
        summary["stream"] = self._stats()


def stream_hooks(source: Source, manifest: Manifest, options: dict[str, Any] | None = None) -> list[RunHook]:
    opts = options or {}
    hooks: list[RunHook] = []
    if source.live:
        hooks.append(LiveSourceHook(source))
    if source.kind == "audio" and manifest.task == "keyword_spotting":
        hooks.append(KwsHook(manifest.labels, threshold=float(opts.get("kws_threshold", 0.7)),
                             average_s=float(opts.get("kws_average_s", 0.75)),
                             suppress_s=float(opts.get("kws_suppress_s", 1.0)),
                             truth=source.truth, echo=opts.get("echo")))
    return hooks


def format_stream_summary(summary: dict[str, Any]) -> str:
    lines: list[str] = []
    st = summary.get("stream")
    if st and (st.get("reconnects") or st.get("capture_gaps") or st.get("empty_frames")):
        lines.append(f"capture: {st.get('captured_frames', 0)} frames captured, {st.get('empty_frames', 0)} empty, "
                     f"{st.get('capture_gaps', 0)} gaps ({st.get('capture_gap_s', 0.0):.1f} s without frames), "
                     f"{st.get('reconnects', 0)} reconnects")
    det = format_detections(summary)
    if det:
        lines.append(det)
    return "\n".join(lines)


def parse_seconds(text: str | None, option: str) -> float | None:
    """``250ms`` / ``0.5s`` / ``500us`` -> seconds (a bare number means seconds)."""
    if text is None or text == "":
        return None
    from ..core.budget import parse_budget
    from ..errors import UsageError

    try:
        return float(text)
    except ValueError:
        pass
    try:
        b = parse_budget(text)
    except UsageError:
        b = None
    if b is None or b.kind != "latency":
        raise UsageError(f"{option} {text!r}: give a duration such as 250ms, 0.5s or 1")
    return b.value


def check_source_fits(source: Source, manifest: Manifest) -> None:
    """An audio source needs an audio bundle and an image source an image bundle: say so clearly."""
    from ..errors import UsageError

    kind = (manifest.input.preprocess or {}).get("kind", "none")
    if source.kind == "audio" and kind != "audio_mfcc":
        raise UsageError(f"{source.description} delivers audio, but bundle {manifest.name!r} ({manifest.task}) "
                         "takes images",
                         "leave out --model to use the keyword-spotting bundle, or pass an audio bundle")
    if source.kind == "image" and kind == "audio_mfcc":
        raise UsageError(f"{source.description} delivers images, but bundle {manifest.name!r} is a keyword spotter",
                         "use --source mic / wav:FILE / -, or an image bundle")
