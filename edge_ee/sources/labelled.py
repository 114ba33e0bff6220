"""Ground truth for calibration streams: ``edge-ee profile --labels FILE`` and the ``--labels source`` check.

A label file is UTF-8 text with one class label per line, in frame order: the label of the first frame
the source delivers, then the second, and so on. Blank lines and ``#`` comments (whole lines, or after
whitespace at the end of a line) are ignored. A label is a class name from the bundle's label list
(exactly, or ignoring case when that is unambiguous) or its integer index (``0`` is the first class);
a name wins over an index when a class is itself called ``"3"``. :func:`read_label_file` checks every
line before anything runs, so a typo is a usage error naming the line, not a failed profiling run.

:class:`LabelledSource` wraps any source and sets each frame's ``meta["truth"]`` to the class *name*
(what :mod:`edge_ee.profiling.profile` compares with the bundle's labels); it ends the stream when the file's
labels run out. :func:`peek` reads the first frame ahead (to check a source has ground truth) and
hands it back as the first frame of the returned source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import Frame, Source, SourceKind

_INLINE_COMMENT = re.compile(r"\s+#.*$")
_FORMAT_HINT = ("one class label per line, in frame order: a name from the bundle's labels or its index "
                "(0 = first class); blank lines and # comments are ignored")


@dataclass(frozen=True)
class LabelFile:
    """Labels read from a file: class names in frame order and the line each came from."""

    path: Path
    names: list[str]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.names)


def _label_list(labels: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(f"{i}={name}" for i, name in enumerate(labels[:limit]))
    return shown + (f", ... ({len(labels)} classes)" if len(labels) > limit else "")


def parse_labels(text: str, labels: Sequence[str], path: Path | str = "<labels>") -> LabelFile:
    """Parse a label file's text against the bundle's ``labels``; raises UsageError naming bad lines."""
    exact = {name: name for name in labels}
    folded: dict[str, list[str]] = {}
    for name in labels:
        folded.setdefault(name.casefold(), []).append(name)
    names: list[str] = []
    lines: list[int] = []
    bad: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        s = _INLINE_COMMENT.sub("", s).strip()
        name = exact.get(s)
        if name is None and len(folded.get(s.casefold(), [])) == 1:
            name = folded[s.casefold()][0]
        if name is None and re.fullmatch(r"[+]?\d+", s):
            idx = int(s)
            if idx < len(labels):
                name = labels[idx]
            else:
                bad.append(f"line {lineno}: index {idx} is out of range (0..{len(labels) - 1})")
                continue
        if name is None:
            bad.append(f"line {lineno}: {s!r} is not one of the bundle's labels")
            continue
        names.append(name)
        lines.append(lineno)
    if bad:
        more = f" (and {len(bad) - 3} more lines)" if len(bad) > 3 else ""
        raise UsageError(f"--labels {path}: " + "; ".join(bad[:3]) + more,
                         f"the bundle's labels are {_label_list(labels)}; {_FORMAT_HINT}")
    if not names:
        raise UsageError(f"--labels {path}: the file has no labels", _FORMAT_HINT)
    return LabelFile(Path(path), names, lines)


def read_label_file(path: Path, labels: Sequence[str]) -> LabelFile:
    """Read and check a label file (see the module docstring); every problem is a UsageError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--labels {path}: no such file",
                         "give auto, source, none, or a text file with " + _FORMAT_HINT) from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--labels {path}: not UTF-8 text ({e.reason} at byte {e.start})", _FORMAT_HINT) from None
    except OSError as e:
        raise UsageError(f"--labels {path}: cannot read it: {e.strerror or e}",
                         "check the path and its permissions") from None
    return parse_labels(text, labels, path)


class _Wrapper(Source):
    """Forwards the source attributes the runner and profiler read to the wrapped source."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner

    @property
    def kind(self) -> SourceKind:  # type: ignore[override]
        return self.inner.kind

    @property
    def live(self) -> bool:  # type: ignore[override]
        return self.inner.live

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self.inner.dropped

    @property
    def description(self) -> str:  # type: ignore[override]
        return self.inner.description

    @property
    def truth(self) -> list[dict[str, Any]] | None:  # type: ignore[override]
        return self.inner.truth

    def interrupt(self) -> None:
        self.inner.interrupt()

    def stream_stats(self) -> dict[str, Any]:
        return self.inner.stream_stats()

    def close(self) -> None:
        self.inner.close()


class LabelledSource(_Wrapper):
    """``inner`` with ``meta["truth"]`` of frame i set from ``labels.names[i]``; ends with the labels."""

    def __init__(self, inner: Source, labels: LabelFile) -> None:
        super().__init__(inner)
        self.labels = labels
        self.delivered = 0
        self.labels_exhausted = False  # the stream stopped because the file had no more labels
        self.source_ended = False  # the wrapped source ended first

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"{self.inner.description}, labels from {self.labels.path}"

    def read(self) -> Frame | None:
        if self.delivered >= len(self.labels):
            self.labels_exhausted = True
            return None  # do not read (and waste) a frame nobody can label
        fr = self.inner.read()
        if fr is None:
            self.source_ended = True
            return None
        fr.meta["truth"] = self.labels.names[self.delivered]
        fr.meta["truth_line"] = self.labels.lines[self.delivered]
        self.delivered += 1
        return fr


class PeekedSource(_Wrapper):
    """``inner`` whose first frame was read ahead: ``first`` (None: empty) is delivered first."""

    def __init__(self, inner: Source) -> None:
        super().__init__(inner)
        self.first = inner.read()
        self._pending = self.first is not None

    def read(self) -> Frame | None:
        if self._pending:
            self._pending = False
            return self.first
        return self.inner.read()


def peek(source: Source) -> PeekedSource:
    """Read ``source``'s first frame ahead (``.first``) without losing it."""
    return PeekedSource(source)
