"""``images:DIR_OR_GLOB``: still images from a directory (recursively) or a glob pattern."""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SourceError, UsageError
from ..pipeline.cv import require_cv2
from .base import Frame, Source
from .imagesize import MAX_IMAGE_PIXELS, image_size, limit_opencv
from .registry import IMAGE_TASK, register_source

if TYPE_CHECKING:
    from ..core.manifest import Manifest

log = logging.getLogger("edge_ee.sources")
_WARN_FIRST = 5  # unreadable images named one by one; the rest only counted

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


MAX_SCAN_ENTRIES = 200_000  # files and folders looked at to find the images (README "Limits")


def _too_many(pattern: str) -> SourceError:
    return SourceError(f"images:{pattern}: more than {MAX_SCAN_ENTRIES} files and folders to look through",
                       "give the folder that holds the images, or a narrower glob")


def _walk(root: Path, pattern: str) -> list[Path]:
    """Image files under ``root`` (recursively, symlinked folders not followed); folders that vanish or
    cannot be read while walking are skipped."""
    out: list[Path] = []
    n = 0
    for d, dirs, names in os.walk(root, onerror=lambda e: None):
        n += len(dirs) + len(names)
        if n > MAX_SCAN_ENTRIES:
            raise _too_many(pattern)
        out += [Path(d) / f for f in names if Path(f).suffix.lower() in IMAGE_EXTS]
    return [f for f in out if f.is_file()]


def _glob(pattern: str) -> list[Path]:
    """Image files matching ``pattern``; ``**`` patterns walk their fixed leading folder within the limit
    (glob.glob would walk without bound, e.g. ``/**/*.png``)."""
    if "**" not in pattern:
        out = []
        for n, f in enumerate(glob.iglob(pattern)):
            if n >= MAX_SCAN_ENTRIES:
                raise _too_many(pattern)
            out.append(Path(f))
        return [f for f in out if f.suffix.lower() in IMAGE_EXTS and f.is_file()]
    parts = Path(pattern).parts
    fixed = next(i for i, x in enumerate(parts) if glob.has_magic(x))
    base = Path(*parts[:fixed]) if fixed else Path(".")
    rest = "/".join(parts[fixed:]).replace("**/", "*").replace("**", "*")  # fnmatch's * also matches "/"
    if not base.is_dir():
        return []
    return [f for f in _walk(base, pattern) if fnmatch.fnmatchcase(f.relative_to(base).as_posix(), rest)]


@register_source("images", "still images, images:DIR or images:'GLOB'", syntax="images:DIR_OR_GLOB",
                 task=IMAGE_TASK, order=20)
class ImageSource(Source):
    """Reads images in sorted order. When an image's parent folder is named after a class label
    (case and punctuation ignored) the label is attached as ground truth, so ``run`` reports accuracy."""

    kind = "image"

    @classmethod
    def from_spec(cls, arg: str, m: Manifest, opts: dict) -> ImageSource:
        if not arg:
            raise UsageError("images: needs a directory or glob, e.g. images:photos/ or images:'shots/*.png'")
        return cls(arg, labels=m.labels, loop=bool(opts.get("loop")), strict=bool(opts.get("strict")))

    def __init__(self, pattern: str, labels: list[str] | None = None, loop: bool = False,
                 strict: bool = False) -> None:
        limit_opencv()
        self.cv2 = require_cv2("the images source")
        self.strict = strict  # stop at the first unreadable image instead of skipping it
        self.skipped = 0
        p = Path(pattern)
        if p.is_dir():
            files = sorted(_walk(p, pattern))
        elif p.is_file():
            files = [p]
        else:
            files = sorted(_glob(pattern))
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

    def _load(self, f: Path) -> object:
        """The decoded image, or raise SourceError saying why it cannot be used."""
        try:
            size = image_size(f)
        except OSError as e:
            raise SourceError(f"cannot read image {f}: {e.strerror}") from None
        if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
            raise SourceError(f"image {f} is {size[0]}x{size[1]} pixels, over the limit of "
                              f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels", "scale it down first")
        try:
            img = self.cv2.imread(str(f), self.cv2.IMREAD_UNCHANGED)
        except self.cv2.error as e:
            raise SourceError(f"cannot read image {f}: {str(e).strip().splitlines()[-1]}") from None
        if img is None:
            raise SourceError(f"cannot read image {f}: unreadable, truncated or not an image",
                              "remove or replace the file, or narrow the glob")
        return img

    def read(self) -> Frame | None:
        while True:
            if self.i >= len(self.files) and not self.loop:
                if self.skipped and self.skipped >= len(self.files) and self.i == self.skipped:
                    raise SourceError(f"images: none of the {len(self.files)} images could be read",
                                      "check the files (see the warnings above)")
                return None
            f = self.files[self.i % len(self.files)]
            try:
                img = self._load(f)
                break
            except SourceError as e:
                if self.strict:
                    raise
                self.skipped += 1
                self.dropped += 1
                self.i += 1
                if self.skipped <= _WARN_FIRST:
                    log.warning("%s; skipped (counted as a dropped frame; --strict stops instead)%s", e.message,
                                "; further unreadable images are only counted" if self.skipped == _WARN_FIRST
                                else "")
                if self.loop and self.skipped >= len(self.files) and self.i == self.skipped:
                    raise SourceError(f"images: none of the {len(self.files)} images could be read") from None
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
