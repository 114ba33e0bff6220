"""The ``edge-ee`` command line: the typer app (:mod:`.app`) and one module per command.

Exit codes (see :class:`edge_ee.errors.ExitCode`): 0 ok, 1 internal error, 2 usage, 3 bad bundle,
4 source error, 5 runtime error, 6 output error, 7 device not found, 8 config error.
"""

from __future__ import annotations

from typing import Any

import typer

from ..errors import ExitCode
from . import doctor, info, profile, run, validate
from .app import app, main

# Registered here, in the order ``--help`` lists them.
for _command in (info.info, validate.validate, run.run, profile.profile, doctor.doctor):
    app.command()(_command)


def run_command() -> Any:
    """The click command behind ``edge-ee run`` (its options are the config file's keys)."""
    group = typer.main.get_command(app)
    return group.commands["run"]  # type: ignore[attr-defined]


def _add_service_commands() -> None:
    from ..service.install import service_app

    app.add_typer(service_app, name="service")


_add_service_commands()

__all__ = ["app", "main", "run_command", "ExitCode"]
