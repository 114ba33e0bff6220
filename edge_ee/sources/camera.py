"""Live cameras: ``camera[:N|:/dev/videoN|:FILE]``, ``csi[:N]``, ``gst:PIPELINE``, ``rtsp://...``.

* USB (UVC) cameras through OpenCV's V4L2 backend with ``CAP_PROP_BUFFERSIZE=1``;
* Jetson CSI cameras through GStreamer (``nvarguscamerasrc``), which needs a cv2 built with GStreamer
  (JetPack's system OpenCV; pip wheels have none - detected and reported);
* Raspberry Pi CSI cameras through picamera2 (libcamera) when it is importable (never a hard dependency);
* ``camera:FILE`` replays a video file in real time at its frame rate, through the same grabber:
  a camera stand-in for tests and benchmarks.

Frames come from a :class:`~edge_ee.sources.grabber.FrameGrabber` (newest frame only, capture
timestamp, dropped-frame counter, reconnect with back-off).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DeviceNotFoundError, SourceError, UsageError
from ..pipeline.cv import require_cv2
from .base import Frame, Source
from .grabber import Capture, EndOfStream, FrameGrabber
from .registry import IMAGE_TASK, register_source

if TYPE_CHECKING:
    from ..core.manifest import Manifest

log = logging.getLogger(__name__)
DEFAULT_RECONNECT_TIMEOUT_S = 30.0
_NO_CAMERA_HINT = ("connect a camera (check `ls /dev/video*` or `v4l2-ctl --list-devices`); CSI cameras: "
                   "--source csi; or run on a recorded file: --source video:FILE")


def gstreamer_support(cv2: ModuleType) -> bool | None:
    """True/False from ``cv2.getBuildInformation()``'s "GStreamer:" line, None when it cannot tell."""
    try:
        info = cv2.getBuildInformation()
    except Exception:  # noqa: BLE001
        return None
    m = re.search(r"^\s*GStreamer:\s*(\S+)", info, re.MULTILINE)
    return None if m is None else m.group(1).upper().startswith("YES")


def is_jetson() -> bool:
    """A Jetson: ``/etc/nv_tegra_release`` exists or ``/proc/device-tree/compatible`` names a tegra SoC.

    Both paths are resolved under ``$EDGE_EE_SYSFS_ROOT`` (default ``/``), like every sysfs/procfs read."""
    from ..power import sysfs  # noqa: PLC0415

    if sysfs.resolve("/etc/nv_tegra_release").exists():
        return True
    try:
        return b"tegra" in sysfs.resolve("/proc/device-tree/compatible").read_bytes()
    except OSError:
        return False


def has_picamera2() -> bool:
    try:
        import picamera2  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001 - ImportError or a broken libcamera install
        return False
    return True


def jetson_csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=1")


def _require_gstreamer(cv2: ModuleType, what: str) -> None:
    if gstreamer_support(cv2) is False:
        raise SourceError(
            f"{what}: this OpenCV (cv2 {cv2.__version__} from {Path(cv2.__file__).parent}) was built without "
            "GStreamer",
            "on a Jetson use JetPack's system OpenCV: create the venv with --system-site-packages and "
            "`pip uninstall opencv-python opencv-python-headless` inside it (`edge-ee doctor` shows which cv2 is used)",
        )


class PacedFileCapture:
    """A video file delivered in real time at ``fps``: a camera stand-in (``camera:FILE``)."""

    def __init__(self, cv2: ModuleType, path: str, fps: float | None = None, loop: bool = False) -> None:
        self._cv2 = cv2
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise SourceError(f"camera:{path}: OpenCV cannot open this video file",
                              "convert it, e.g. `ffmpeg -i IN -c:v mjpeg OUT.avi`")
        self.fps = float(fps or self.cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.loop = loop
        self._next = time.perf_counter()

    def read(self) -> tuple[bool, np.ndarray | None]:
        wait = self._next - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self._next = max(self._next + 1.0 / self.fps, time.perf_counter() - 1.0 / self.fps)
        ok, img = self.cap.read()
        if not ok and self.loop:
            self.cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
        if not ok:
            raise EndOfStream
        return ok, img

    def release(self) -> None:
        self.cap.release()


class Picamera2Capture:
    """Raspberry Pi CSI camera through picamera2 (libcamera). ``RGB888`` is B,G,R in memory = OpenCV BGR."""

    def __init__(self, index: int = 0, size: tuple[int, int] = (640, 480)) -> None:
        from picamera2 import Picamera2  # noqa: PLC0415 - optional

        try:
            self.cam = Picamera2(index)
            self.cam.configure(self.cam.create_video_configuration(main={"format": "RGB888", "size": size},
                                                                   buffer_count=2))
            self.cam.start()
        except Exception as e:  # noqa: BLE001 - IndexError / RuntimeError from libcamera
            raise DeviceNotFoundError(f"csi:{index}: picamera2 cannot open the camera ({e})",
                                      "check `rpicam-hello --list-cameras`; " + _NO_CAMERA_HINT) from None

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            return True, self.cam.capture_array("main")
        except Exception:  # noqa: BLE001
            return False, None

    def release(self) -> None:
        try:
            self.cam.stop()
            self.cam.close()
        except Exception:  # noqa: BLE001
            pass


class CameraSource(Source):
    """Frames from a :class:`FrameGrabber` over a capture ``opener``."""

    kind = "image"
    live = True

    def __init__(self, opener: Callable[[], Capture | None], description: str, *,
                 reconnect_timeout_s: float = DEFAULT_RECONNECT_TIMEOUT_S, not_found: type[SourceError] =
                 DeviceNotFoundError, hint: str = _NO_CAMERA_HINT, backoff_s: tuple[float, float] = (0.1, 2.0),
                 failed_reads_before_reconnect: int = 5) -> None:
        self.description = description
        cap = opener()
        if cap is None:
            raise not_found(f"{description}: cannot open the capture device", hint)
        self.grabber = FrameGrabber(opener, description, reconnect_timeout_s=reconnect_timeout_s, capture=cap,
                                    backoff_s=backoff_s, failed_reads_before_reconnect=failed_reads_before_reconnect,
                                    hint=hint).start()
        self.index = 0

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self.grabber.dropped

    def stream_stats(self) -> dict[str, Any]:
        g = self.grabber
        return {"dropped_frames": g.dropped, "captured_frames": g.delivered, "empty_frames": g.empty_frames,
                "reconnects": g.reconnects, "capture_gaps": g.gaps, "capture_gap_s": round(g.gap_s, 3)}

    def read(self) -> Frame | None:
        g = self.grabber.latest()
        if g is None:
            return None
        f = Frame(self.index, g.image, t_capture=g.t_capture,
                  wall_time=time.time() - (time.perf_counter() - g.t_capture), meta={"capture_seq": g.seq})
        self.index += 1
        return f

    def interrupt(self) -> None:
        """Called on a stop request (signal handler): a read() waiting for a frame returns None."""
        self.grabber.interrupt()

    def close(self) -> None:
        self.grabber.stop()


# ------------------------------------------------------------------ openers for the registry
def _timeout(opts: dict) -> float:
    v = opts.get("reconnect_timeout_s")
    return DEFAULT_RECONNECT_TIMEOUT_S if v is None else float(v)


def open_camera(arg: str, opts: dict) -> CameraSource:
    """``camera`` / ``camera:N`` / ``camera:/dev/videoN`` (V4L2) or ``camera:FILE`` (real-time replay)."""
    cv2 = require_cv2("the camera source")
    arg = arg.strip()
    if arg and not arg.isdigit() and Path(arg).is_file():
        path = arg
        fps = opts.get("camera_fps")
        return CameraSource(lambda: PacedFileCapture(cv2, path, fps=fps, loop=bool(opts.get("loop"))),
                            f"camera:{path} (file replayed in real time)", reconnect_timeout_s=_timeout(opts),
                            not_found=SourceError)
    if not arg or arg.isdigit():
        index = int(arg or 0)
        dev: int | str = index
        node = f"/dev/video{index}"
    elif arg.startswith("/dev/"):
        dev = node = arg
    else:
        raise UsageError(f"camera:{arg}: expected a camera index (camera:0), a device (camera:/dev/video0) "
                         "or a video file to replay")
    spec = f"camera:{arg}" if arg else "camera"
    if os.name == "posix" and Path("/dev").is_dir() and not Path(node).exists():
        others = sorted(str(p) for p in Path("/dev").glob("video*"))
        raise DeviceNotFoundError(
            f"no camera: {node} does not exist (--source {spec})"
            + (f"; video devices present: {', '.join(others)}" if others else "; no /dev/video* devices at all"),
            _NO_CAMERA_HINT,
        )

    def opener() -> Capture | None:
        return _latest_only(cv2, dev, cv2.CAP_V4L2) if Path(node).exists() else None

    return CameraSource(opener, f"{spec} ({node}, V4L2)", reconnect_timeout_s=_timeout(opts),
                        hint=f"{node} exists but cannot be opened: check permissions (video group) and that no "
                             "other program uses it; " + _NO_CAMERA_HINT)


def open_gst(pipeline: str, opts: dict, what: str | None = None) -> CameraSource:
    cv2 = require_cv2("the GStreamer source")
    what = what or f"gst:{pipeline[:60]}"
    if not pipeline.strip():
        raise UsageError("gst: needs a pipeline ending in appsink, e.g. gst:'v4l2src ! videoconvert ! appsink'")
    _require_gstreamer(cv2, what)

    def opener() -> Capture | None:
        cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    return CameraSource(opener, what, reconnect_timeout_s=_timeout(opts), not_found=SourceError,
                        hint="the GStreamer pipeline failed to open: try it with `gst-launch-1.0 PIPELINE` "
                             "(with fakesink instead of appsink); it must end in appsink and produce BGR frames")


def open_csi(arg: str, opts: dict) -> CameraSource:
    index = int(arg) if arg.isdigit() else 0
    if arg and not arg.isdigit():
        raise UsageError(f"csi:{arg}: expected a sensor index, e.g. csi:0")
    if has_picamera2():
        return CameraSource(lambda: Picamera2Capture(index), f"csi:{index} (picamera2)",
                            reconnect_timeout_s=_timeout(opts))
    if is_jetson():
        return open_gst(jetson_csi_pipeline(index), opts, what=f"csi:{index} (Jetson nvarguscamerasrc)")
    raise DeviceNotFoundError(
        f"csi:{index}: no CSI camera stack here: picamera2 is not importable and this is not a Jetson",
        "Raspberry Pi: `sudo apt install python3-picamera2` and a venv with --system-site-packages; USB cameras: "
        "--source camera; or run on a file: --source video:FILE",
    )


def _latest_only(cv2: Any, target: int | str, api: int) -> Capture | None:
    """Open a capture with a one-frame buffer (V4L2 honours it), or None if it does not open."""
    cap = cv2.VideoCapture(target, api)
    if not cap.isOpened():
        cap.release()
        return None
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def open_stream_url(url: str, opts: dict) -> CameraSource:
    cv2 = require_cv2("the network stream source")

    def opener() -> Capture | None:
        return _latest_only(cv2, url, cv2.CAP_FFMPEG)

    shown = re.sub(r"//[^@/]*@", "//***@", url)  # never print credentials
    return CameraSource(opener, shown, reconnect_timeout_s=_timeout(opts), not_found=SourceError,
                        hint="check the URL, credentials and that the camera is reachable "
                             "(e.g. `ffprobe URL`); or use --source video:FILE")


@register_source("camera", "a camera: camera (= camera:0), camera:N, camera:/dev/videoN; camera:FILE replays a "
                 "video live", syntax="camera[:N|:/dev/videoN]", task=IMAGE_TASK, order=50)
def _camera_spec(arg: str, m: Manifest, opts: dict) -> CameraSource:
    return open_camera(arg, opts)


@register_source("csi", "a CSI camera, csi[:N] (picamera2 on a Raspberry Pi, nvarguscamerasrc on a Jetson)",
                 syntax="csi[:N]", task=IMAGE_TASK, order=60)
def _csi_spec(arg: str, m: Manifest, opts: dict) -> CameraSource:
    return open_csi(arg, opts)


@register_source("gst", "a GStreamer pipeline ending in appsink, gst:'PIPELINE' (needs cv2 with GStreamer)",
                 syntax="gst:PIPELINE", task=IMAGE_TASK, order=70)
def _gst_spec(arg: str, m: Manifest, opts: dict) -> CameraSource:
    return open_gst(arg, opts)


@register_source("rtsp", "a network camera, rtsp://[user:pass@]host/path", syntax="rtsp://URL", task=IMAGE_TASK,
                 order=80)
def _rtsp_spec(arg: str, m: Manifest, opts: dict) -> CameraSource:
    return open_stream_url(arg if "://" in arg else "rtsp:" + arg, opts)

