"""Streaming band-limited resampling (windowed-sinc interpolation), numpy only.

A microphone that only offers 44.1 or 48 kHz, or a WAV recorded at 8 kHz, is converted to the
model's rate (16 kHz) chunk by chunk: the state carries the last few input samples over, so the
result does not depend on how the stream was chunked.
"""

from __future__ import annotations

import math

import numpy as np


class StreamResampler:
    """Resample a stream from ``src_rate`` to ``dst_rate``.

    Output sample ``n`` is the input interpolated at time ``n * src/dst`` (in input samples) with a
    Kaiser-windowed sinc of ``half_width`` zero crossings per side, low-passed at
    ``min(src, dst) / 2 * rolloff`` to avoid aliasing when downsampling.
    """

    def __init__(self, src_rate: int, dst_rate: int, half_width: int = 10, rolloff: float = 0.94,
                 beta: float = 8.0) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        g = math.gcd(int(src_rate), int(dst_rate))
        self.src_rate, self.dst_rate = int(src_rate), int(dst_rate)
        self.up, self.down = self.dst_rate // g, self.src_rate // g  # output n <-> input n*down/up
        self.cutoff = min(1.0, self.dst_rate / self.src_rate) * rolloff  # in cycles per input sample * 2
        self.half = int(math.ceil(half_width / self.cutoff))  # input taps per side
        self.beta = beta
        offs = np.arange(-self.half, self.half + 1)
        # polyphase table: output n sits at fraction (n * down mod up) / up past an input sample
        frac = np.arange(self.up) / self.up
        self._table = self._kernel(frac[:, None] - offs[None, :])  # [up, taps]
        self._hist = np.zeros(0, dtype=np.float64)  # input samples kept, starting at _hist_start
        self._hist_start = 0
        self._n_in = 0  # input samples received
        self._n_out = 0  # output samples produced

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def _kernel(self, d: np.ndarray) -> np.ndarray:
        x = d / (self.half + 1)
        win = np.i0(self.beta * np.sqrt(np.clip(1.0 - x * x, 0.0, 1.0))) / np.i0(self.beta)
        return self.cutoff * np.sinc(self.cutoff * d) * win

    def _produce(self, final: bool) -> np.ndarray:
        # outputs whose right-most tap is available (or every output up to the end when final)
        if final:
            n_end = -(-self._n_in * self.up // self.down)  # ceil: total output length
        else:
            avail = self._n_in - 1 - self.half  # centre position whose taps are all known
            n_end = max(0, (avail * self.up) // self.down + 1) if avail >= 0 else 0
        n0 = self._n_out
        if n_end <= n0:
            return np.zeros(0, dtype=np.float32)
        n = np.arange(n0, n_end, dtype=np.int64)
        base = (n * self.down) // self.up  # input sample at or before each output's position
        phase = (n * self.down) % self.up
        # history padded with silence on both sides so every tap has a value
        lo = int(base[0]) - self.half
        hi = int(base[-1]) + self.half + 1
        seg = np.zeros(hi - lo, dtype=np.float64)
        a, b = max(lo, self._hist_start), min(hi, self._hist_start + self._hist.size)
        if b > a:
            seg[a - lo:b - lo] = self._hist[a - self._hist_start:b - self._hist_start]
        windows = np.lib.stride_tricks.sliding_window_view(seg, 2 * self.half + 1)[base - base[0]]
        y = np.einsum("ij,ij->i", windows, self._table[phase])
        self._n_out = n_end
        # drop history no longer needed by the next output
        next_t = n_end * self.down / self.up
        keep_from = max(0, int(math.floor(next_t)) - self.half - 1)
        cut = keep_from - self._hist_start
        if cut > 0:
            self._hist = self._hist[cut:]
            self._hist_start = keep_from
        return y.astype(np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).ravel()
        if self.identity:
            self._n_in += x.size
            self._n_out += x.size
            return x.astype(np.float32)
        self._hist = np.concatenate([self._hist, x])
        self._n_in += x.size
        return self._produce(final=False)

    def flush(self) -> np.ndarray:
        """The remaining outputs at the end of the stream (the future is taken as silence)."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        return self._produce(final=True)


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole signal (float32 out)."""
    r = StreamResampler(src_rate, dst_rate)
    return np.concatenate([r.process(x), r.flush()])
