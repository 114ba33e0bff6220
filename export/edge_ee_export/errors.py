"""Errors of the exporter; the CLI prints ``message`` (and ``hint``) and exits with ``exit_code``."""

from __future__ import annotations


class ExportError(Exception):
    """A failure the user can act on (bad split point, missing dataset, mismatch...)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(ExportError):
    """Bad arguments: unknown split point, unknown architecture, non-logit model output."""

    exit_code = 2


class DatasetError(ExportError):
    """A dataset path is missing or malformed, or a tool needed to build it (espeak-ng) is missing."""

    exit_code = 3


class VerificationError(ExportError):
    """The exported ONNX graphs do not reproduce the PyTorch model within tolerance."""

    exit_code = 4


class ModelError(ExportError):
    """The given model cannot be used: not a single-input image classifier, a dynamic spatial size, operators
    the ONNX converter cannot handle, weights that do not fit the module, outputs that disagree with the original."""

    exit_code = 5
