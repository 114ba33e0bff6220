"""The MLPerf Tiny KWS front end against a straightforward per-frame reference computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_ee.pipeline.features import DEFAULT_SPEC, feature_shape, mfcc_features


def reference_mfcc(pcm: np.ndarray) -> np.ndarray:
    """Per-frame loop, explicit DFT, filters and DCT written from the spec (tf.signal semantics)."""
    sr, win, hop, n_fft, n_mels, lo, hi, n_mfcc = 16000, 480, 320, 512, 40, 20.0, 4000.0, 10

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    bins = n_fft // 2 + 1
    bin_hz = [sr / 2.0 * i / (bins - 1) for i in range(bins)]
    edges = [mel(lo) + (mel(hi) - mel(lo)) * i / (n_mels + 1) for i in range(n_mels + 2)]
    weights = np.zeros((bins, n_mels))
    for b in range(1, bins):  # bin 0 (DC) gets no weight
        m = mel(bin_hz[b])
        for j in range(n_mels):
            left, center, right = edges[j], edges[j + 1], edges[j + 2]
            if left < m <= center:
                weights[b, j] = (m - left) / (center - left)
            elif center < m < right:
                weights[b, j] = (right - m) / (right - center)
    hann = [0.5 - 0.5 * math.cos(2 * math.pi * n / win) for n in range(win)]
    k = np.arange(bins)[:, None]
    n = np.arange(n_fft)[None, :]
    dft = np.exp(-2j * np.pi * k * n / n_fft)  # explicit DFT matrix, not np.fft
    frames = 1 + (len(pcm) - win) // hop
    out = np.zeros((frames, n_mfcc))
    for t in range(frames):
        buf = np.zeros(n_fft)
        for i in range(win):
            buf[i] = pcm[t * hop + i] * hann[i]
        mag = np.abs(dft @ buf)
        log_mel = [math.log(sum(mag[b] * weights[b, j] for b in range(bins)) + 1e-6) for j in range(n_mels)]
        for c in range(n_mfcc):
            s = sum(log_mel[j] * math.cos(math.pi * c * (2 * j + 1) / (2 * n_mels)) for j in range(n_mels))
            out[t, c] = 2.0 * s / math.sqrt(2.0 * n_mels)  # tf.signal.dct(type 2) * rsqrt(2 * n_mels)
    return out


def test_shape_matches_mlperf() -> None:
    assert feature_shape() == (49, 10)
    assert mfcc_features(np.zeros(16000, np.float32)).shape == (49, 10)
    assert mfcc_features(np.zeros((3, 16000), np.float32), DEFAULT_SPEC).shape == (3, 49, 10)


@pytest.mark.slow
def test_matches_reference_loop() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1800 * t * (1 + t))
           + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    got = mfcc_features(pcm)
    ref = reference_mfcc(pcm.astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-3)


def test_silence_has_known_cepstrum() -> None:
    # log(0 + 1e-6) in every band: c0 = 40 * log(1e-6) * 2 / sqrt(80), all other coefficients 0
    f = mfcc_features(np.zeros(16000, np.float32))
    np.testing.assert_allclose(f[:, 0], 40 * math.log(1e-6) * 2 / math.sqrt(80), rtol=1e-5)
    np.testing.assert_allclose(f[:, 1:], 0.0, atol=1e-4)


def test_int16_and_length_handling() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16000) * 3000).astype(np.int16)
    np.testing.assert_allclose(mfcc_features(x), mfcc_features(x.astype(np.float32) / 32768.0), rtol=1e-5,
                               atol=1e-4)
    longer = np.concatenate([np.ones(500, np.float32), x.astype(np.float32) / 32768.0])
    np.testing.assert_allclose(mfcc_features(longer), mfcc_features(x.astype(np.float32) / 32768.0), atol=1e-4)
    assert mfcc_features(np.zeros(8000, np.float32)).shape == (49, 10)


def test_tone_lands_in_its_mel_band() -> None:
    t = np.arange(16000) / 16000
    a = mfcc_features((0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
    b = mfcc_features((0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32))
    # c1 weights low bands positively and high bands negatively
    assert a[:, 1].mean() > b[:, 1].mean()


def test_frequency_warp_moves_a_tone_like_a_higher_voice() -> None:
    """Training-only vocal tract length perturbation: warp 1 is the plain front end; warp > 1 reads a tone as
    a higher one (c1 falls, as from 300 Hz towards 3 kHz); one factor per clip is required."""
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 600 * t)).astype(np.float32)
    batch = np.stack([tone, tone, tone])
    plain = mfcc_features(batch)
    warped = mfcc_features(batch, warp=np.array([1.0, 1.25, 0.8]))
    assert np.array_equal(warped[0], plain[0])
    assert warped[1][:, 1].mean() < plain[0][:, 1].mean() < warped[2][:, 1].mean()
    with pytest.raises(ValueError, match="one factor per clip"):
        mfcc_features(batch, warp=np.array([1.0, 1.1]))
