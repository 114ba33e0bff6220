"""Input sources, opened from a ``--source`` spec string.

Each source module registers its spec prefixes next to its class (:func:`register_source`); the accepted
specs are listed by :func:`sources_help` (the ``--source`` help of ``edge-ee run`` and ``profile``).
"""

from __future__ import annotations

from .base import Frame, Source
from .registry import (
    AUDIO_TASK,
    IMAGE_TASK,
    SourceKind,
    kinds,
    open_source,
    prefixes,
    register_source,
    source_task,
    sources_help,
    split_spec,
)

__all__ = ["AUDIO_TASK", "IMAGE_TASK", "Frame", "Source", "SourceKind", "kinds", "open_source", "prefixes",
           "register_source", "source_task", "sources_help", "split_spec"]
