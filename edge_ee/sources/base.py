"""The source interface: anything that yields frames (images) or windows (audio)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SourceKind = Literal["image", "audio", "tensor"]


@dataclass
class Frame:
    index: int
    data: np.ndarray  # image: HxW or HxWx3 uint8 BGR; audio: float32 mono PCM in [-1, 1]; tensor: model input
    t_capture: float = field(default_factory=time.perf_counter)  # perf_counter() at capture
    wall_time: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"path": ..., "truth": "Sandal"}


class Source:
    """Base class. ``read()`` returns the next frame or ``None`` at the end of the stream and raises
    :class:`~edge_ee.errors.SourceError` when the source fails."""

    kind: SourceKind = "image"
    description: str = "source"
    dropped: int = 0  # frames the source skipped because inference was slower than capture
    live: bool = False  # a live device (camera, microphone): frames arrive at their own pace
    truth: list[dict[str, Any]] | None = None  # audio: keyword events [{"keyword", "start", "end"}], if known

    def read(self) -> Frame | None:  # pragma: no cover - interface
        raise NotImplementedError

    def interrupt(self) -> None:
        """Called on a stop request (possibly from a signal handler): a blocked ``read()`` returns None.
        Sources whose ``read()`` never blocks for long need not override it."""
        return

    def stream_stats(self) -> dict[str, Any]:
        """Counters of a live stream for the telemetry record and summary (cameras add capture counters)."""
        return {"dropped_frames": self.dropped}

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
