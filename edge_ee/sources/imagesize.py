"""Width and height of an image file from its header, read before decoding it.

A 60000x60000 PNG is a few KiB on disk and 10 GiB decoded: the image sources refuse anything over
:data:`MAX_IMAGE_PIXELS` before OpenCV allocates it. PNG, JPEG, GIF, BMP, WebP and PNM headers are
read here; for other formats OpenCV's own limit (``CV_IO_MAX_IMAGE_PIXELS``, set to the same value)
applies.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

MAX_IMAGE_PIXELS = 50_000_000  # 50 megapixels (e.g. 8660x5774); README "Limits"
_HEAD = 64 * 1024  # JPEG SOF markers may follow EXIF data: look this far


def limit_opencv() -> None:
    """Make OpenCV's decoders refuse images over the limit too (formats not parsed here)."""
    os.environ.setdefault("CV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) from the file header, or None when the format is not recognised here."""
    with open(Path(path), "rb") as f:
        h = f.read(_HEAD)
    try:
        if h.startswith(b"\x89PNG\r\n\x1a\n") and h[12:16] == b"IHDR":
            w, ht = struct.unpack(">II", h[16:24])
            return w, ht
        if h[:6] in (b"GIF87a", b"GIF89a"):
            w, ht = struct.unpack("<HH", h[6:10])
            return w, ht
        if h[:2] == b"BM":
            w, ht = struct.unpack("<ii", h[18:26])
            return abs(w), abs(ht)
        if h[:4] == b"RIFF" and h[8:12] == b"WEBP":
            return _webp(h)
        if h[:2] == b"\xff\xd8":
            return _jpeg(h)
        if len(h) > 2 and h[0:1] == b"P" and h[1:2] in b"123456":
            return _pnm(h)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _webp(h: bytes) -> tuple[int, int] | None:
    chunk = h[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(h[24:27], "little") + 1
        ht = int.from_bytes(h[27:30], "little") + 1
        return w, ht
    if chunk == b"VP8L":
        b = int.from_bytes(h[21:25], "little")
        return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, ht = struct.unpack("<HH", h[26:30])
        return w & 0x3FFF, ht & 0x3FFF
    return None


def _jpeg(h: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(h):
        if h[i] != 0xFF:
            return None
        marker = h[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", h[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            ht, w = struct.unpack(">HH", h[i + 5:i + 9])
            return w, ht
        i += 2 + length
    return None


def _pnm(h: bytes) -> tuple[int, int] | None:
    nums: list[int] = []
    for line in h[2:].split(b"\n"):
        line = line.split(b"#", 1)[0]
        for tok in line.split():
            nums.append(int(tok))
            if len(nums) == 2:
                return nums[0], nums[1]
    return None
