"""Synthetic keyword-spotting data set made with ``espeak-ng``.

Twelve classes as in MLPerf Tiny / Speech Commands: ``silence``, ``unknown`` and the ten keywords
yes/no/up/down/left/right/on/off/stop/go. Each utterance is synthesised by espeak-ng with a voice
(accent), a voice variant (``+f3``, ``+klatt2``...), a speed and a pitch, resampled to 16 kHz,
placed at a random time in a 1 s clip, scaled to a random level, sometimes reverberated (synthetic
room impulse response) and, in 70% of the clips, mixed with a background at 5-25 dB SNR: babble (3-7 training talkers
saying sentences that never contain a keyword), stationary noise (white/pink/brown/hum) or the
user's noise recordings (``--noise``); ``silence`` clips are background only. Every epoch draws a
fresh mix (:mod:`.audio_aug`), a fresh subset of the unknown-word clips (1.5 keywords' worth, so "unknown" weighs
about one class) and, per clip, a vocal-tract-length warp of the filterbank (``WARP``). Features are the MLPerf Tiny
MFCCs from :func:`edge_ee.pipeline.features.mfcc_features` (the runtime's own front end; the warp is a training-only
argument of it).

Speakers never used in training make the honest test: ``test_heldout_voices`` is held out on all
three axes at once (a held-out accent, a held-out variant, and a speed and pitch beyond the training
range), so a clip shares none of them with training. ``test`` uses the training voices and variants
with speeds and pitches between the training ones (synthetic speech is deterministic, so a split of
identical settings would be memorised). Calibration splits come from the same in-between pool.
``benchmarks/kws_heldout.py`` reports each axis on its own.

Synthesised audio is cached (int16) under the cache directory, keyed by the job list.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_ee.pipeline.features import DEFAULT_SPEC, feature_shape, mfcc_features

from ..errors import DatasetError, UsageError
from . import Dataset, TensorSplit
from .audio_aug import NOISES, BabblePool, at_snr, noise, reverberate, room_ir, sentences

log = logging.getLogger("edge_ee_export")

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
LABELS = ["silence", "unknown", *KEYWORDS]
UNKNOWN_WORDS = ["bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero", "one",
                 "two", "three", "four", "five", "six", "seven", "eight", "nine", "learn", "follow", "forward",
                 "backward", "visual", "yet", "nose", "cup", "town", "lift", "bright", "own"]
ENGLISH_TRAIN_VOICES = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
# espeak-ng's German, French, Spanish and Dutch voices reading the English words: more accents to learn from
FOREIGN_TRAIN_VOICES = ["de", "fr", "es", "nl"]
TRAIN_VOICES = ENGLISH_TRAIN_VOICES + FOREIGN_TRAIN_VOICES
HELDOUT_VOICES = ["en-029", "en-us-nyc"]
TRAIN_VARIANTS = ["", "adam", "Alex", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "boris", "caleb",
                  "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene2", "gustave", "Henrique", "Hugo",
                  "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee", "marcelo", "Marco",
                  "Mario", "max", "Michael", "michel", "miguel", "Mike", "Nguyen", "pablo", "paul", "pedro",
                  "rob", "robert", "robosoft", "robosoft3", "steph", "steph3", "Storm", "Tweaky", "anika",
                  "AnxiousAndy", "f1", "f2", "f3", "f5", "whisperf", "grandpa", "klatt", "klatt2", "klatt4",
                  "klatt5", "m1", "m2", "m3", "m4", "m6", "m7", "m8", "norbert", "sandro", "shelby", "travis",
                  "victor", "croak", "Demonic", "Mr serious", "RicishayMax", "RicishayMax2", "RicishayMax3",
                  "UniRobot", "anikaRobot", "announcer", "klatt6", "robosoft2", "robosoft4", "robosoft5", "robosoft6",
                  "robosoft7", "robosoft8"]
# espeak-ng's variant "fast" only changes the speaking rate, so neither list has it (the prosody axis stays apart)
HELDOUT_VARIANTS = ["f4", "m5", "Alicia", "benjamin", "klatt3", "Gene", "linda", "quincy", "steph2", "whisper",
                    "zac", "grandma"]
TRAIN_SPEEDS = [115, 135, 155, 175, 195]
TRAIN_PITCHES = [20, 35, 50, 65, 80]
EVAL_SPEEDS = [125, 145, 165, 185]
EVAL_PITCHES = [28, 43, 58, 72]
# beyond the training range on both sides (training: speeds 115-195 wpm, pitches 20-80)
HELDOUT_SPEEDS = [95, 215]
HELDOUT_PITCHES = [8, 92]
BABBLE_SENTENCES = 160
SNR_DB = (5.0, 25.0)
BACKGROUND_P = 0.7  # share of keyword clips with a background (a 0-20 dB mix in 85% cost 6 pp clean, see docs)
REVERB_P = 0.3
# the background conditions a clip is tagged with (mix_clip); the threshold guarantee is held in each of them
CONDITIONS = ("quiet", "noise", "babble")
# vocal tract length perturbation of the training clips: the mel filterbank reads frequency f as f * a, a drawn
# log-uniformly from this range per clip and epoch (adult formants differ by ~20 % between speakers; espeak-ng's
# held-out variants include voices with every formant 30-45 % above any training voice's)
WARP = (0.8, 1.25)
SR = 16000
CLIP = 16000
INSTALL_HINT = "install it with `sudo apt-get install espeak-ng`"
PREPROCESS = dict(DEFAULT_SPEC)


@dataclass(frozen=True)
class Job:
    text: str
    voice: str
    variant: str
    speed: int
    pitch: int

    @property
    def key(self) -> str:
        return f"{self.text}|{self.voice}|{self.variant}|{self.speed}|{self.pitch}"

    def argv(self, exe: str) -> list[str]:
        v = self.voice + (f"+{self.variant}" if self.variant else "")
        return [exe, "-v", v, "-s", str(self.speed), "-p", str(self.pitch), "--stdout", self.text]


def espeak_path() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DatasetError("espeak-ng is not installed; the keyword-spotting set is synthesised with it",
                           INSTALL_HINT)
    return exe


def _wav_to_float(data: bytes) -> tuple[np.ndarray, int]:
    """Parse espeak-ng's streamed WAV (its size fields are bogus): find the 'data' chunk."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DatasetError("espeak-ng did not produce WAV output")
    sr = int.from_bytes(data[24:28], "little")
    i = data.find(b"data", 12)
    pcm = np.frombuffer(data[i + 8:], dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, sr


def resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    """Band-limited resampling by FFT (zero-padded to limit wrap-around)."""
    if sr_in == sr_out:
        return x
    pad = 2048
    xp = np.pad(x.astype(np.float64), (pad, pad))
    n_out = int(round(len(xp) * sr_out / sr_in))
    spec = np.fft.rfft(xp)
    y = np.fft.irfft(spec[: n_out // 2 + 1], n_out) * (n_out / len(xp))
    p2 = int(round(pad * sr_out / sr_in))
    return y[p2: n_out - p2].astype(np.float32)


def trim(x: np.ndarray, rel: float = 0.02) -> np.ndarray:
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak <= 0:
        return x[:0]
    idx = np.flatnonzero(np.abs(x) > rel * peak)
    return x[max(idx[0] - 160, 0): idx[-1] + 160]


def synthesize(job: Job, exe: str | None = None) -> np.ndarray:
    """One utterance as float32 at 16 kHz, leading/trailing silence trimmed."""
    exe = exe or espeak_path()
    try:
        r = subprocess.run(job.argv(exe), capture_output=True, timeout=30, check=True)
    except subprocess.CalledProcessError as e:
        raise DatasetError(f"espeak-ng failed for {job.key}: {e.stderr.decode(errors='replace')[:200]}") from e
    except subprocess.TimeoutExpired as e:
        raise DatasetError(f"espeak-ng timed out for {job.key}") from e
    x, sr = _wav_to_float(r.stdout)
    return trim(resample(x, sr))


def _read_store(path: Path) -> dict[str, np.ndarray]:
    z = np.load(path, allow_pickle=False)
    offs = np.concatenate([[0], np.cumsum(z["lens"])])
    flat = z["audio"]
    return {str(k): flat[offs[i]: offs[i + 1]] for i, k in enumerate(z["keys"])}


def synthesize_all(jobs: list[Job], cache_dir: Path | None, workers: int = 2,
                   progress: bool = True, store_name: str = "kws-audio.npz") -> dict[str, np.ndarray]:
    """Synthesise every job (once per distinct setting); cache int16 audio in ``cache_dir/store_name``."""
    exe = espeak_path()
    uniq = sorted({j.key: j for j in jobs}.values(), key=lambda j: j.key)
    path = cache_dir / store_name if cache_dir is not None else None
    store: dict[str, np.ndarray] = {}
    if path is not None and path.is_file():
        try:
            store = _read_store(path)
        except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt
            log.warning("ignoring damaged audio cache %s (%s)", path, e)
    todo = [j for j in uniq if j.key not in store]
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for j, a in tqdm(zip(todo, pool.map(lambda j: synthesize(j, exe), todo)), total=len(todo),
                             desc="espeak-ng", disable=not progress, mininterval=2.0):
                store[j.key] = np.clip(np.round(a * 32767), -32768, 32767).astype(np.int16)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(store)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez_compressed(tmp, keys=np.array(keys), lens=np.array([len(store[k]) for k in keys]),
                                audio=np.concatenate([store[k] for k in keys]) if keys else np.zeros(0, np.int16))
            os.replace(tmp, path)
    return {j.key: store[j.key].astype(np.float32) / 32767.0 for j in uniq}


# --------------------------------------------------------------------------- mixing


def make_clip(utt: np.ndarray | None, rng: np.random.Generator, babble: BabblePool | None = None,
              noises: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A 1 s training clip (see :func:`mix_clip`)."""
    return mix_clip(utt, rng, babble, noises)[0]


def mix_clip(utt: np.ndarray | None, rng: np.random.Generator, babble: BabblePool | None = None,
             noises: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, str]:
    """A 1 s clip and its condition (one of ``CONDITIONS``): the utterance at a random offset and level,
    reverberated with probability ``REVERB_P``, over a background at ``SNR_DB`` (babble from ``babble``,
    stationary noise, or a stretch of one of ``noises``) in ``BACKGROUND_P`` of the clips; ``utt=None``: background
    only (``silence``). The condition names the background: reverberation alone counts as quiet."""
    clip = np.zeros(CLIP, np.float32)
    condition = "quiet"

    def background() -> np.ndarray:
        nonlocal condition
        r = rng.random()
        condition = "noise"
        if noises and r < 0.25:
            x = noises[int(rng.integers(len(noises)))]
            reps = CLIP // max(x.size, 1) + 2
            s = int(rng.integers(x.size))
            y = np.tile(x, reps)[s: s + CLIP].astype(np.float64)
            return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)
        if babble is not None and len(babble) and r < 0.625:
            condition = "babble"
            return babble.babble(CLIP, rng)
        return noise(str(rng.choice(NOISES)), CLIP, rng)

    if utt is not None and utt.size:
        u = utt
        if rng.random() < REVERB_P:
            y = reverberate(u, room_ir(rng))
            u = y[: max(u.size, min(y.size, CLIP))]
        if len(u) > CLIP:
            s = rng.integers(0, len(u) - CLIP + 1)
            u = u[s: s + CLIP]
        off = rng.integers(0, CLIP - len(u) + 1)
        peak = float(np.abs(u).max()) + 1e-9
        level = float(np.exp(rng.uniform(np.log(0.05), np.log(0.9))))
        clip[off: off + len(u)] = u * (level / peak)
        sig_rms = float(np.sqrt(np.mean((u * (level / peak)) ** 2)))
        if rng.random() < BACKGROUND_P:
            clip += at_snr(background(), sig_rms, float(rng.uniform(*SNR_DB)))
        clip += rng.standard_normal(CLIP).astype(np.float32) * 1e-4
    else:
        lvl = float(np.exp(rng.uniform(np.log(1e-4), np.log(0.08))))
        if rng.random() < 0.9:
            clip += background() * lvl
        clip += rng.standard_normal(CLIP).astype(np.float32) * 1e-5
    return np.clip(clip, -1.0, 1.0), condition


@dataclass
class Items:
    """Utterances (``None`` = silence) and their labels; ``babble``/``noises``: background material."""

    audio: list[np.ndarray | None]
    labels: np.ndarray
    babble: BabblePool | None = None
    noises: Sequence[np.ndarray] = ()
    unknown_draw: int | None = None
    warp: tuple[float, float] | None = None

    def features(self, seed: int, name: str) -> TensorSplit:
        """Every clip mixed afresh with ``seed``; with ``unknown_draw``, only that many of the unknown-word clips,
        a different random subset for each seed (the same count every time, so every epoch has one size); with
        ``warp``, each clip's features through a frequency warp drawn log-uniformly from that range."""
        rng = np.random.default_rng(seed)
        keep = np.arange(len(self.audio))
        unknown = np.flatnonzero(self.labels == LABELS.index("unknown"))
        if self.unknown_draw is not None and self.unknown_draw < unknown.size:
            drawn = rng.choice(unknown, self.unknown_draw, replace=False)
            keep = np.sort(np.concatenate([np.setdiff1d(keep, unknown), drawn]))
        parts = [np.zeros((0, *feature_shape(PREPROCESS)), np.float32)]
        conditions: list[str] = []
        for i in range(0, keep.size, 256):  # chunks keep the STFT buffers small
            mixed = [mix_clip(self.audio[j], rng, self.babble, self.noises) for j in keep[i: i + 256]]
            clips = np.stack([c for c, _ in mixed])
            conditions += [cond for _, cond in mixed]
            w = None if self.warp is None else np.exp(rng.uniform(*np.log(self.warp), len(clips)))
            parts.append(mfcc_features(clips, PREPROCESS, warp=w))
        f = np.concatenate(parts)
        return TensorSplit(torch.from_numpy(f).float().unsqueeze(1),
                           torch.from_numpy(self.labels[keep].astype(np.int64)), name, np.array(conditions))


def _jobs(words: list[str], combos: list[tuple[str, str]], per_word: int, speeds: list[int], pitches: list[int],
          rng: np.random.Generator) -> list[tuple[Job, int]]:
    out = []
    for w in words:
        label = LABELS.index(w) if w in LABELS else 1
        pick = rng.permutation(len(combos))[:per_word] if per_word < len(combos) else \
            rng.integers(0, len(combos), per_word)
        for i in pick:
            v, var = combos[int(i)]
            out.append((Job(w, v, var, int(rng.choice(speeds)), int(rng.choice(pitches))), label))
    return out


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def check_words(words: Sequence[str], exe: str) -> None:
    """Every keyword is one of :data:`KEYWORDS`, a plain word, and something espeak-ng actually says
    (a probe synthesis gives audio); otherwise an error naming the word, before anything is synthesised."""
    if not words:
        raise UsageError("--words is empty", f"give some of: {', '.join(KEYWORDS)} (comma-separated)")
    for w in words:
        if not _WORD.fullmatch(w):
            raise DatasetError(f"espeak-ng cannot say the keyword {w!r}: a keyword is one word of letters",
                               f"use words such as {', '.join(KEYWORDS[:4])}")
        try:
            said = synthesize(Job(w, TRAIN_VOICES[0], "", 160, 50), exe)
        except DatasetError as e:
            raise DatasetError(f"espeak-ng cannot say the keyword {w!r} ({e.message})",
                               "check the spelling; espeak-ng must pronounce it") from e
        if said.size < SR // 20:
            raise DatasetError(f"espeak-ng cannot say the keyword {w!r}: it produced no speech",
                               "check the spelling; espeak-ng must pronounce it")
        if w not in KEYWORDS:
            raise UsageError(f"{w!r} is not one of the recipe's keywords",
                             f"the kws labels are fixed: choose from {', '.join(KEYWORDS)}")


def check_voices(voices: Sequence[str], exe: str) -> list[str]:
    """Training voices: non-empty, none of the held-out ones (the held-out test stays honest), each one
    espeak-ng has."""
    vs = [v.strip() for v in voices if v.strip()]
    if not vs:
        raise UsageError("the voice list is empty", f"give espeak-ng voices, e.g. --voices {','.join(TRAIN_VOICES[:3])}"
                         " (list them with `espeak-ng --voices`)")
    clash = sorted(set(vs) & set(HELDOUT_VOICES))
    if clash:
        raise UsageError(f"voice(s) {', '.join(clash)} are held out for the test",
                         f"train on others; held out: {', '.join(HELDOUT_VOICES)}")
    for v in vs:
        r = subprocess.run([exe, "-v", v, "-q", "x"], capture_output=True, timeout=30)
        if r.returncode != 0 or b"does not exist" in r.stderr:
            raise DatasetError(f"espeak-ng has no voice {v!r}", "list the installed voices with `espeak-ng --voices`")
    return vs


def read_noise(path: str | os.PathLike[str]) -> np.ndarray:
    """A background-noise recording: 16-bit PCM WAV at 16 kHz (mono, or stereo averaged), at least 0.1 s."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"noise file {p} does not exist", "give 16 kHz 16-bit PCM WAV files with --noise")
    try:
        with wave.open(str(p), "rb") as w:
            rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            data = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise DatasetError(f"noise file {p} is not a PCM WAV file ({e})",
                           "convert it: sox IN -r 16000 -c 1 -b 16 OUT.wav") from e
    if rate != SR:
        raise DatasetError(f"noise file {p} is sampled at {rate} Hz; the keyword model works at {SR} Hz",
                           f"resample it: sox {p.name} -r {SR} OUT.wav (or ffmpeg -i {p.name} -ar {SR} OUT.wav)")
    if width != 2:
        raise DatasetError(f"noise file {p} has {8 * width}-bit samples; 16-bit PCM is needed",
                           "convert it: sox IN -b 16 OUT.wav")
    x = np.frombuffer(data[: len(data) // (2 * ch) * 2 * ch], "<i2").astype(np.float32) / 32768.0
    x = x.reshape(-1, ch).mean(axis=1)
    if x.size < SR // 10 or not np.any(x):
        raise DatasetError(f"noise file {p} is shorter than 0.1 s or silent", "give a recording of the background")
    return x


def babble_pool(cache: Path | None, seed: int, voices: Sequence[str], variants: Sequence[str],
                speeds: Sequence[int], pitches: Sequence[int], n: int = BABBLE_SENTENCES,
                progress: bool = True, store_name: str = "kws-babble.npz") -> BabblePool:
    """``n`` sentences of babble words, each by a random one of these talkers (cached like the keywords)."""
    rng = np.random.default_rng(seed)
    jobs = [Job(t, str(rng.choice(voices)), str(rng.choice(variants)), int(rng.choice(speeds)),
                int(rng.choice(pitches))) for t in sentences(n, rng)]
    audio = synthesize_all(jobs, cache, progress=progress, store_name=store_name)
    return BabblePool([audio[j.key] for j in jobs])


@dataclass(frozen=True)
class ClipCounts:
    """Clips per keyword and per unknown word in each split (training, evaluation, held-out speakers)."""

    per_keyword: int = 400
    per_unknown: int = 60
    # evaluation clips are split in thirds (temperatures, thresholds, test); the threshold third is ~4000 clips, so
    # each background condition has ~1000 and its test part ~700: a guarantee at 1 pp and 90% confidence held in
    # each condition needs a test part of at least 230 with no error at all, and several hundred to allow a few
    eval_per_keyword: int = 900
    eval_per_unknown: int = 72
    heldout_per_keyword: int = 120
    heldout_per_unknown: int = 12
    # unknown-word clips in each training epoch, as a multiple of the training clips per keyword (None: all of
    # them). The 32
    # unknown words give variety, but all of them every epoch make "unknown" 4.8 keywords' worth of the data (the
    # tests weigh it as one class in twelve), which pulls a keyword in an unfamiliar voice towards "unknown";
    # each epoch draws a fresh subset instead.
    unknown_per_epoch: float | None = 1.5

    @classmethod
    def for_keyword_clips(cls, n: int) -> ClipCounts:
        """``n`` training clips per keyword, unknown words scaled alike (the defaults' 60 per 400)."""
        if n < 1:
            raise UsageError(f"--clips-per-keyword must be at least 1 (got {n})")
        return cls(per_keyword=n, per_unknown=max(1, round(n * 0.15)))


def load(cache_dir: str | os.PathLike[str] | None = None, seed: int = 0, counts: ClipCounts = ClipCounts(),
         train_limit: int | None = None, words: list[str] | None = None, progress: bool = True,
         voices: Sequence[str] | None = None, noise_files: Sequence[str | os.PathLike[str]] = (),
         babble: bool = True) -> Dataset:
    """Build the data set (see module doc). ``train_limit`` caps the training clips (quick runs);
    ``words`` restricts the keyword list (tests); ``voices`` replaces the training voices; ``noise_files``
    adds recorded backgrounds (16 kHz WAV); ``babble=False`` leaves background speech out.
    Bad input is refused before anything is synthesised or written."""
    exe = espeak_path()
    if words is not None:
        check_words(words, exe)
    train_voices = check_voices(voices, exe) if voices is not None else list(TRAIN_VOICES)
    noises = [read_noise(f) for f in noise_files]
    rng = np.random.default_rng(seed)
    kws = words or KEYWORDS
    train_c = [(v, var) for v in train_voices for var in TRAIN_VARIANTS]
    held_c = [(v, var) for v in HELDOUT_VOICES for var in HELDOUT_VARIANTS]
    unk = UNKNOWN_WORDS if words is None else UNKNOWN_WORDS[:4]
    c = counts
    tr = _jobs(kws, train_c, c.per_keyword, TRAIN_SPEEDS, TRAIN_PITCHES, rng) + \
        _jobs(unk, train_c, c.per_unknown, TRAIN_SPEEDS, TRAIN_PITCHES, rng)
    ev = _jobs(kws, train_c, c.eval_per_keyword, EVAL_SPEEDS, EVAL_PITCHES, rng) + \
        _jobs(unk, train_c, c.eval_per_unknown, EVAL_SPEEDS, EVAL_PITCHES, rng)
    ho = _jobs(kws, held_c, c.heldout_per_keyword, HELDOUT_SPEEDS, HELDOUT_PITCHES, rng) + \
        _jobs(unk, held_c, c.heldout_per_unknown, HELDOUT_SPEEDS, HELDOUT_PITCHES, rng)
    if train_limit is not None:
        sel = rng.permutation(len(tr))[:train_limit]
        tr = [tr[i] for i in sorted(sel)]
        ev = [ev[i] for i in sorted(rng.permutation(len(ev))[: max(train_limit // 2, 24)])]
        ho = [ho[i] for i in sorted(rng.permutation(len(ho))[: max(train_limit // 4, 12)])]
    cache = Path(cache_dir) if cache_dir is not None else None
    audio = synthesize_all([j for j, _ in tr + ev + ho], cache, progress=progress)
    # babble talkers are training speakers; the sentences never contain a keyword
    pool = babble_pool(cache, seed, train_voices, TRAIN_VARIANTS, TRAIN_SPEEDS, TRAIN_PITCHES,
                       n=BABBLE_SENTENCES if train_limit is None else 8, progress=progress) if babble else None

    def items(jobs: list[tuple[Job, int]], n_silence: int, unknown_draw: int | None = None,
              warp: tuple[float, float] | None = None) -> Items:
        a: list[np.ndarray | None] = [audio[j.key] for j, _ in jobs] + [None] * n_silence
        lab = np.array([lbl for _, lbl in jobs] + [0] * n_silence, dtype=np.int64)
        return Items(a, lab, pool, noises, unknown_draw, warp)

    n_kw_train = max(len(tr) // (len(kws) + 3), 4)
    n_kw_clips = sum(1 for _, lbl in tr if lbl >= 2) // len(kws)
    draw = None if c.unknown_per_epoch is None else max(int(round(c.unknown_per_epoch * n_kw_clips)), 1)
    train_items = items(tr, n_kw_train, draw, WARP)
    eval_items = items(ev, max(len(ev) // (len(kws) + 3), 6))
    held_items = items(ho, max(len(ho) // (len(kws) + 3), 3))
    ev_split = eval_items.features(seed + 101, "eval")
    perm = torch.from_numpy(np.random.default_rng(seed + 7).permutation(len(ev_split)))
    thirds = len(perm) // 3
    ds = Dataset(
        train=train_items.features(seed + 100, "train"),
        calib_temp=ev_split.subset(perm[:thirds], "calib_temp"),
        calib_thr=ev_split.subset(perm[thirds: 2 * thirds], "calib_thr"),
        test=ev_split.subset(perm[2 * thirds:], "test_train_voices"),
        labels=list(LABELS),
        preprocess=dict(PREPROCESS),
        layout="NCTF",
        task="keyword_spotting",
        extra={"test_heldout_voices": held_items.features(seed + 102, "test_heldout_voices")},
        augment="time_mask",
    )
    fresh: Callable[[int], TensorSplit] = lambda s: train_items.features(s, "train")  # noqa: E731
    ds.train_fn = fresh
    ds.meta = {
        "synthesiser": "espeak-ng", "train_voices": train_voices, "heldout_voices": HELDOUT_VOICES,
        "train_variants": TRAIN_VARIANTS, "heldout_variants": HELDOUT_VARIANTS,
        "train_speeds": TRAIN_SPEEDS, "train_pitches": TRAIN_PITCHES, "eval_speeds": EVAL_SPEEDS,
        "eval_pitches": EVAL_PITCHES, "heldout_speeds": HELDOUT_SPEEDS, "heldout_pitches": HELDOUT_PITCHES,
        "unknown_words": unk, "noises": list(NOISES), "babble": bool(babble),
        "babble_sentences": len(pool) if pool is not None else 0, "snr_db": list(SNR_DB),
        "background_p": BACKGROUND_P, "reverb_p": REVERB_P, "clips_per_keyword": c.per_keyword,
        "unknown_clips_per_epoch": draw, "warp": list(WARP),
        "noise_files": [Path(f).name for f in noise_files],
    }
    return ds
