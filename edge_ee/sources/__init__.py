"""Input sources, opened from a ``--source`` spec string.

=====================  ===========================================
spec                   source
=====================  ===========================================
``synthetic``          random frames of the bundle's input size
``images:DIR_OR_GLOB`` still images (ground truth from folder names)
``video:FILE``         a video file
``sample``             the labelled sample shipped with edge-ee for the bundle's task
=====================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError
from ..manifest import Manifest
from .base import Frame, Source

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
Opener = Callable[[str, Manifest, dict], Source]
_OPENERS: dict[str, Opener] = {}
_HELP: dict[str, str] = {}


def register(prefix: str, help_text: str) -> Callable[[Opener], Opener]:
    def deco(fn: Opener) -> Opener:
        _OPENERS[prefix] = fn
        _HELP[prefix] = help_text
        return fn
    return deco


def split_spec(spec: str) -> tuple[str, str]:
    for prefix in sorted(_OPENERS, key=len, reverse=True):
        if spec == prefix or spec.startswith(prefix + ":"):
            return prefix, spec[len(prefix) + 1:]
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        if scheme in _OPENERS:
            return scheme, spec
    raise UsageError(
        f"unknown source {spec!r}",
        "sources: " + "; ".join(f"{k}: {v}" for k, v in _HELP.items()),
    )


def open_source(spec: str, manifest: Manifest, options: dict | None = None) -> Source:
    prefix, arg = split_spec(spec)
    return _OPENERS[prefix](arg, manifest, options or {})


@register("synthetic", "random frames of the model's input size (synthetic or synthetic:SEED)")
def _synthetic(arg: str, m: Manifest, opts: dict) -> Source:
    from .synthetic import SyntheticSource

    try:
        seed = int(arg) if arg else 0
    except ValueError:
        raise UsageError(f"synthetic:{arg}: the argument must be an integer seed") from None
    return SyntheticSource(m.input, seed=seed)


@register("images", "still images, images:DIR or images:'GLOB'")
def _images(arg: str, m: Manifest, opts: dict) -> Source:
    from .images import ImageSource

    if not arg:
        raise UsageError("images: needs a directory or glob, e.g. images:photos/ or images:'shots/*.png'")
    return ImageSource(arg, labels=m.labels, loop=bool(opts.get("loop")))


@register("video", "a video file, video:FILE")
def _video(arg: str, m: Manifest, opts: dict) -> Source:
    from .video import VideoSource

    if not arg:
        raise UsageError("video: needs a file, e.g. video:clip.mp4")
    return VideoSource(arg, loop=bool(opts.get("loop")))


@register("sample", "the small labelled sample shipped with edge-ee (Fashion-MNIST test images / spoken keywords)")
def _sample(arg: str, m: Manifest, opts: dict) -> Source:
    d = SAMPLES_DIR / m.task
    if m.task == "image_classification" and d.is_dir():
        return _images(str(d), m, opts)
    wavs = sorted(d.glob("*.wav")) if d.is_dir() else []
    if wavs and "wav" in _OPENERS:
        return _OPENERS["wav"](str(wavs[0]), m, opts)
    raise UsageError(f"no shipped sample for task {m.task!r} in this installation", "use another --source")


__all__ = ["Frame", "Source", "open_source", "register", "split_spec"]
