from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from edge_ee.core.budget import parse_budget
from edge_ee.core.bundle import load_bundle
from edge_ee.errors import SourceError, UsageError
from edge_ee.pipeline.preprocess import make_preprocessor
from edge_ee.pipeline.stats import LatencyHistogram
from edge_ee.pipeline.telemetry import TelemetryWriter, encode
from edge_ee.sources import open_source


def test_budget_parsing() -> None:
    assert parse_budget("20ms").value == pytest.approx(0.02)
    assert parse_budget("500us").kind == "latency"
    assert parse_budget("0.1s").seconds == pytest.approx(0.1)
    assert parse_budget("50mJ").kind == "energy" and parse_budget("50mJ").value == pytest.approx(0.05)
    assert parse_budget("2.5W").kind == "power"
    assert parse_budget(None) is None
    for bad in ("20", "ms", "-5ms", "0ms", "20 lightyears"):
        with pytest.raises(UsageError):
            parse_budget(bad)


def test_encode_nan_is_null() -> None:
    assert json.loads(encode({"a": float("nan"), "b": [1.0, float("inf")]})) == {"a": None, "b": [1.0, None]}


def test_rotation(tmp_path: Path) -> None:
    w = TelemetryWriter(tmp_path / "t.jsonl", max_bytes=200, keep=2)
    for i in range(40):
        w.write({"i": i, "pad": "x" * 20})
    w.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["t.jsonl", "t.jsonl.1", "t.jsonl.2"]
    for f in files:
        for line in f.read_text().splitlines():
            json.loads(line)
        assert f.stat().st_size <= 200
    last = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[-1])
    assert last["i"] == 39


def test_disk_full_drops_and_counts(tmp_path: Path, caplog) -> None:
    w = TelemetryWriter(tmp_path / "t.jsonl")
    w.write({"i": 0})

    class Full:
        def write(self, s: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None: ...

        def close(self) -> None: ...

    w._f = Full()  # type: ignore[assignment]
    real_open = w._open
    w._open = lambda: Full()  # type: ignore[method-assign]
    assert w.write({"i": 1}) is False
    assert w.write({"i": 2}) is False
    assert w.dropped == 2
    assert "disk full" in caplog.text
    assert caplog.text.count("disk full") == 1
    w._open = real_open  # type: ignore[method-assign]
    w._recover()  # space freed: the writer reopens the file
    assert w.write({"i": 3})
    w.close()
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["i"] for r in lines] == [0, 3]


def test_partial_line_is_truncated(tmp_path: Path) -> None:
    w = TelemetryWriter(tmp_path / "t.jsonl")
    w.write({"i": 0})
    real = w._f

    class Half:
        def write(self, s: str) -> int:
            real.write(s[: len(s) // 2])
            real.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None: ...

        def close(self) -> None:
            real.close()

    w._f = Half()  # type: ignore[assignment]
    w.write({"i": 1, "long": "y" * 50})
    w.close()
    text = (tmp_path / "t.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 1


def test_histogram_quantiles() -> None:
    h = LatencyHistogram()
    vals = np.linspace(1, 100, 1000)
    for v in vals:
        h.add(float(v))
    assert h.quantile(0.5) == pytest.approx(np.quantile(vals, 0.5), rel=0.02)
    assert h.quantile(0.99) == pytest.approx(np.quantile(vals, 0.99), rel=0.02)
    assert h.mean() == pytest.approx(vals.mean())


def test_images_source_truth_from_folder(bundle: Path, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    m = load_bundle(bundle).manifest
    d = tmp_path / "class3"
    d.mkdir()
    cv2.imwrite(str(d / "x.png"), np.zeros((40, 30, 3), np.uint8))
    src = open_source(f"images:{tmp_path}", m)
    f = src.read()
    assert f.meta["truth"] == "class3" and f.data.shape == (40, 30, 3)
    x = make_preprocessor(m.input)(f.data)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    assert src.read() is None


def test_video_source(bundle: Path, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(7):
        w.write(np.full((48, 64, 3), i * 30, np.uint8))
    w.release()
    m = load_bundle(bundle).manifest
    src = open_source(f"video:{path}", m)
    n = 0
    while (f := src.read()) is not None:
        assert f.data.shape == (48, 64, 3)
        n += 1
    assert n == 7
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(SourceError):
        s = open_source(f"video:{bad}", m)
        s.read()


def test_preprocess_center_crop_and_color(bundle: Path) -> None:
    m = load_bundle(bundle).manifest
    pre = make_preprocessor(m.input)
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # the centre square is white, the sides black
    x = pre(img)
    assert x.shape == (1, 1, 28, 28)
    assert x.min() > 0.9  # centre crop kept only the white square
