#!/usr/bin/env python3
"""Synthesise a stream of spoken keywords in noise with espeak-ng: the shipped keyword-spotting sample
(``edge_ee/samples/keyword_spotting/keywords.wav`` + ``keywords.keywords.json`` ground truth) and the
long benchmark stream (``benchmarks/streams.py``).

Voices are the exporter's *held-out* ones (``edge_ee_export.data.kws.HELDOUT_VOICES`` /
``HELDOUT_VARIANTS`` when importable, else the same lists copied below), so the sample and the
benchmark never use a speaker the model was trained on.

    python scripts/make_kws_sample.py                      # the shipped sample (~20 s)
    python scripts/make_kws_sample.py --babble-db 20 --seed 1 \
        --out edge_ee/samples/keyword_spotting/keywords_babble.wav   # the shipped sample in background speech
    python scripts/make_kws_sample.py --words 200 --out /tmp/long.wav --seed 7

``--babble-db`` replaces the stationary noise by background speech at that SNR: 5 held-out talkers saying
sentences that never contain a keyword (``edge_ee_export.data.audio_aug``; needs the exporter).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_ee.audio.resample import resample  # noqa: E402

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
DISTRACTORS = ["bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "zero", "seven", "forward", "visual"]
# Fallback copy of the exporter's held-out speakers (edge_ee_export/data/kws.py), used when it is not importable.
HELDOUT_VOICES = ["en-029", "en-us-nyc"]
HELDOUT_VARIANTS = ["f4", "m5", "Alicia", "benjamin", "klatt3", "Gene", "linda", "quincy", "steph2", "whisper",
                    "zac", "grandma"]
EVAL_SPEEDS = [125, 145, 165, 185]
EVAL_PITCHES = [28, 43, 58, 72]
SR = 16000


def heldout_speakers() -> tuple[list[str], list[str], str]:
    """(voices, variants, where they came from)."""
    try:
        from edge_ee_export.data import kws  # noqa: PLC0415 - optional, pulls torch

        return list(kws.HELDOUT_VOICES), list(kws.HELDOUT_VARIANTS), "edge_ee_export.data.kws"
    except Exception:  # noqa: BLE001 - exporter (or torch) not installed
        return HELDOUT_VOICES, HELDOUT_VARIANTS, "scripts/make_kws_sample.py (copy)"


def espeak(text: str, voice: str, variant: str, speed: int, pitch: int) -> np.ndarray:
    """One utterance, float32 at 16 kHz (resampled by the runtime's resampler)."""
    x, sr = espeak_raw(text, voice, variant, speed, pitch)
    return resample(x, sr, SR)


def espeak_raw(text: str, voice: str, variant: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """One utterance at espeak-ng's own rate (22050 Hz)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is not installed: sudo apt-get install espeak-ng")
    v = voice + (f"+{variant}" if variant else "")
    data = subprocess.run([exe, "-v", v, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                          capture_output=True, check=True).stdout
    sr = int.from_bytes(data[24:28], "little")
    i = data.find(b"data", 12)
    return np.frombuffer(data[i + 8:], dtype="<i2").astype(np.float32) / 32768.0, sr


def trim(x: np.ndarray, rel: float = 0.02) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > rel * (np.abs(x).max() or 1.0))
    return x[idx[0]: idx[-1] + 1] if idx.size else x[:0]


def noise(n: int, rng: np.random.Generator, color: str) -> np.ndarray:
    w = rng.standard_normal(n)
    if color == "white":
        return w
    spec = np.fft.rfft(w)
    f = np.maximum(np.arange(spec.size), 1)
    spec /= np.sqrt(f) if color == "pink" else f
    y = np.fft.irfft(spec, n)
    return y / (y.std() or 1.0)


def make_stream(n_words: int, seed: int = 0, keyword_fraction: float = 0.75, snr_db: tuple[float, float] = (10, 25),
                gap_s: tuple[float, float] = (1.2, 2.2), voices: list[str] | None = None,
                variants: list[str] | None = None) -> tuple[np.ndarray, list[dict]]:
    """float32 PCM at 16 kHz and ground truth [{"keyword", "start", "end", "voice"}] (keywords only)."""
    rng = np.random.default_rng(seed)
    if voices is None or variants is None:
        voices, variants, _ = heldout_speakers()
    parts: list[np.ndarray] = [np.zeros(int(SR * 1.0), dtype=np.float32)]
    pos = parts[0].size
    truth: list[dict] = []
    for _ in range(n_words):
        is_kw = rng.random() < keyword_fraction
        word = str(rng.choice(KEYWORDS if is_kw else DISTRACTORS))
        voice, variant = str(rng.choice(voices)), str(rng.choice(variants))
        x = trim(espeak(word, voice, variant, int(rng.choice(EVAL_SPEEDS)), int(rng.choice(EVAL_PITCHES))))
        x = x / (np.abs(x).max() or 1.0) * float(rng.uniform(0.3, 0.9))
        if is_kw:
            truth.append({"keyword": word, "start": round(pos / SR, 3), "end": round((pos + x.size) / SR, 3),
                          "voice": f"{voice}+{variant}"})
        gap = np.zeros(int(SR * rng.uniform(*gap_s)), dtype=np.float32)
        parts += [x.astype(np.float32), gap]
        pos += x.size + gap.size
    clean = np.concatenate(parts)
    speech_rms = float(np.sqrt(np.mean(np.concatenate(parts[1::2]) ** 2))) if n_words else 0.05
    out = clean.copy()
    seg = SR * 5  # noise colour and level change every 5 s
    for s in range(0, out.size, seg):
        n = min(seg, out.size - s)
        snr = rng.uniform(*snr_db)
        out[s:s + n] += (noise(n, rng, str(rng.choice(["white", "pink", "brown"]))) * speech_rms
                         / 10 ** (snr / 20)).astype(np.float32)
    return np.clip(out, -1, 1).astype(np.float32), truth


def add_babble(pcm: np.ndarray, snr_db: float, seed: int, talkers: int = 5) -> np.ndarray:
    """``pcm`` (no noise) plus babble of held-out talkers at ``snr_db`` to the speech's RMS."""
    try:
        from edge_ee_export.data import audio_aug  # noqa: PLC0415 - optional, pulls torch
    except Exception as e:  # noqa: BLE001
        raise SystemExit(f"--babble-db needs the exporter (pip install -e export): {e}") from e
    rng = np.random.default_rng(seed + 5)
    voices, variants, _ = heldout_speakers()
    talk = [espeak(t, str(rng.choice(voices)), str(rng.choice(variants)), int(rng.choice(EVAL_SPEEDS)),
                   int(rng.choice(EVAL_PITCHES))) for t in audio_aug.sentences(3 * talkers, rng)]
    speech = pcm[np.abs(pcm) > 1e-6]
    rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2))) if speech.size else 0.05
    bab = audio_aug.BabblePool([trim(t) for t in talk]).babble(pcm.size, rng, talkers=talkers)
    return np.clip(pcm + audio_aug.at_snr(bab, rms, snr_db), -1, 1).astype(np.float32)


def write_wav(path: Path, pcm: np.ndarray, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())


def write_truth(wav: Path, truth: list[dict], source: str) -> Path:
    side = wav.with_suffix(".keywords.json")
    side.write_text(json.dumps({"voices_from": source, "keywords": truth}, indent=1) + "\n")
    return side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "edge_ee/samples/keyword_spotting/keywords.wav")
    ap.add_argument("--words", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--babble-db", type=float, default=None, help="background speech at this SNR instead of noise")
    a = ap.parse_args()
    voices, variants, src = heldout_speakers()
    quiet = (300.0, 300.0) if a.babble_db is not None else (10.0, 25.0)
    pcm, truth = make_stream(a.words, a.seed, voices=voices, variants=variants, snr_db=quiet)
    if a.babble_db is not None:
        pcm = add_babble(pcm, a.babble_db, a.seed)
    write_wav(a.out, pcm)
    side = write_truth(a.out, truth, src)
    print(f"{a.out}: {pcm.size / SR:.1f} s, {len(truth)} keywords (voices from {src}); truth in {side}")


if __name__ == "__main__":
    main()
