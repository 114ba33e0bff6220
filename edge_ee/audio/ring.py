"""A fixed-size ring buffer of float32 samples that remembers how many samples it has ever seen."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Keeps the last ``capacity`` samples. ``total`` counts every sample written (stream position)."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("RingBuffer capacity must be positive")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._pos = 0  # next write index
        self.total = 0

    def write(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).ravel()
        n = x.size
        if n == 0:
            return
        if n >= self.capacity:
            self._buf[:] = x[-self.capacity:]
            self._pos = 0
        else:
            end = self._pos + n
            if end <= self.capacity:
                self._buf[self._pos:end] = x
            else:
                k = self.capacity - self._pos
                self._buf[self._pos:] = x[:k]
                self._buf[:n - k] = x[k:]
            self._pos = end % self.capacity
        self.total += n

    def latest(self, n: int | None = None) -> np.ndarray:
        """The most recent ``n`` samples (oldest first), zero-padded at the front while the buffer
        holds fewer than ``n``. Always a copy."""
        n = self.capacity if n is None else int(n)
        if n > self.capacity:
            raise ValueError(f"asked for {n} samples from a ring of {self.capacity}")
        out = np.roll(self._buf, -self._pos)[self.capacity - n:].copy()
        have = min(self.total, n)
        if have < n:
            out[:n - have] = 0.0
        return out

    def window(self, end: int, n: int) -> np.ndarray:
        """Samples ``[end - n, end)`` by stream position; positions before the stream start or already
        overwritten read as silence, positions not yet written are an error."""
        if end > self.total:
            raise ValueError(f"window ends at {end}, only {self.total} samples written")
        out = np.zeros(n, dtype=np.float32)
        lo = max(end - n, self.total - self.capacity, 0)
        if lo >= end:
            return out
        idx = np.arange(lo, end) % self.capacity
        out[n - (end - lo):] = self._buf[idx]
        return out
