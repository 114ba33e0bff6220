"""The --source registry: prefixes, tasks and help come from the registered classes; capabilities have defaults."""

from __future__ import annotations

import pkgutil

import numpy as np
import pytest

from edge_ee import sources
from edge_ee.errors import UsageError
from edge_ee.sources import (
    AUDIO_TASK,
    IMAGE_TASK,
    Frame,
    Source,
    kinds,
    open_source,
    prefixes,
    register_source,
    registry,
    source_task,
    sources_help,
    split_spec,
)
from edge_ee.sources.labelled import peek


def test_prefix_sets_and_help_come_from_the_registry():
    assert prefixes(AUDIO_TASK) >= {"mic", "wav", "-"}
    assert prefixes(IMAGE_TASK) >= {"camera", "csi", "gst", "rtsp", "images", "video"}
    shown = sources_help().split(" | ")
    shipped = ["synthetic", "images:DIR_OR_GLOB", "video:FILE", "sample", "camera[:N|:/dev/videoN]", "csi[:N]",
               "gst:PIPELINE", "rtsp://URL", "mic[:DEVICE]", "wav:FILE", "- (raw PCM on stdin)"]
    assert [x for x in shown if x in shipped] == shipped
    for k in kinds():
        assert k.syntax in sources_help()
    with pytest.raises(UsageError) as e:
        split_spec("bogus:1")
    assert all(k.prefix in (e.value.hint or "") for k in kinds())
    assert source_task("sample:kws") == AUDIO_TASK and source_task("sample") is None
    assert source_task("rtsp://cam/1") == IMAGE_TASK and source_task("synthetic") is None


def test_every_source_module_is_imported():
    registry._load_all()
    names = {m.name for m in pkgutil.iter_modules(sources.__path__)}
    modules = {k.opener.__module__.rsplit(".", 1)[1] for k in kinds()}
    assert modules <= names and {"synthetic", "images", "video", "camera", "audio", "sample"} <= modules


class Ramp(Source):
    """A test source: ``ramp:N`` yields N frames of the model's input shape."""

    description = "ramp"

    def __init__(self, n: int, shape: tuple[int, ...]) -> None:
        self.n, self.shape, self.i = n, shape, 0

    @classmethod
    def from_spec(cls, arg: str, m, opts: dict) -> Ramp:
        return cls(int(arg or 3), (28, 28))

    def read(self) -> Frame | None:
        if self.i >= self.n:
            return None
        self.i += 1
        return Frame(self.i - 1, np.full(self.shape, self.i, np.uint8))


def test_a_new_source_is_one_decorated_class(monkeypatch):
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    register_source("ramp", "test frames, ramp:N", syntax="ramp[:N]", task=IMAGE_TASK, order=15)(Ramp)
    shown = sources_help().split(" | ")
    assert shown.index("ramp[:N]") == shown.index("synthetic") + 1
    assert source_task("ramp:2") == IMAGE_TASK and "ramp" in prefixes(IMAGE_TASK)
    src = open_source("ramp:2", None, {})  # type: ignore[arg-type]
    assert [f.index for f in iter(src.read, None)] == [0, 1]
    with pytest.raises(ValueError, match="registered twice"):
        register_source("ramp", "other")(lambda arg, m, o: Ramp(1, (1,)))


def test_optional_capabilities_have_defaults_and_wrappers_forward_them():
    src = Ramp(1, (2, 2))
    assert src.interrupt() is None and src.stream_stats() == {"dropped_frames": 0} and src.truth is None
    calls = []

    class Live(Ramp):
        truth = [{"keyword": "yes", "start": 0.0, "end": 1.0}]

        def interrupt(self) -> None:
            calls.append("interrupt")

        def stream_stats(self) -> dict:
            return {"dropped_frames": 5, "reconnects": 1}

    w = peek(Live(2, (2, 2)))
    w.interrupt()
    assert calls == ["interrupt"] and w.stream_stats()["reconnects"] == 1 and w.truth == Live.truth
