"""The ``edge-ee`` command line.

Exit codes (see :class:`edge_ee.errors.ExitCode`): 0 ok, 1 internal error, 2 usage, 3 bad bundle,
4 source error, 5 runtime error, 6 output error, 7 device not found, 8 config error.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .. import __version__
from ..core.sessions import SessionConfig
from ..errors import EdgeEEError, UsageError

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    no_args_is_help=True,
    help="edge-ee: early-exit inference on edge devices. Exit codes: 0 ok, 2 usage, 3 bad bundle, "
    "4 source error, 5 runtime error, 6 output error, 7 device not found, 8 config error.",
)
F = TypeVar("F", bound=Callable[..., Any])


def _fail(e: EdgeEEError) -> None:
    typer.echo(f"edge-ee: {e.kind}: {e}", err=True)
    raise typer.Exit(int(e.exit_code))


def handle_errors(fn: F) -> F:
    """Turn EdgeEEError into one message on stderr and its exit code (no traceback); a reader that closed
    stdout (``edge-ee ... | head``) ends the command quietly with exit code 0."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeEEError as e:
            _fail(e)
        except BrokenPipeError:
            _stdout_closed()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edge-ee {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="edge-ee: %(levelname)s: %(message)s")


ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Bundle directory (default: the embedded one).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _session_config(providers: str | None, threads: int) -> SessionConfig:
    return SessionConfig(providers=[p.strip() for p in providers.split(",") if p.strip()] if providers else None,
                         intra_op_threads=threads)


def _check_finite(no_nan: dict[str, float | None], finite: dict[str, float | None]) -> None:
    """NaN is never a valid option value (every comparison with it is false); some options also need a
    finite one (an infinite rotation size or idle measurement)."""
    for name, v in {**no_nan, **finite}.items():
        if v is not None and (math.isnan(v) or (name in finite and math.isinf(v))):
            raise UsageError(f"{name} {v}: give a finite number")


def _nan_to_none(obj: Any) -> Any:
    """NaN/inf are not JSON: null instead (``--json`` output must parse everywhere)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj




def _stdout_closed() -> None:
    """The reader of stdout went away: point stdout at /dev/null so the interpreter's final flush does not
    fail again (and print a BrokenPipeError) on the way out."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


def main() -> None:
    try:
        app()
    except EdgeEEError as e:  # errors raised outside a command body
        typer.echo(f"edge-ee: {e.kind}: {e}", err=True)
        sys.exit(int(e.exit_code))
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_closed()
