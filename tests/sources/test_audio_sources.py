"""Audio sources: WAV files (good and bad), resampling, windows and hop, stdin, a fake arecord."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_ee.audio import RingBuffer, StreamResampler, resample
from edge_ee.core.bundle import load_bundle
from edge_ee.errors import DeviceNotFoundError, ExitCode, SourceError, UsageError
from edge_ee.pipeline.features import mfcc_features
from edge_ee.sources import open_source, source_task

from .conftest import tone, write_wav


def manifest(b: Path):
    return load_bundle(b).manifest


def drain(src) -> list:
    out = []
    while (f := src.read()) is not None:
        out.append(f)
    return out


# ---------------------------------------------------------------- building blocks
def test_ring_buffer_windows_by_stream_position() -> None:
    r = RingBuffer(8)
    r.write(np.arange(5))
    assert r.latest(4).tolist() == [1, 2, 3, 4]
    assert r.latest(8).tolist() == [0, 0, 0, 0, 1, 2, 3, 4]  # zero-padded before the stream start
    r.write(np.arange(5, 12))
    assert r.total == 12
    assert r.window(12, 3).tolist() == [9, 10, 11]
    assert r.window(10, 4).tolist() == [6, 7, 8, 9]
    assert r.window(6, 4).tolist() == [0, 0, 4, 5]  # 2 and 3 were overwritten
    with pytest.raises(ValueError):
        r.window(13, 2)


@pytest.mark.parametrize("src_rate", [8000, 22050, 44100, 48000])
def test_resampler_keeps_a_tone_and_does_not_depend_on_chunking(src_rate: int) -> None:
    x = tone(1.0, src_rate, freq=1000.0, amp=0.5)
    y = resample(x, src_rate, 16000)
    assert y.size == 16000
    ref = tone(1.0, 16000, freq=1000.0, amp=0.5)
    assert np.abs(y - ref)[100:-100].max() < 2e-3
    r = StreamResampler(src_rate, 16000)
    parts = [r.process(c) for c in np.array_split(x, 13)] + [r.flush()]
    assert np.allclose(np.concatenate(parts), y, atol=1e-6)


def test_resampler_removes_what_the_target_rate_cannot_hold() -> None:
    x = tone(1.0, 48000, freq=7000.0, amp=0.5)  # above 4 kHz: must vanish at 8 kHz, not alias
    y = resample(x, 48000, 8000)
    assert np.sqrt(np.mean(y[100:-100] ** 2)) < 1e-3


# ---------------------------------------------------------------- wav:
def test_wav_windows_hop_and_parity_with_the_front_end(tmp_path: Path, kws_bundle: Path) -> None:
    rng = np.random.default_rng(0)
    pcm = (0.2 * rng.standard_normal(16000 * 3)).astype(np.float32)
    wav = write_wav(tmp_path / "a.wav", pcm)
    src = open_source(f"wav:{wav}", manifest(kws_bundle), {"hop_s": 0.5})
    assert src.kind == "audio" and not src.live
    frames = drain(src)
    assert len(frames) == 5  # windows ending at 1.0, 1.5, ..., 3.0 s
    assert [f.meta["t_audio"] for f in frames] == [1.0, 1.5, 2.0, 2.5, 3.0]
    q = (np.clip(pcm.astype(np.float64), -1, 1) * 32767).astype("<i2") / 32768  # what the 16-bit file holds
    for f in frames:
        end = int(f.meta["t_audio"] * 16000)
        assert f.data.shape == (16000,)
        assert np.allclose(f.data, q[end - 16000:end], atol=1e-6)
        assert np.allclose(mfcc_features(f.data), mfcc_features(q[end - 16000:end]), atol=1e-4)


def test_wav_other_rate_and_stereo_are_resampled(tmp_path: Path, kws_bundle: Path) -> None:
    x16 = tone(2.0, 16000, 700.0)
    wav = write_wav(tmp_path / "b.wav", tone(2.0, 44100, 700.0), rate=44100, channels=2)
    src = open_source(f"wav:{wav}", manifest(kws_bundle), {"hop_s": 0.25})
    assert "resampled to 16000 Hz" in src.description
    frames = drain(src)
    assert len(frames) == 5
    last = frames[-1].data
    assert np.abs(last[200:-200] - x16[16000 + 200:-200]).max() < 5e-3


def test_short_wav_gives_one_padded_window(tmp_path: Path, kws_bundle: Path) -> None:
    wav = write_wav(tmp_path / "s.wav", tone(0.4))
    frames = drain(open_source(f"wav:{wav}", manifest(kws_bundle), {}))
    assert len(frames) == 1 and frames[0].data.shape == (16000,)


@pytest.mark.parametrize("case", ["8bit", "not_wav", "empty", "missing", "float"])
def test_bad_wav_files_say_what_and_what_to_do(tmp_path: Path, kws_bundle: Path, case: str) -> None:
    p = tmp_path / f"{case}.wav"
    if case == "8bit":
        write_wav(p, tone(1.0), width=1)
    elif case == "not_wav":
        p.write_bytes(b"this is not audio" * 10)
    elif case == "empty":
        write_wav(p, np.zeros(0))
    elif case == "float":  # IEEE float WAV (format 3), as many DAWs write
        import struct

        data = tone(0.5).astype("<f4").tobytes()
        p.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
            "<IHHIIHH", 16, 3, 1, 16000, 64000, 4, 32) + b"data" + struct.pack("<I", len(data)) + data)
    with pytest.raises(SourceError) as ei:
        open_source(f"wav:{p}", manifest(kws_bundle), {})
    msg = str(ei.value)
    assert str(p) in msg
    if case in ("8bit", "not_wav", "float"):
        assert "16-bit" in msg and "sox" in msg


def test_hop_must_fit_the_window(tmp_path: Path, kws_bundle: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", tone(1.5))
    with pytest.raises(UsageError, match="--hop"):
        open_source(f"wav:{wav}", manifest(kws_bundle), {"hop_s": 2.0})


def test_source_task_picks_the_default_bundle() -> None:
    assert source_task("wav:x.wav") == source_task("mic") == source_task("-") == "keyword_spotting"
    assert source_task("camera:0") == source_task("video:x.mp4") == source_task("rtsp://h/s") == "image_classification"
    assert source_task("synthetic") is None and source_task("sample") is None
    assert source_task("sample:kws") == "keyword_spotting"


def test_embedded_kws_bundle_is_the_default_for_audio(tmp_path: Path, kws_bundle: Path, monkeypatch) -> None:
    import edge_ee.core.bundle as bmod
    from edge_ee.errors import BundleError

    monkeypatch.setattr(bmod, "BUNDLES_DIR", tmp_path / "none")
    with pytest.raises(BundleError, match="keyword_spotting"):
        bmod.load_bundle(None, task="keyword_spotting")
    monkeypatch.setattr(bmod, "BUNDLES_DIR", tmp_path)
    assert bmod.load_bundle(None, task="keyword_spotting").manifest.task == "keyword_spotting"


# ---------------------------------------------------------------- espeak-ng speech in noise
def test_espeak_speech_in_noise_stream(tmp_path: Path, kws_bundle: Path, need_espeak: None) -> None:
    from make_kws_sample import make_stream

    pcm, truth = make_stream(3, seed=1, keyword_fraction=1.0)
    assert len(truth) == 3 and all(t["end"] > t["start"] for t in truth)
    wav16 = write_wav(tmp_path / "s16.wav", pcm)
    wav48 = write_wav(tmp_path / "s48.wav", resample(pcm, 16000, 48000), rate=48000)
    m = manifest(kws_bundle)
    f16 = drain(open_source(f"wav:{wav16}", m, {}))
    f48 = drain(open_source(f"wav:{wav48}", m, {}))
    assert len(f16) == len(f48) > 0
    # the same speech through a 48 kHz file gives (nearly) the same features as at 16 kHz
    for a, b in zip(f16[::4], f48[::4]):
        fa, fb = mfcc_features(a.data), mfcc_features(b.data)
        assert np.corrcoef(fa[:, 1:].ravel(), fb[:, 1:].ravel())[0, 1] > 0.98


# ---------------------------------------------------------------- stdin
def _kws_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_ee", "run", *map(str, args)], capture_output=True,
                          timeout=60, **kw)


def test_stdin_raw_pcm_ends_cleanly_when_the_pipe_closes(kws_bundle: Path, tmp_path: Path) -> None:
    pcm = (tone(2.5, 8000, 300.0) * 32767).astype("<i2").tobytes() + b"\x01"  # odd trailing byte
    log = tmp_path / "t.jsonl"
    r = _kws_cli("--model", kws_bundle, "--source", "-", "--audio-rate", "8000", "--hop", "0.5", "-q",
                 "--log", log, input=pcm)
    assert r.returncode == 0, r.stderr.decode()
    lines = log.read_text().splitlines()
    assert len(lines) == 4  # 2.5 s at 8 kHz -> windows ending at 1.0, 1.5, 2.0, 2.5 s
    assert b"Traceback" not in r.stderr and b"resampled to 16000" in r.stderr


def test_stdin_that_is_empty_is_a_clean_end(kws_bundle: Path) -> None:
    r = _kws_cli("--model", kws_bundle, "--source", "-", "-q", input=b"")
    assert r.returncode == 0, r.stderr.decode()
    assert b"frames: 0" in r.stdout


# ---------------------------------------------------------------- fake arecord
FAKE_ARECORD = r'''#!{python}
import math, os, struct, sys, time
args = sys.argv[1:]
dev = args[args.index("-D") + 1]
rate = int(args[args.index("-r") + 1])
mode = os.environ.get("FAKE_ARECORD_MODE", "ok")
if dev == "hw:9,9" or mode == "missing":
    sys.stderr.write("arecord: main:831: audio open error: No such file or directory\n")
    sys.exit(1)
got = int(os.environ.get("FAKE_ARECORD_GOT_RATE", rate))
if got != rate:
    sys.stderr.write(f"Warning: rate is not accurate (requested = {{rate}}Hz, got = {{got}}Hz)\n")
    sys.stderr.write("         please, try the plug plugin\n")
sys.stderr.flush()
seconds = float(os.environ.get("FAKE_ARECORD_SECONDS", "3"))
n = int(seconds * got)
out = sys.stdout.buffer
samples = [int(8000 * math.sin(2 * math.pi * 440 * i / got)) for i in range(n)]
data = struct.pack("<%dh" % n, *samples)
if mode == "die":  # half the audio, then an error
    out.write(data[: len(data) // 2]); out.flush()
    sys.stderr.write("arecord: pcm_read:2221: read error: Input/output error\n")
    sys.exit(1)
out.write(data); out.flush()
if mode == "hang":
    time.sleep(30)
'''


@pytest.fixture
def fake_arecord(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    exe = d / "arecord"
    exe.write_text(FAKE_ARECORD.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    return exe


def test_mic_through_fake_arecord(kws_bundle: Path, fake_arecord: Path) -> None:
    src = open_source("mic:plughw:1,0", manifest(kws_bundle), {"hop_s": 0.5})
    try:
        assert src.live and src.kind == "audio" and "mic:plughw:1,0" in src.description
        got = []
        while (f := src.read()) is not None:
            got.append(f)
    finally:
        src.close()
    assert len(got) >= 1 and all(f.data.shape == (16000,) for f in got)
    assert np.abs(got[0].data).max() == pytest.approx(8000 / 32768, rel=0.01)
    ends = [f.meta["t_audio"] for f in got]
    assert ends == sorted(ends) and ends[-1] == 3.0
    # windows are on the hop grid; any skipped ones are counted, none repeated
    assert len(got) + src.dropped == 5


def test_mic_newest_window_when_inference_is_slow(kws_bundle: Path, fake_arecord: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ARECORD_SECONDS", "6")
    monkeypatch.setenv("FAKE_ARECORD_MODE", "hang")  # all audio at once, then the device stays open
    src = open_source("mic", manifest(kws_bundle), {"hop_s": 0.25})
    try:
        deadline = time.monotonic() + 20
        while src.ring.total < 6 * 16000 and time.monotonic() < deadline:
            time.sleep(0.02)  # a slow consumer: all audio arrived before the first read
        f = src.read()
        assert f.meta["t_audio"] == 6.0  # the newest window, not the oldest
        assert src.dropped == 20  # windows ending at 1.0 .. 5.75 s were skipped
    finally:
        src.close()


def test_mic_device_missing_is_device_not_found(kws_bundle: Path, fake_arecord: Path) -> None:
    with pytest.raises(DeviceNotFoundError) as ei:
        open_source("mic:hw:9,9", manifest(kws_bundle), {})
    msg = str(ei.value)
    assert "no microphone" in msg and "hw:9,9" in msg and "audio open error" in msg
    assert "arecord -l" in msg and "wav:FILE" in msg
    assert ei.value.exit_code == ExitCode.DEVICE


def test_mic_failing_mid_stream_is_a_source_error(kws_bundle: Path, fake_arecord: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ARECORD_MODE", "die")
    src = open_source("mic", manifest(kws_bundle), {"hop_s": 0.5})
    try:
        with pytest.raises(SourceError, match="arecord stopped") as ei:
            while src.read() is not None:
                pass
        assert "Input/output error" in str(ei.value)
    finally:
        src.close()


def test_mic_rate_fallback_is_resampled(kws_bundle: Path, fake_arecord: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ARECORD_GOT_RATE", "44100")
    monkeypatch.setenv("FAKE_ARECORD_SECONDS", "1.5")
    src = open_source("mic", manifest(kws_bundle), {"hop_s": 0.5})
    try:
        assert "44100 Hz resampled to 16000 Hz" in src.description
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    finally:
        src.close()
    assert frames[-1].meta["t_audio"] == 1.5
    x = frames[-1].data[4000:12000]
    zc = np.count_nonzero(np.diff(np.signbit(x)))  # a 440 Hz tone stays 440 Hz: ~440 crossings/0.5 s
    assert 420 <= zc <= 460


def test_no_arecord_and_no_sounddevice(kws_bundle: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    import edge_ee.sources.audio as amod

    monkeypatch.setattr(amod, "has_sounddevice", lambda: False)
    with pytest.raises(DeviceNotFoundError, match="alsa-utils"):
        open_source("mic", manifest(kws_bundle), {})


def test_front_end_parity_with_the_exporter(need_espeak: None) -> None:
    """The model was trained on espeak audio resampled by the exporter (FFT) and featurised by
    edge_ee.pipeline.features; a WAV at espeak's rate goes through the runtime's streaming resampler instead.
    Both paths must give the same features."""
    kws = pytest.importorskip("edge_ee_export.data.kws", reason="the exporter package (torch) is not installed")
    from make_kws_sample import espeak_raw

    x, sr = espeak_raw("left", "en-029", "f4", 145, 43)
    assert sr != 16000
    clip = np.zeros(16000, np.float32)
    a = kws.resample(x, sr, 16000)[:14000]
    b = resample(x, sr, 16000)[:14000]
    fa = mfcc_features(np.concatenate([a, clip])[:16000])
    fb = mfcc_features(np.concatenate([b, clip])[:16000])
    speech = np.abs(a).max() * 0.05 < np.abs(np.concatenate([a, clip])[:16000]).reshape(-1, 320)[:49].max(axis=1)
    assert speech.sum() >= 10
    assert np.abs(fa - fb)[speech].max() < 0.1 * np.abs(fa[speech]).max()
    assert np.corrcoef(fa[speech].ravel(), fb[speech].ravel())[0, 1] > 0.999


def test_mic_that_never_delivers_audio(kws_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    from edge_ee.audio.pcm import ArecordReader

    d = tmp_path / "bin2"
    d.mkdir()
    exe = d / "arecord"
    exe.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DeviceNotFoundError, match="delivered no audio"):
        ArecordReader("hw:0,0", 16000, start_timeout_s=0.3)
