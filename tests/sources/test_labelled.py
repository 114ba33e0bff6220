"""``--labels FILE``: parsing against the bundle's labels, and the wrapping source that applies them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ee.errors import ExitCode, UsageError
from edge_ee.sources.base import Frame, Source
from edge_ee.sources.labelled import LabelledSource, parse_labels, peek, read_label_file

LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class Counting(Source):
    """n frames; counts reads so a test can see frames are not read for nothing."""

    kind = "image"
    description = "counting"

    def __init__(self, n: int, truth: str | None = None) -> None:
        self.n, self.reads, self.closed, self.truth = n, 0, False, truth

    def read(self) -> Frame | None:
        self.reads += 1
        if self.reads > self.n:
            return None
        meta = {"truth": self.truth} if self.truth else {}
        return Frame(self.reads - 1, np.zeros((2, 2), np.uint8), meta=meta)

    def close(self) -> None:
        self.closed = True


def test_names_indices_comments_and_blank_lines() -> None:
    text = "# frame order\nAnkle boot\n\n  sandal   # case ignored when unambiguous\n3\n+0\nBag\n"
    lf = parse_labels(text, LABELS, "l.txt")
    assert lf.names == ["Ankle boot", "Sandal", "Dress", "T-shirt/top", "Bag"]
    assert lf.lines == [2, 4, 5, 6, 7]
    assert len(lf) == 5


def test_a_name_wins_over_an_index() -> None:
    labels = ["zero", "3", "two", "x"]
    assert parse_labels("3\n1\n", labels).names == ["3", "3"]  # "3" is a class name; 1 is the index of "3"
    assert parse_labels("2\n", labels).names == ["two"]


def test_ambiguous_case_fold_is_not_guessed() -> None:
    with pytest.raises(UsageError, match="line 1: 'yes' is not one of"):
        parse_labels("yes\n", ["Yes", "YES"])
    assert parse_labels("YES\n", ["Yes", "YES"]).names == ["YES"]


def test_unknown_labels_name_their_lines_and_list_the_classes() -> None:
    with pytest.raises(UsageError) as ei:
        parse_labels("Bag\n# c\nBoot\nBag\n10\n", LABELS, "l.txt")
    e = ei.value
    assert e.exit_code == ExitCode.USAGE
    assert "l.txt" in e.message and "line 3: 'Boot' is not one of the bundle's labels" in e.message
    assert "line 5: index 10 is out of range (0..9)" in e.message
    assert e.hint is not None and "9=Ankle boot" in e.hint and "one class label per line" in e.hint


def test_many_bad_lines_are_summarised() -> None:
    with pytest.raises(UsageError, match=r"line 3: .*\(and 2 more lines\)"):
        parse_labels("x1\nx2\nx3\nx4\nx5\n", LABELS)


def test_empty_missing_and_binary_files(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="has no labels"):
        read_label_file(tmp_path / "empty.txt", LABELS)
    with pytest.raises(UsageError, match="no such file") as ei:
        read_label_file(tmp_path / "nope.txt", LABELS)
    assert "auto, source, none" in (ei.value.hint or "")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bag")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_label_file(tmp_path / "bin.txt", LABELS)


def test_labelled_source_sets_truth_and_stops_at_the_file_end() -> None:
    inner = Counting(10, truth="Shirt")
    src = LabelledSource(inner, parse_labels("Bag\n0\nDress\n", LABELS, "l.txt"))
    frames = [src.read() for _ in range(3)]
    assert [f.meta["truth"] for f in frames if f] == ["Bag", "T-shirt/top", "Dress"]  # the file wins
    assert [f.meta["truth_line"] for f in frames if f] == [1, 2, 3]
    assert src.read() is None and src.labels_exhausted and not src.source_ended
    assert inner.reads == 3  # no frame read beyond the labels
    assert src.kind == "image" and src.description == "counting, labels from l.txt"
    src.close()
    assert inner.closed


def test_labelled_source_notices_a_short_source() -> None:
    src = LabelledSource(Counting(1), parse_labels("Bag\nBag\n", LABELS))
    assert src.read() is not None and src.read() is None
    assert src.source_ended and not src.labels_exhausted and src.delivered == 1


def test_peek_hands_the_first_frame_back() -> None:
    inner = Counting(3)
    p = peek(inner)
    assert p.first is not None and p.first.index == 0 and inner.reads == 1
    assert [f.index for f in iter(p.read, None)] == [0, 1, 2]
    empty = peek(Counting(0))
    assert empty.first is None and empty.read() is None
