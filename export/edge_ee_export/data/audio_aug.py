"""Audio augmentation for keyword spotting (numpy only): background speech (babble), room
reverberation with synthetic impulse responses, stationary noise, mixing at a given SNR.

The exporter's training clips and the KWS benchmark's test conditions are both made here, so a
condition means the same thing in training and in evaluation; what keeps them apart is the
material (training talkers and sentences vs held-out ones), never the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SR = 16000
NOISES = ("white", "pink", "brown", "hum")
# Words for babble sentences: common English words that neither are nor sound like a keyword
# (no "know"/"now"/"yet"/"of"/"top"/"write"...), so babble never says the keyword itself.
BABBLE_WORDS = (
    "the", "a", "we", "they", "it", "was", "is", "have", "this", "that", "with", "from", "there", "when", "what",
    "which", "their", "would", "about", "many", "then", "them", "these", "some", "her", "him", "into", "time",
    "has", "look", "more", "number", "way", "could", "people", "than", "first", "water", "been", "call", "who",
    "find", "long", "day", "did", "get", "come", "made", "may", "part", "over", "new", "sound", "take", "only",
    "little", "work", "place", "year", "live", "back", "give", "most", "very", "after", "thing", "our", "just",
    "name", "good", "man", "think", "say", "great", "where", "help", "through", "much", "before", "line",
    "mean", "old", "any", "same", "tell", "boy", "came", "want", "show", "also", "around", "form", "small",
    "put", "end", "does", "another", "well", "large", "must", "big", "even", "such", "because", "here", "why",
    "ask", "went", "men", "read", "need", "land", "different", "home", "us", "move", "try", "kind", "hand",
    "picture", "again", "change", "play", "spell", "air", "away", "animal", "point", "page", "letter", "mother",
    "answer", "found", "study", "still", "should", "country", "plant", "food", "between", "city", "morning",
    "family", "table", "window", "garden", "music", "paper", "river", "market", "evening", "children",
)


def sentences(n: int, rng: np.random.Generator, words: tuple[str, ...] = BABBLE_WORDS) -> list[str]:
    """``n`` random sentences of 5-9 babble words."""
    return [" ".join(rng.choice(words, int(rng.integers(5, 10)))) for _ in range(n)]


def unit_rms(y: np.ndarray) -> np.ndarray:
    return (y / (np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-12)).astype(np.float32)


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary noise of unit RMS: white, pink (1/f), brown (1/f^2) or mains hum with harmonics."""
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
    return unit_rms(y)


@dataclass
class BabblePool:
    """Synthesised sentences to draw background talkers from (float32, 16 kHz)."""

    utterances: list[np.ndarray]

    def __post_init__(self) -> None:
        self.utterances = [u for u in self.utterances if u.size > 0]
        self._unit = [u / (np.sqrt(np.mean(u.astype(np.float64) ** 2)) + 1e-12) for u in self.utterances]

    def __len__(self) -> int:
        return len(self.utterances)

    def babble(self, n: int, rng: np.random.Generator, talkers: int | tuple[int, int] = (3, 7)) -> np.ndarray:
        """``n`` samples of several talkers at once (unit RMS), each a random stretch of a looped sentence
        at a random level within 6 dB."""
        if not self.utterances:
            raise ValueError("empty babble pool")
        k = talkers if isinstance(talkers, int) else int(rng.integers(talkers[0], talkers[1] + 1))
        out = np.zeros(n, np.float64)
        for _ in range(k):
            u = self._unit[int(rng.integers(len(self._unit)))]
            gap = np.zeros(int(rng.integers(SR // 20, SR // 4)))  # breath between sentences
            loop = np.concatenate([u, gap])
            start = int(rng.integers(loop.size))
            out += loop[(start + np.arange(n)) % loop.size] * 10 ** (rng.uniform(-6, 0) / 20)
        return unit_rms(out)


def room_ir(rng: np.random.Generator, rt60: float | tuple[float, float] = (0.2, 0.8)) -> np.ndarray:
    """A synthetic room impulse response: the direct path, a few early reflections, then exponentially
    decaying noise with reverberation time ``rt60`` seconds (energy down 60 dB); unit energy."""
    t60 = rt60 if isinstance(rt60, float) else float(rng.uniform(*rt60))
    n = int(SR * min(t60, 1.0))
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / t60)
    onset = int(SR * rng.uniform(0.002, 0.01))  # tail starts after the first reflections arrive
    tail[:onset] = 0.0
    ir = tail * 10 ** (rng.uniform(-12, -3) / 20) / (np.sqrt(np.sum(tail**2)) + 1e-12)
    ir[0] = 1.0
    for _ in range(4):
        ir[int(rng.integers(SR // 1000, max(onset, SR // 1000 + 1)))] += rng.uniform(-0.6, 0.6)
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def reverberate(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``ir`` (FFT), cut to ``len(x) + len(ir) - 1`` samples, same RMS as ``x``."""
    n = x.size + ir.size - 1
    m = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, m) * np.fft.rfft(ir, m), m)[:n]
    rx = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return (y * rx / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)


def at_snr(background: np.ndarray, signal_rms: float, snr_db: float) -> np.ndarray:
    """``background`` (unit RMS) scaled so that signal / background = ``snr_db``."""
    return (background * (signal_rms / 10 ** (snr_db / 20))).astype(np.float32)
