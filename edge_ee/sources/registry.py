"""The registry of ``--source`` kinds.

Every source module under ``edge_ee/sources/`` registers its spec prefixes next to its class with
:func:`register_source` (the opener is a ``Source`` subclass's ``from_spec`` classmethod or a function
``(arg, manifest, options) -> Source``). Spec parsing, the task a source feeds and the help texts are
built from this registry; the modules are imported on first use, so adding a source is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import UsageError

if TYPE_CHECKING:
    from ..core.manifest import Manifest
    from .base import Source

Opener = Callable[[str, "Manifest", dict], "Source"]
T = TypeVar("T")

IMAGE_TASK = "image_classification"
AUDIO_TASK = "keyword_spotting"


@dataclass(frozen=True)
class SourceKind:
    """One registered spec prefix. ``syntax``: how help texts show it (e.g. ``video:FILE``); ``task``: the
    task its frames feed (picks the default bundle), or a function of the spec's argument, or ``None``
    when it follows the bundle."""

    prefix: str
    opener: Opener
    help: str
    syntax: str
    task: str | Callable[[str], str | None] | None = None
    order: int = 100

    def task_for(self, arg: str) -> str | None:
        return self.task(arg) if callable(self.task) else self.task


_KINDS: dict[str, SourceKind] = {}
_loaded = False


def register_source(prefix: str, help: str, *, syntax: str | None = None,  # noqa: A002 - the help text
                    task: str | Callable[[str], str | None] | None = None, order: int = 100,
                    ) -> Callable[[T], T]:
    """Register ``--source PREFIX[:ARG]`` (or ``PREFIX://...``). Decorates a ``Source`` subclass (opened by
    its ``from_spec(arg, manifest, options)`` classmethod) or an opener function with that signature.
    ``order``: place in help texts (smaller first)."""

    def deco(target: T) -> T:
        opener = target.from_spec if isinstance(target, type) else target  # type: ignore[attr-defined]
        old = _KINDS.get(prefix)
        if old is not None and getattr(old.opener, "__qualname__", None) != getattr(opener, "__qualname__", None):
            raise ValueError(f"source prefix {prefix!r} registered twice")
        _KINDS[prefix] = SourceKind(prefix, opener, help, syntax or prefix, task, order)
        return target

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    from .. import sources as pkg

    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{pkg.__name__}.{m.name}")
    _loaded = True


def kinds() -> list[SourceKind]:
    """Every registered source kind, in help order."""
    _load_all()
    return sorted(_KINDS.values(), key=lambda k: (k.order, k.prefix))


def get(prefix: str) -> SourceKind | None:
    _load_all()
    return _KINDS.get(prefix)


def split_spec(spec: str) -> tuple[str, str]:
    """``"video:clip.mp4"`` -> ("video", "clip.mp4"); ``"rtsp://host/x"`` -> ("rtsp", "//host/x");
    a URL whose scheme is a registered prefix -> (scheme, the whole URL). Unknown: :class:`UsageError`."""
    _load_all()
    for prefix in sorted(_KINDS, key=len, reverse=True):
        if spec == prefix or spec.startswith(prefix + ":"):
            return prefix, spec[len(prefix) + 1:]
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        if scheme in _KINDS:
            return scheme, spec
    raise UsageError(f"unknown source {spec!r}", "sources: " + "; ".join(f"{k.prefix}: {k.help}" for k in kinds()))


def open_source(spec: str, manifest: Manifest, options: dict[str, Any] | None = None) -> Source:
    prefix, arg = split_spec(spec)
    return _KINDS[prefix].opener(arg, manifest, options or {})


def source_task(spec: str) -> str | None:
    """The task a source feeds (to pick the default bundle): ``keyword_spotting`` for audio sources,
    ``image_classification`` for image sources, None when it follows the bundle (synthetic, sample)."""
    try:
        prefix, arg = split_spec(spec)
    except UsageError:
        return None
    return _KINDS[prefix].task_for(arg)


def prefixes(task: str) -> frozenset[str]:
    """The prefixes whose sources always feed ``task``."""
    return frozenset(k.prefix for k in kinds() if k.task == task)


def sources_help() -> str:
    """The ``--source`` values for CLI help, generated from the registry."""
    return " | ".join(k.syntax for k in kinds())
