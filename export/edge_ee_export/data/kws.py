"""Synthetic keyword-spotting data set made with ``espeak-ng``.

Twelve classes as in MLPerf Tiny / Speech Commands: ``silence``, ``unknown`` and the ten keywords
yes/no/up/down/left/right/on/off/stop/go. Each utterance is synthesised by espeak-ng with a voice
(English accent), a voice variant (``+f3``, ``+klatt2``...), a speed and a pitch, resampled to
16 kHz, placed at a random time in a 1 s clip, scaled to a random level and mixed with background
noise (white/pink/brown/hum at a random SNR); ``silence`` clips are noise only. Features are the
MLPerf Tiny MFCCs from :func:`edge_ee.pipeline.features.mfcc_features` (the runtime's own front end).

Speakers never used in training make the honest test: ``test_heldout`` uses held-out voices
(accents) and held-out variants only. ``test`` uses the training voices and variants with speeds
and pitches never used in training (synthetic speech is deterministic, so a split of identical
settings would be memorised). Calibration splits come from the same unseen-prosody pool.

Synthesised audio is cached (int16) under the cache directory, keyed by the job list.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_ee.pipeline.features import DEFAULT_SPEC, feature_shape, mfcc_features

from ..errors import DatasetError
from . import Dataset, TensorSplit

log = logging.getLogger("edge_ee_export")

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
LABELS = ["silence", "unknown", *KEYWORDS]
UNKNOWN_WORDS = ["bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero", "one",
                 "two", "three", "four", "five", "six", "seven", "eight", "nine", "learn", "follow", "forward",
                 "backward", "visual", "yet", "nose", "cup", "town", "lift", "bright", "own"]
TRAIN_VOICES = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
HELDOUT_VOICES = ["en-029", "en-us-nyc"]
TRAIN_VARIANTS = ["", "adam", "Alex", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "boris", "caleb",
                  "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene2", "gustave", "Henrique", "Hugo",
                  "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee", "marcelo", "Marco",
                  "Mario", "max", "Michael", "michel", "miguel", "Mike", "Nguyen", "pablo", "paul", "pedro",
                  "rob", "robert", "robosoft", "robosoft3", "steph", "steph3", "Storm", "Tweaky", "anika",
                  "AnxiousAndy", "f1", "f2", "f3", "f5", "whisperf", "grandpa", "klatt", "klatt2", "klatt4",
                  "klatt5", "m1", "m2", "m3", "m4", "m6", "m7", "m8", "norbert", "sandro", "shelby", "travis",
                  "victor", "croak"]
HELDOUT_VARIANTS = ["f4", "m5", "Alicia", "benjamin", "klatt3", "Gene", "linda", "quincy", "steph2", "whisper",
                    "zac", "grandma"]
TRAIN_SPEEDS = [115, 135, 155, 175, 195]
TRAIN_PITCHES = [20, 35, 50, 65, 80]
EVAL_SPEEDS = [125, 145, 165, 185]
EVAL_PITCHES = [28, 43, 58, 72]
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
                   progress: bool = True) -> dict[str, np.ndarray]:
    """Synthesise every job (once per distinct setting); cache int16 audio in ``cache_dir/kws-audio.npz``."""
    exe = espeak_path()
    uniq = sorted({j.key: j for j in jobs}.values(), key=lambda j: j.key)
    path = cache_dir / "kws-audio.npz" if cache_dir is not None else None
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


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(n)
    if kind == "white":
        y = w
    elif kind in ("pink", "brown"):
        f = np.fft.rfftfreq(n, 1 / SR)
        f[0] = f[1]
        s = np.fft.rfft(w) / (np.sqrt(f) if kind == "pink" else f)
        y = np.fft.irfft(s, n)
    elif kind == "hum":
        t = np.arange(n) / SR
        base = rng.choice([50.0, 60.0])
        y = sum(np.sin(2 * np.pi * base * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3, 5)) + 0.1 * w
    else:
        raise ValueError(kind)
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)


NOISES = ("white", "pink", "brown", "hum")


def make_clip(utt: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """A 1 s clip: the utterance at a random offset and level plus background noise; ``None``: silence."""
    clip = np.zeros(CLIP, np.float32)
    if utt is not None and utt.size:
        u = utt
        if len(u) > CLIP:
            s = rng.integers(0, len(u) - CLIP + 1)
            u = u[s: s + CLIP]
        off = rng.integers(0, CLIP - len(u) + 1)
        peak = float(np.abs(u).max()) + 1e-9
        level = float(np.exp(rng.uniform(np.log(0.05), np.log(0.9))))
        clip[off: off + len(u)] = u * (level / peak)
        sig_rms = float(np.sqrt(np.mean((u * (level / peak)) ** 2)))
        if rng.random() < 0.85:
            snr = rng.uniform(5.0, 35.0)
            clip += noise(str(rng.choice(NOISES)), CLIP, rng) * sig_rms / (10 ** (snr / 20))
        clip += rng.standard_normal(CLIP).astype(np.float32) * 1e-4
    else:
        lvl = float(np.exp(rng.uniform(np.log(1e-4), np.log(0.08))))
        clip += noise(str(rng.choice(NOISES)), CLIP, rng) * lvl if rng.random() < 0.9 else 0.0
        clip += rng.standard_normal(CLIP).astype(np.float32) * 1e-5
    return np.clip(clip, -1.0, 1.0)


@dataclass
class Items:
    """Utterances (``None`` = silence) and their labels."""

    audio: list[np.ndarray | None]
    labels: np.ndarray

    def features(self, seed: int, name: str) -> TensorSplit:
        rng = np.random.default_rng(seed)
        parts = [np.zeros((0, *feature_shape(PREPROCESS)), np.float32)]
        for i in range(0, len(self.audio), 256):  # chunks keep the STFT buffers small
            clips = np.stack([make_clip(a, rng) for a in self.audio[i: i + 256]])
            parts.append(mfcc_features(clips, PREPROCESS))
        f = np.concatenate(parts)
        return TensorSplit(torch.from_numpy(f).float().unsqueeze(1), torch.from_numpy(self.labels.astype(np.int64)),
                           name)


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


def load(cache_dir: str | os.PathLike[str] | None = None, seed: int = 0, per_keyword: int = 400,
         per_unknown: int = 60, eval_per_keyword: int = 300, eval_per_unknown: int = 24,
         heldout_per_keyword: int = 120, heldout_per_unknown: int = 12, train_limit: int | None = None,
         words: list[str] | None = None, progress: bool = True) -> Dataset:
    """Build the data set (see module doc). ``train_limit`` caps the training clips (quick runs);
    ``words`` restricts the keyword list (tests)."""
    espeak_path()
    rng = np.random.default_rng(seed)
    kws = words or KEYWORDS
    train_c = [(v, var) for v in TRAIN_VOICES for var in TRAIN_VARIANTS]
    held_c = [(v, var) for v in HELDOUT_VOICES for var in TRAIN_VARIANTS + HELDOUT_VARIANTS] + \
             [(v, var) for v in TRAIN_VOICES for var in HELDOUT_VARIANTS]
    unk = UNKNOWN_WORDS if words is None else UNKNOWN_WORDS[:4]
    tr = _jobs(kws, train_c, per_keyword, TRAIN_SPEEDS, TRAIN_PITCHES, rng) + \
        _jobs(unk, train_c, per_unknown, TRAIN_SPEEDS, TRAIN_PITCHES, rng)
    ev = _jobs(kws, train_c, eval_per_keyword, EVAL_SPEEDS, EVAL_PITCHES, rng) + \
        _jobs(unk, train_c, eval_per_unknown, EVAL_SPEEDS, EVAL_PITCHES, rng)
    ho = _jobs(kws, held_c, heldout_per_keyword, TRAIN_SPEEDS + EVAL_SPEEDS, TRAIN_PITCHES + EVAL_PITCHES, rng) + \
        _jobs(unk, held_c, heldout_per_unknown, TRAIN_SPEEDS + EVAL_SPEEDS, TRAIN_PITCHES + EVAL_PITCHES, rng)
    if train_limit is not None:
        sel = rng.permutation(len(tr))[:train_limit]
        tr = [tr[i] for i in sorted(sel)]
        ev = [ev[i] for i in sorted(rng.permutation(len(ev))[: max(train_limit // 2, 24)])]
        ho = [ho[i] for i in sorted(rng.permutation(len(ho))[: max(train_limit // 4, 12)])]
    cache = Path(cache_dir) if cache_dir is not None else None
    audio = synthesize_all([j for j, _ in tr + ev + ho], cache, progress=progress)

    def items(jobs: list[tuple[Job, int]], n_silence: int) -> Items:
        a: list[np.ndarray | None] = [audio[j.key] for j, _ in jobs] + [None] * n_silence
        lab = np.array([lbl for _, lbl in jobs] + [0] * n_silence, dtype=np.int64)
        return Items(a, lab)

    n_kw_train = max(len(tr) // (len(kws) + 3), 4)
    train_items = items(tr, n_kw_train)
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
        "synthesiser": "espeak-ng", "train_voices": TRAIN_VOICES, "heldout_voices": HELDOUT_VOICES,
        "train_variants": TRAIN_VARIANTS, "heldout_variants": HELDOUT_VARIANTS,
        "train_speeds": TRAIN_SPEEDS, "train_pitches": TRAIN_PITCHES, "eval_speeds": EVAL_SPEEDS,
        "eval_pitches": EVAL_PITCHES, "unknown_words": unk, "noises": list(NOISES),
    }
    return ds
