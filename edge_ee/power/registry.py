"""The registry of power back ends.

A back end is a :class:`~edge_ee.power.base.PowerSource` subclass in its own module under
``edge_ee/power/backends/``, decorated with :func:`register_backend` (the package imports every module
in that folder, so a new file is all it takes). Discovery's order, ``--power-source`` parsing and every
help text are built from this registry and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .base import Candidate, PowerSource
    from .board import DevicePowerModel

S = TypeVar("S", bound="type[PowerSource]")


@dataclass(frozen=True)
class Backend:
    """One registered back end. ``order``: place in the automatic choice (smaller first); ``detail``: the
    name of the optional ``KIND:DETAIL`` part in help texts (``None``: the kind takes none); ``absent``:
    what is missing when the back end finds no sensor (for the discovery warning and ``edge-ee doctor``)."""

    kind: str
    cls: type[PowerSource]
    order: int
    absent: str
    detail: str | None = None

    @property
    def syntax(self) -> str:
        """``kind`` or ``kind[:DETAIL]``, as the help texts show it."""
        return self.kind if self.detail is None else f"{self.kind}[:{self.detail}]"

    def candidates(self, detail: str | None, model: DevicePowerModel | None) -> list[Candidate]:
        return self.cls.candidates(detail, model)

    def check_detail(self, detail: str) -> None:
        self.cls.check_detail(detail)


_BACKENDS: dict[str, Backend] = {}


def register_backend(*, order: int, absent: str, detail: str | None = None) -> Callable[[S], S]:
    """Class decorator: register a :class:`PowerSource` subclass under its ``kind``.

    The class provides ``candidates(detail, model)`` (the sensors of its kind present on this machine)
    and may override ``check_detail(detail)`` (raise ``ValueError`` for a bad ``KIND:DETAIL``)."""

    def deco(cls: S) -> S:
        kind = cls.kind
        if kind in _BACKENDS and _BACKENDS[kind].cls is not cls:
            raise ValueError(f"power back end {kind!r} registered twice "
                             f"({_BACKENDS[kind].cls.__qualname__}, {cls.__qualname__})")
        _BACKENDS[kind] = Backend(kind=kind, cls=cls, order=order, absent=absent, detail=detail)
        return cls

    return deco


def all_backends() -> list[Backend]:
    """Every registered back end, in the automatic order."""
    from . import backends as _pkg  # noqa: F401 - importing the package registers every back end

    return sorted(_BACKENDS.values(), key=lambda b: (b.order, b.kind))


def get(kind: str) -> Backend | None:
    return {b.kind: b for b in all_backends()}.get(kind)
