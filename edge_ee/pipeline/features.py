"""Keyword-spotting front end (MLPerf Tiny KWS / DS-CNN), numpy only.

One implementation shared by the runtime (live audio sources) and the exporter (training data), so
the features a bundle was trained on are exactly the features it sees on the device.

The pipeline follows the MLPerf Tiny reference (``tf.signal`` based):

1. ``pcm`` float in [-1, 1] at ``sample_rate`` (16 kHz), one clip of ``clip_samples`` (1 s);
2. frames of ``window_ms`` (30 ms = 480 samples) every ``stride_ms`` (20 ms = 320 samples), no
   padding: ``1 + (16000 - 480) // 320 = 49`` frames;
3. periodic Hann window, frame zero-padded at the end to ``n_fft`` (512), magnitude of the real FFT
   (257 bins);
4. ``n_mels`` (40) triangular filters on the HTK mel scale (``mel = 1127 ln(1 + f/700)``) between
   ``fmin`` (20 Hz) and ``fmax`` (4000 Hz), weights computed in the mel domain, DC bin zeroed (as
   ``tf.signal.linear_to_mel_weight_matrix``);
5. ``log(mel + log_offset)`` (1e-6);
6. DCT-II scaled by ``sqrt(2 / n_mels)`` (as ``tf.signal.mfccs_from_log_mel_spectrograms``), first
   ``n_mfcc`` (10) coefficients -> ``[49, 10]``.

The ``spec`` dict is the bundle's ``input.preprocess`` (``kind: "audio_mfcc"``). Optional key
``peak_normalize`` (default false): divide the clip by its peak absolute value first.

Stable API: :func:`mfcc_features`, :func:`feature_shape`, :data:`DEFAULT_SPEC`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

DEFAULT_SPEC: dict[str, Any] = {
    "kind": "audio_mfcc",
    "sample_rate": 16000,
    "clip_samples": 16000,
    "window_ms": 30,
    "stride_ms": 20,
    "n_fft": 512,
    "n_mels": 40,
    "fmin": 20,
    "fmax": 4000,
    "n_mfcc": 10,
    "log_offset": 1e-6,
}

_KEYS = ("sample_rate", "clip_samples", "window_ms", "stride_ms", "n_fft", "n_mels", "fmin", "fmax", "n_mfcc",
         "log_offset")


def _params(spec: dict[str, Any] | None) -> tuple:
    s = {**DEFAULT_SPEC, **(spec or {})}
    return tuple(s[k] for k in _KEYS) + (bool(s.get("peak_normalize", False)),)


def _frame_geometry(sample_rate: int, window_ms: float, stride_ms: float) -> tuple[int, int]:
    win = int(round(sample_rate * window_ms / 1000.0))
    hop = int(round(sample_rate * stride_ms / 1000.0))
    return win, hop


def feature_shape(spec: dict[str, Any] | None = None) -> tuple[int, int]:
    """``(frames, n_mfcc)`` produced for one clip, e.g. ``(49, 10)``."""
    sr, clip, wms, sms, _nfft, _nm, _lo, _hi, n_mfcc, _off, _pk = _params(spec)
    win, hop = _frame_geometry(sr, wms, sms)
    return 1 + (int(clip) - win) // hop, int(n_mfcc)


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=64)
def _mel_matrix(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, warp: float = 1.0) -> np.ndarray:
    """``[bins, n_mels]`` triangular filters; ``warp`` != 1 reads bin frequency ``f`` as ``f * warp`` (a longer or
    shorter vocal tract: VTLP, training augmentation only)."""
    bins = n_fft // 2 + 1
    freqs = np.linspace(0.0, sr / 2.0, bins)[1:] * warp  # DC bin excluded, padded back as zeros
    mel_bins = hz_to_mel(freqs)[:, None]
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    up = (mel_bins - lower) / (center - lower)
    down = (upper - mel_bins) / (upper - center)
    mel = np.maximum(0.0, np.minimum(up, down))
    return np.concatenate([np.zeros((1, n_mels)), mel], axis=0)


@lru_cache(maxsize=16)
def _tables(sr: int, win: int, n_fft: int, n_mels: int, fmin: float, fmax: float,
            n_mfcc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.arange(win)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / win)).astype(np.float64)  # periodic Hann
    mel = _mel_matrix(sr, n_fft, n_mels, fmin, fmax)
    k = np.arange(n_mfcc)[None, :]
    m = np.arange(n_mels)[:, None]
    dct = 2.0 * np.cos(np.pi * k * (2 * m + 1) / (2.0 * n_mels)) / np.sqrt(2.0 * n_mels)  # [n_mels, n_mfcc]
    return window, mel, dct


def _fit_length(pcm: np.ndarray, clip: int) -> np.ndarray:
    n = pcm.shape[-1]
    if n == clip:
        return pcm
    if n > clip:  # keep the most recent audio
        return pcm[..., n - clip:]
    pad = [(0, 0)] * (pcm.ndim - 1) + [(0, clip - n)]
    return np.pad(pcm, pad)


def mfcc_features(pcm_float32_16k: np.ndarray, spec: dict[str, Any] | None = None,
                  warp: np.ndarray | None = None) -> np.ndarray:
    """MFCC features of one clip ``[clip_samples]`` -> ``[frames, n_mfcc]`` float32 (``[49, 10]``).

    A batch ``[B, clip_samples]`` gives ``[B, frames, n_mfcc]``. int16 input is scaled by 1/32768.
    A clip shorter than ``clip_samples`` is zero-padded at the end; a longer one keeps its last
    ``clip_samples`` samples (the most recent audio of a stream).

    ``warp`` (training augmentation; the runtime never passes it): one frequency-warp factor per clip of a
    batch, rounded to 0.01, applied to the mel filterbank (vocal tract length perturbation).
    """
    sr, clip, wms, sms, n_fft, n_mels, fmin, fmax, n_mfcc, log_offset, peak = _params(spec)
    x = np.asarray(pcm_float32_16k)
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    else:
        x = x.astype(np.float64, copy=False)
    if x.ndim not in (1, 2):
        raise ValueError(f"mfcc_features: expected [samples] or [batch, samples], got shape {x.shape}")
    x = _fit_length(x, int(clip))
    if peak:
        m = np.max(np.abs(x), axis=-1, keepdims=True)
        x = x / np.where(m > 0, m, 1.0)
    win, hop = _frame_geometry(int(sr), wms, sms)
    if win > n_fft:
        raise ValueError(f"mfcc_features: window of {win} samples is longer than n_fft={n_fft}")
    window, mel, dct = _tables(int(sr), win, int(n_fft), int(n_mels), float(fmin), float(fmax), int(n_mfcc))
    frames_n = 1 + (int(clip) - win) // hop
    idx = np.arange(frames_n)[:, None] * hop + np.arange(win)[None, :]
    frames = x[..., idx] * window  # [..., frames, win]
    mag = np.abs(np.fft.rfft(frames, n=int(n_fft), axis=-1))  # zero-padded at the end to n_fft
    if warp is None:
        log_mel = np.log(mag @ mel + float(log_offset))
    else:
        w = np.round(np.asarray(warp, dtype=np.float64), 2)
        if w.shape != x.shape[:-1]:
            raise ValueError(f"mfcc_features: warp needs one factor per clip, shape {x.shape[:-1]}, got {w.shape}")
        log_mel = np.empty(mag.shape[:-1] + (int(n_mels),))
        for a in np.unique(w):
            rows = w == a
            m = _mel_matrix(int(sr), int(n_fft), int(n_mels), float(fmin), float(fmax), float(a))
            log_mel[rows] = np.log(mag[rows] @ m + float(log_offset))
    return (log_mel @ dct).astype(np.float32)
