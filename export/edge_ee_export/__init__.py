"""edge-ee-export: attach early exits to PyTorch models, train and calibrate them, and write
segmented ONNX bundles for the ``edge-ee`` runtime."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
