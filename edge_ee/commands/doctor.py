"""``edge-ee doctor``: this device's facts."""

from __future__ import annotations

import json

import typer

from .app import JsonOpt, handle_errors


@handle_errors
def doctor(as_json: JsonOpt = False) -> None:
    """This device: board, CPU, power sensors (rail, units, readable or why not), cameras, audio, onnxruntime."""
    from ..device import doctor_report, format_doctor

    r = doctor_report()
    typer.echo(json.dumps(r, indent=2, default=str) if as_json else format_doctor(r))
