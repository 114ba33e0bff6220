"""Audio plumbing for live keyword spotting: PCM readers (WAV, raw stdin, arecord, sounddevice),
a streaming resampler and a ring buffer. numpy + stdlib only."""

from .resample import StreamResampler, resample
from .ring import RingBuffer

__all__ = ["RingBuffer", "StreamResampler", "resample"]
