"""edge-ee: early-exit inference runtime for edge devices (torch-free)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Imported on first use, so ``edge-ee`` can install its SIGTERM handler (edge_ee.entry) before
# onnxruntime and numpy load.
_LAZY = {"Bundle": "core.bundle", "load_bundle": "core.bundle", "Engine": "core.engine", "Result": "core.engine",
         "EdgeEEError": "errors", "ExitCode": "errors"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Bundle", "EdgeEEError", "Engine", "ExitCode", "Result", "__version__", "load_bundle"]
