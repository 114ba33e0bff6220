"""``video:FILE``: frames of a video file, decoded by OpenCV."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SourceError, UsageError
from ..pipeline.cv import require_cv2
from .base import Frame, Source
from .registry import IMAGE_TASK, register_source

if TYPE_CHECKING:
    from ..core.manifest import Manifest

log = logging.getLogger("edge_ee.sources")


@register_source("video", "a video file, video:FILE", syntax="video:FILE", task=IMAGE_TASK, order=30)
class VideoSource(Source):
    kind = "image"

    @classmethod
    def from_spec(cls, arg: str, m: Manifest, opts: dict) -> VideoSource:
        if not arg:
            raise UsageError("video: needs a file, e.g. video:clip.mp4")
        return cls(arg, loop=bool(opts.get("loop")))

    def __init__(self, path: str, loop: bool = False) -> None:
        cv2 = require_cv2("the video source")
        p = Path(path)
        if p.is_dir():
            raise SourceError(f"video:{path} is a directory, not a video file",
                              "give a file (video:clip.mp4); for a folder of images use --source images:DIR")
        if p.exists() and not p.is_file():
            raise SourceError(f"video:{path} is not a regular file (a device or pipe)",
                              "give a video file; for a camera use --source camera:/dev/videoN")
        if not p.is_file():
            raise SourceError(f"video:{path}: no such file", "check the path; for a camera use --source camera")
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise SourceError(
                f"video:{path}: OpenCV cannot open this file (unknown container/codec or corrupt)",
                "convert it, e.g. `ffmpeg -i IN -c:v mjpeg OUT.avi`, or check cv2.getBuildInformation() for video I/O",
            )
        self.path = path
        self.loop = loop
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.expected = int(count) if count and count > 0 and count == count else None  # from the header
        self.short = False  # ended well before the frame count in its header (truncated)
        self.description = f"video:{path}"
        self.i = 0
        self._cv2 = cv2

    def read(self) -> Frame | None:
        ok, img = self.cap.read()
        if not ok and self.loop and self.i > 0:
            self.cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
        if not ok or img is None:
            if self.i == 0:
                raise SourceError(f"video:{self.path}: the file opened but contains no decodable frame")
            if self.expected and self.i < 0.95 * self.expected and not self.short:
                self.short = True
                log.warning("video:%s ended after %d of the %d frames its header announces: the file is "
                            "truncated or damaged", self.path, self.i, self.expected)
            return None
        frame = Frame(self.i, img, meta={"path": self.path})
        self.i += 1
        return frame

    def close(self) -> None:
        self.cap.release()
