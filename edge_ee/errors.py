"""Error types and the process exit codes they map to.

Every failure a user can cause (bad bundle, missing camera, full disk...) raises a subclass of
:class:`EdgeEEError`. The CLI turns it into one clear message and the exit code below; it never
shows a traceback for these.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the ``edge-ee`` command (documented in README.md)."""

    OK = 0
    INTERNAL = 1  # a bug: unexpected exception (traceback shown)
    USAGE = 2  # bad command line or option value
    BUNDLE = 3  # bundle missing, corrupt, tampered or inconsistent
    SOURCE = 4  # input source cannot be opened or read, or delivers bad data
    RUNTIME = 5  # inference failed (onnxruntime error, wrong shape at run time)
    OUTPUT = 6  # telemetry/profile/log cannot be written (permission, full disk)
    DEVICE = 7  # a capture device (camera, microphone) does not exist / never came up
    CONFIG = 8  # configuration or profile file invalid
    DATASET = 9  # edge-ee-export: training/calibration data missing or not fitting the model, espeak-ng missing
    VERIFICATION = 10  # edge-ee-export: the exported ONNX does not reproduce the PyTorch (or original ONNX) model
    MODEL = 11  # edge-ee-export: the given model cannot be used (inputs, operators, weights, outputs)


class EdgeEEError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` what to do about it."""

    exit_code: ExitCode = ExitCode.INTERNAL
    kind = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(EdgeEEError):
    exit_code = ExitCode.USAGE
    kind = "usage error"


class BundleError(EdgeEEError):
    exit_code = ExitCode.BUNDLE
    kind = "bad bundle"


class SourceError(EdgeEEError):
    exit_code = ExitCode.SOURCE
    kind = "source error"


class DeviceNotFoundError(SourceError):
    exit_code = ExitCode.DEVICE
    kind = "device not found"


class InferenceError(EdgeEEError):
    exit_code = ExitCode.RUNTIME
    kind = "runtime error"


class OutputError(EdgeEEError):
    exit_code = ExitCode.OUTPUT
    kind = "output error"


class ConfigError(EdgeEEError):
    exit_code = ExitCode.CONFIG
    kind = "config error"
