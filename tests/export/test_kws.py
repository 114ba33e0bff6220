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
from edge_ee_export.errors import DatasetError, UsageError  # noqa: E402

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
    # every clip knows its background condition, also in a subset (the threshold guarantee is held in each)
    for split in (d.train, d.calib_thr, d.test):
        assert split.conditions is not None and len(split.conditions) == len(split)
        assert set(split.conditions) <= set(kws.CONDITIONS)
    sub = d.calib_thr.subset(torch.tensor([1, 0]))
    assert list(sub.conditions) == [d.calib_thr.conditions[1], d.calib_thr.conditions[0]]
    assert (tmp_path / "cache" / "kws-audio.npz").is_file()
    # a second epoch view is a fresh augmentation of the same utterances
    assert d.train_fn is not None
    e1, e2 = d.train_fn(1), d.train_fn(2)
    assert torch.equal(e1.y, e2.y) and not torch.equal(e1.x, e2.x)


def test_kws_cli_export(tmp_path: Path) -> None:
    from edge_ee_export.cli import main

    out = tmp_path / "kws"
    rc = main(["kws", "--words", "yes,no", "--epochs", "1", "--train-limit", "60", "--out", str(out), "--cache",
               str(tmp_path / "cache"), "--no-progress", "--threads", "1", "--pooled-guarantee"])
    assert rc == 0
    m = load_bundle(out).manifest
    assert m.calibration.guarantee is None or not m.calibration.guarantee.conditions
    assert m.task == "keyword_spotting" and m.input.layout == "NCTF" and m.input.shape == ["N", 1, 49, 10]
    pre = m.input.preprocess
    assert pre["kind"] == "audio_mfcc" and pre["n_mfcc"] == 10 and pre["n_mels"] == 40 and pre["stride_ms"] == 20
    assert m.producer["dataset"]["heldout_voices"] == kws.HELDOUT_VOICES


# ---------------------------------------------------------------- augmentation (audio_aug)
def test_babble_reverb_and_snr() -> None:
    from edge_ee_export.data import audio_aug as aug

    rng = np.random.default_rng(0)
    talk = [kws.synthesize(kws.Job(s, "en-us", "m3", 160, 50)) for s in aug.sentences(3, rng)]
    assert not set(" ".join(aug.sentences(200, rng)).split()) & set(kws.KEYWORDS)  # never the keyword itself
    b = aug.BabblePool(talk).babble(16000, rng, talkers=4)
    assert b.shape == (16000,) and abs(float(np.sqrt(np.mean(b**2))) - 1.0) < 1e-3
    ir = aug.room_ir(rng, 0.5)
    assert abs(float(np.sum(ir**2)) - 1.0) < 1e-4 and ir[0] == np.abs(ir).max()
    tail = ir[len(ir) // 2:]
    assert float(np.sum(tail**2)) < float(np.sum(ir[: len(ir) // 2] ** 2))  # energy decays
    x = talk[0]
    y = aug.reverberate(x, ir)
    assert y.size == x.size + ir.size - 1
    assert abs(np.sqrt(np.mean(y**2)) - np.sqrt(np.mean(x**2))) < 1e-3
    n = aug.at_snr(aug.noise("pink", 16000, rng), 0.1, 10.0)
    assert abs(20 * np.log10(0.1 / np.sqrt(np.mean(n**2))) - 10.0) < 0.01


def test_training_clips_carry_babble_and_reverb() -> None:
    from edge_ee_export.data import audio_aug as aug

    rng = np.random.default_rng(1)
    pool = aug.BabblePool([kws.synthesize(kws.Job(s, "en-gb", "", 150, 50)) for s in aug.sentences(2, rng)])
    utt = kws.synthesize(kws.Job("stop", "en-us", "", 160, 50))
    clips = np.stack([kws.make_clip(utt, rng, pool) for _ in range(40)] +
                     [kws.make_clip(None, rng, pool) for _ in range(10)])
    assert clips.shape == (50, 16000) and np.isfinite(clips).all() and np.abs(clips).max() <= 1.0
    assert len({round(float(np.abs(c).max()), 4) for c in clips}) > 30  # fresh level/offset/background per clip


def test_clips_are_tagged_with_their_background() -> None:
    from edge_ee_export.data import audio_aug as aug

    rng = np.random.default_rng(4)
    pool = aug.BabblePool([kws.synthesize(kws.Job(s, "en-gb", "", 150, 50)) for s in aug.sentences(2, rng)])
    utt = kws.synthesize(kws.Job("stop", "en-us", "", 160, 50))
    seen = {kws.mix_clip(u, rng, pool)[1] for u in [utt] * 60 + [None] * 20}
    assert seen == set(kws.CONDITIONS)
    # the tag costs no random draw: make_clip gives the same clip from the same generator state
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    assert np.array_equal(kws.make_clip(utt, a, pool), kws.mix_clip(utt, b, pool)[0])


def test_each_epoch_draws_a_fresh_subset_of_unknown_words() -> None:
    """With ``unknown_draw``, an epoch holds every keyword and silence clip and that many unknown-word clips,
    a different subset per seed and the same size every time (the LR schedule counts steps from it)."""
    rng = np.random.default_rng(0)
    utt = [rng.standard_normal(4000).astype(np.float32) * 0.1 for _ in range(40)]
    labels = np.array([2] * 10 + [3] * 10 + [1] * 16 + [0] * 4)
    items = kws.Items([*utt[:36], None, None, None, None], labels, unknown_draw=5)
    a, b = items.features(1, "a"), items.features(2, "b")
    assert len(a) == len(b) == 10 + 10 + 5 + 4
    assert np.bincount(a.y.numpy()).tolist() == [4, 5, 10, 10]
    assert not np.allclose(a.x.numpy(), b.x.numpy())
    everything = kws.Items(list(items.audio), labels).features(1, "all")
    assert np.bincount(everything.y.numpy()).tolist() == [4, 16, 10, 10]


def test_clip_counts_scale_unknown_words_with_keywords() -> None:
    c = kws.ClipCounts.for_keyword_clips(1000)
    assert (c.per_keyword, c.per_unknown) == (1000, 150)
    with pytest.raises(UsageError, match="clips-per-keyword"):
        kws.ClipCounts.for_keyword_clips(0)


# ---------------------------------------------------------------- bad input: clear errors, nothing written
USAGE, DATASET = int(UsageError.exit_code), int(DatasetError.exit_code)


def _export(tmp_path: Path, *extra: str) -> int:
    from edge_ee_export.cli import main

    return main(["kws", "--epochs", "1", "--train-limit", "20", "--out", str(tmp_path / "out"), "--cache",
                 str(tmp_path / "cache"), "--no-progress", "--threads", "1", *extra])


def _noise_wav(path: Path, rate: int, channels: int, samples: int) -> Path:
    """A 16-bit PCM WAV of white noise (``samples`` values, interleaved over ``channels``)."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.random.default_rng(0).standard_normal(samples) * 3000).astype("<i2").tobytes())
    return path


def test_clips_per_keyword_zero_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _export(tmp_path, "--words", "yes,no", "--clips-per-keyword", "0") == USAGE
    assert "--clips-per-keyword must be at least 1" in capsys.readouterr().err
    _nothing_written(tmp_path)


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").rglob("*.npz")) if (tmp_path / "cache").exists() else True
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


@pytest.mark.parametrize("word", ["---", "yes!", "  "])
def test_a_keyword_espeak_cannot_say(tmp_path: Path, capsys: pytest.CaptureFixture[str], word: str) -> None:
    assert _export(tmp_path, "--words", f"yes,{word}") in (USAGE, DATASET)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "hint:" in err
    assert "cannot say" in err or "--words is empty" in err or "is not one of" in err
    _nothing_written(tmp_path)


def test_a_word_outside_the_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _export(tmp_path, "--words", "yes,banana") == USAGE
    err = capsys.readouterr().err
    assert "'banana' is not one of the recipe's keywords" in err and "stop" in err
    _nothing_written(tmp_path)


def test_a_noise_file_at_the_wrong_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _noise_wav(tmp_path / "fan.wav", rate=44100, channels=1, samples=44100)
    assert _export(tmp_path, "--words", "yes,no", "--noise", str(p)) == DATASET
    err = capsys.readouterr().err
    assert "fan.wav is sampled at 44100 Hz" in err and "16000" in err and "hint: resample it" in err
    _nothing_written(tmp_path)
    assert _export(tmp_path, "--words", "yes,no", "--noise", str(tmp_path / "none.wav")) == DATASET
    assert "does not exist" in capsys.readouterr().err


def test_an_empty_or_unknown_voice_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _export(tmp_path, "--words", "yes,no", "--voices", " , ") == USAGE
    err = capsys.readouterr().err
    assert "the voice list is empty" in err and "espeak-ng --voices" in err
    assert _export(tmp_path, "--words", "yes,no", "--voices", "en-us,xx-nowhere") == DATASET
    assert "espeak-ng has no voice 'xx-nowhere'" in capsys.readouterr().err
    assert _export(tmp_path, "--words", "yes,no", "--voices", "en-us,en-029") == USAGE
    assert "held out for the test" in capsys.readouterr().err
    _nothing_written(tmp_path)


def test_noise_files_are_read_at_16k(tmp_path: Path) -> None:
    p = _noise_wav(tmp_path / "hum.wav", rate=16000, channels=2, samples=16000)
    x = kws.read_noise(p)
    assert x.shape == (8000,) and x.dtype == np.float32
