"""Optional OpenCV import: pip's opencv-python-headless or the system cv2 (Jetson, with GStreamer)."""

from __future__ import annotations

from types import ModuleType

from ..errors import SourceError

_HINT = (
    "install OpenCV: `pip install 'edge-ee[opencv]'`, or on Jetson/Raspberry Pi use the system build "
    "(`sudo apt install python3-opencv`, venv created with --system-site-packages)"
)


def require_cv2(purpose: str) -> ModuleType:
    try:
        import cv2
    except ImportError as e:
        raise SourceError(f"{purpose} needs OpenCV (cv2), which is not importable: {e}", _HINT) from e
    return cv2

