"""edge-ee: early-exit inference runtime for edge devices (torch-free)."""

from __future__ import annotations

__version__ = "0.1.0"

from .bundle import Bundle, load_bundle  # noqa: E402
from .engine import Engine, Result  # noqa: E402
from .errors import EdgeEEError, ExitCode  # noqa: E402

__all__ = ["Bundle", "EdgeEEError", "Engine", "ExitCode", "Result", "__version__", "load_bundle"]
