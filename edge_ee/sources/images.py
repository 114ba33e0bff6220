"""``images:DIR_OR_GLOB``: still images from a directory (recursively) or a glob pattern."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from ..cv import require_cv2
from ..errors import SourceError
from .base import Frame, Source

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


class ImageSource(Source):
    """Reads images in sorted order. When an image's parent folder is named after a class label
    (case and punctuation ignored) the label is attached as ground truth, so ``run`` reports accuracy."""

    kind = "image"

    def __init__(self, pattern: str, labels: list[str] | None = None, loop: bool = False) -> None:
        self.cv2 = require_cv2("the images source")
        p = Path(pattern)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())
        elif p.is_file():
            files = [p]
        else:
            files = sorted(Path(f) for f in glob.glob(pattern, recursive=True)
                           if Path(f).suffix.lower() in IMAGE_EXTS and Path(f).is_file())
        if not files:
            raise SourceError(
                f"images:{pattern}: no image files found",
                f"give a directory or a glob of images ({', '.join(sorted(IMAGE_EXTS))})",
            )
        self.files = files
        self.description = f"images:{pattern} ({len(files)} files)"
        self.by_norm = {_norm(lbl): lbl for lbl in (labels or [])}
        self.loop = loop
        self.i = 0

    def read(self) -> Frame | None:
        if self.i >= len(self.files):
            if not self.loop:
                return None
        f = self.files[self.i % len(self.files)]
        img = self.cv2.imread(str(f), self.cv2.IMREAD_UNCHANGED)
        if img is None:
            raise SourceError(
                f"cannot read image {f}: unreadable or not an image",
                "remove or replace the file, or narrow the glob",
            )
        if img.ndim == 3 and img.shape[2] == 4:
            img = self.cv2.cvtColor(img, self.cv2.COLOR_BGRA2BGR)
        if img.dtype != "uint8":
            img = self.cv2.normalize(img, None, 0, 255, self.cv2.NORM_MINMAX).astype("uint8")
        meta: dict[str, object] = {"path": str(f)}
        truth = self.by_norm.get(_norm(f.parent.name))
        if truth is not None:
            meta["truth"] = truth
        frame = Frame(self.i, img, meta=meta)
        self.i += 1
        return frame
