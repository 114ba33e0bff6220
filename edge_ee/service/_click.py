"""The click that typer uses: recent typer vendors it as ``typer._click``, older typer depends on click.

Exposes ``Context``, ``ClickException`` and ``get_current_context`` from whichever is in use.
"""

from __future__ import annotations

from typing import Any

try:  # typer >= 0.2x vendors click
    from typer._click import ClickException, Context  # type: ignore[attr-defined]
    from typer._click.globals import get_current_context  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older typer depends on click
    from click import ClickException, Context, get_current_context  # type: ignore[no-redef]


def current_context() -> Any | None:
    return get_current_context(silent=True)


__all__ = ["ClickException", "Context", "current_context"]
