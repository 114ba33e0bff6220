"""The device: hardware and software facts (``facts.py``: profile keys, telemetry) and the ``edge-ee doctor``
report (``doctor.py``). Every file is read under the sysfs root (``$EDGE_EE_SYSFS_ROOT``), every command with
a timeout, every probe wrapped."""

from __future__ import annotations

from .doctor import doctor_report, format_doctor, parse_arecord_l, parse_cv2_build_info
from .facts import (
    CPU_UNKNOWN,
    board_model,
    core_counts,
    cpu_model,
    decode_throttled,
    device_facts,
    device_identity,
    device_state,
    engine_session_facts,
    onnxruntime_info,
    power_mode,
    python_version,
    temperatures,
    throttling,
)

__all__ = ["CPU_UNKNOWN", "board_model", "core_counts", "cpu_model", "decode_throttled", "device_facts",
           "device_identity", "device_state", "doctor_report", "engine_session_facts", "format_doctor",
           "onnxruntime_info", "parse_arecord_l", "parse_cv2_build_info", "power_mode", "python_version",
           "temperatures", "throttling"]
