"""Keyword-spotting data synthesised with espeak-ng, and a tiny DS-CNN export."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed (sudo apt-get install espeak-ng)", allow_module_level=True)

from edge_ee_export.data import kws  # noqa: E402

from edge_ee.core.bundle import load_bundle  # noqa: E402
from edge_ee.pipeline.features import mfcc_features  # noqa: E402


def test_synthesis_gives_16k_speech() -> None:
    a = kws.synthesize(kws.Job("yes", "en-us", "f3", 150, 50))
    b = kws.synthesize(kws.Job("yes", "en-gb-scotland", "m3", 190, 30))
    for x in (a, b):
        assert x.dtype == np.float32 and 1600 < len(x) < 16000  # 0.1 .. 1 s at 16 kHz
        assert 0.05 < float(np.abs(x).max()) <= 1.0
    assert len(b) < len(a)  # faster speech is shorter


def test_clip_mixing() -> None:
    rng = np.random.default_rng(0)
    utt = kws.synthesize(kws.Job("go", "en-us", "", 160, 50))
    c = kws.make_clip(utt, rng)
    s = kws.make_clip(None, rng)
    assert c.shape == s.shape == (16000,)
    assert np.abs(s).max() < np.abs(c).max()
    f = mfcc_features(c)
    assert f.shape == (49, 10) and np.isfinite(f).all()


def test_splits_keep_heldout_voices_apart(tmp_path: Path) -> None:
    d = kws.load(tmp_path / "cache", words=["yes", "no"], train_limit=40, progress=False)
    assert d.labels[:2] == ["silence", "unknown"] and d.labels[2:] == kws.KEYWORDS
    assert d.train.x.shape[1:] == (1, 49, 10)
    assert set(kws.TRAIN_VOICES).isdisjoint(kws.HELDOUT_VOICES)
    assert set(kws.TRAIN_VARIANTS).isdisjoint(kws.HELDOUT_VARIANTS)
    assert set(kws.TRAIN_SPEEDS).isdisjoint(kws.EVAL_SPEEDS)
    assert "test_heldout_voices" in (d.extra or {})
    assert (tmp_path / "cache" / "kws-audio.npz").is_file()
    # a second epoch view is a fresh augmentation of the same utterances
    assert d.train_fn is not None
    e1, e2 = d.train_fn(1), d.train_fn(2)
    assert torch.equal(e1.y, e2.y) and not torch.equal(e1.x, e2.x)


def test_kws_cli_export(tmp_path: Path) -> None:
    from edge_ee_export.cli import main

    out = tmp_path / "kws"
    rc = main(["kws", "--words", "yes,no", "--epochs", "1", "--train-limit", "60", "--out", str(out), "--cache",
               str(tmp_path / "cache"), "--no-progress", "--threads", "1"])
    assert rc == 0
    m = load_bundle(out).manifest
    assert m.task == "keyword_spotting" and m.input.layout == "NCTF" and m.input.shape == ["N", 1, 49, 10]
    pre = m.input.preprocess
    assert pre["kind"] == "audio_mfcc" and pre["n_mfcc"] == 10 and pre["n_mels"] == 40 and pre["stride_ms"] == 20
    assert m.producer["dataset"]["heldout_voices"] == kws.HELDOUT_VOICES
