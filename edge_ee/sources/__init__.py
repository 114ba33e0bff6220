"""Input sources, opened from a ``--source`` spec string.

=====================  ===========================================
spec                   source
=====================  ===========================================
``synthetic``          random frames of the bundle's input size
``images:DIR_OR_GLOB`` still images (ground truth from folder names)
``video:FILE``         a video file
``sample``             the labelled sample shipped with edge-ee for the bundle's task
``camera[:N|:DEV]``    a USB/V4L2 camera (newest frame, reconnects); ``camera:FILE`` replays a video live
``csi[:N]``            a CSI camera (picamera2 on a Raspberry Pi, nvarguscamerasrc on a Jetson)
``gst:PIPELINE``       a GStreamer pipeline ending in appsink (cv2 built with GStreamer)
``rtsp://...``         a network camera
``mic[:DEVICE]``       a microphone (arecord / sounddevice)
``wav:FILE``           a 16-bit PCM WAV file
``-``                  raw 16-bit little-endian mono PCM on stdin (rate: ``--audio-rate``)
=====================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..core.manifest import Manifest
from ..errors import UsageError
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
        seed = -1
    if not 0 <= seed < 2**63:
        raise UsageError(f"synthetic:{arg}: the argument must be an integer seed from 0 to 2**63-1") from None
    return SyntheticSource(m.input, seed=seed)


@register("images", "still images, images:DIR or images:'GLOB'")
def _images(arg: str, m: Manifest, opts: dict) -> Source:
    from .images import ImageSource

    if not arg:
        raise UsageError("images: needs a directory or glob, e.g. images:photos/ or images:'shots/*.png'")
    return ImageSource(arg, labels=m.labels, loop=bool(opts.get("loop")), strict=bool(opts.get("strict")))


@register("video", "a video file, video:FILE")
def _video(arg: str, m: Manifest, opts: dict) -> Source:
    from .video import VideoSource

    if not arg:
        raise UsageError("video: needs a file, e.g. video:clip.mp4")
    return VideoSource(arg, loop=bool(opts.get("loop")))


@register("sample", "the small labelled sample shipped with edge-ee for the bundle's task (Fashion-MNIST test images "
                    "/ spoken keywords); sample:kws picks the keyword-spotting bundle and sample")
def _sample(arg: str, m: Manifest, opts: dict) -> Source:
    if arg and arg.lower() not in SAMPLE_TASKS:
        raise UsageError(f"sample:{arg}: unknown sample", "use sample, sample:kws or sample:image")
    d = SAMPLES_DIR / m.task
    if m.task == "image_classification" and d.is_dir():
        return _images(str(d), m, opts)
    wavs = sorted(d.glob("*.wav")) if d.is_dir() else []
    if wavs and "wav" in _OPENERS:
        return _OPENERS["wav"](str(wavs[0]), m, opts)
    raise UsageError(f"no shipped sample for task {m.task!r} in this installation", "use another --source")


@register("camera", "a camera: camera (= camera:0), camera:N, camera:/dev/videoN; camera:FILE replays a video live")
def _camera(arg: str, m: Manifest, opts: dict) -> Source:
    from .camera import open_camera

    return open_camera(arg, opts)


@register("csi", "a CSI camera, csi[:N] (picamera2 on a Raspberry Pi, nvarguscamerasrc on a Jetson)")
def _csi(arg: str, m: Manifest, opts: dict) -> Source:
    from .camera import open_csi

    return open_csi(arg, opts)


@register("gst", "a GStreamer pipeline ending in appsink, gst:'PIPELINE' (needs cv2 with GStreamer)")
def _gst(arg: str, m: Manifest, opts: dict) -> Source:
    from .camera import open_gst

    return open_gst(arg, opts)


@register("rtsp", "a network camera, rtsp://[user:pass@]host/path")
def _rtsp(arg: str, m: Manifest, opts: dict) -> Source:
    from .camera import open_stream_url

    return open_stream_url(arg if "://" in arg else "rtsp:" + arg, opts)


@register("mic", "a microphone, mic or mic:ALSA_DEVICE (e.g. mic:plughw:1,0); arecord or sounddevice")
def _mic(arg: str, m: Manifest, opts: dict) -> Source:
    from .audio import open_mic

    return open_mic(arg, m, opts)


@register("wav", "a 16-bit PCM WAV file, wav:FILE (resampled to the model's rate)")
def _wav(arg: str, m: Manifest, opts: dict) -> Source:
    from .audio import open_wav

    return open_wav(arg, m, opts)


@register("-", "raw 16-bit little-endian mono PCM on stdin (rate: --audio-rate)")
def _stdin(arg: str, m: Manifest, opts: dict) -> Source:
    from .audio import open_stdin

    return open_stdin(arg, m, opts)


AUDIO_PREFIXES = frozenset({"mic", "wav", "-"})
SAMPLE_TASKS = {"kws": "keyword_spotting", "keyword_spotting": "keyword_spotting", "audio": "keyword_spotting",
                "image": "image_classification", "image_classification": "image_classification"}
IMAGE_PREFIXES = frozenset({"camera", "csi", "gst", "rtsp", "images", "video"})


def source_task(spec: str) -> str | None:
    """The task a source feeds (to pick the default bundle): ``keyword_spotting`` for audio sources,
    ``image_classification`` for image sources, None when it follows the bundle (synthetic, sample)."""
    try:
        prefix, arg = split_spec(spec)
    except UsageError:
        return None
    if prefix == "sample" and arg:
        return SAMPLE_TASKS.get(arg.lower())
    if prefix in AUDIO_PREFIXES:
        return "keyword_spotting"
    if prefix in IMAGE_PREFIXES:
        return "image_classification"
    return None


__all__ = ["Frame", "Source", "open_source", "register", "source_task", "split_spec"]
