"""Errors of the exporter: subclasses of the runtime's :mod:`edge_ee.errors`, so both commands share one
hierarchy and one exit-code table (:class:`edge_ee.errors.ExitCode`, README "Exit codes"). The CLI prints
``message`` (and ``hint``) and exits with ``exit_code``."""

from __future__ import annotations

from edge_ee.errors import EdgeEEError, ExitCode
from edge_ee.errors import UsageError as RuntimeUsageError


class ExportError(EdgeEEError):
    """A failure the user can act on (bad split point, missing dataset, mismatch, existing output...)."""

    exit_code = ExitCode.INTERNAL
    kind = "error"


class UsageError(ExportError, RuntimeUsageError):
    """Bad arguments: unknown split point, unknown architecture, non-logit model output."""

    exit_code = ExitCode.USAGE


class DatasetError(ExportError):
    """A dataset path is missing or malformed, or a tool needed to build it (espeak-ng) is missing."""

    exit_code = ExitCode.DATASET
    kind = "dataset error"


class VerificationError(ExportError):
    """The exported ONNX graphs do not reproduce the PyTorch model within tolerance."""

    exit_code = ExitCode.VERIFICATION
    kind = "verification failed"


class ModelError(ExportError):
    """The given model cannot be used: not a single-input image classifier, a dynamic spatial size, operators
    the ONNX converter cannot handle, weights that do not fit the module, outputs that disagree with the original."""

    exit_code = ExitCode.MODEL
    kind = "model error"
