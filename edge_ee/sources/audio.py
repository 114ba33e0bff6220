"""Audio sources: ``mic[:DEVICE]``, ``wav:FILE``, ``-`` (raw 16-bit PCM on stdin).

Every source resamples to the model's rate (``input.preprocess.sample_rate``), keeps a ring buffer
and emits one window of the model's length (``clip_samples``, 1 s) every hop (``--hop``, 250 ms).
Frames carry float32 PCM; :mod:`edge_ee.pipeline.preprocess` turns it into MFCC features as the manifest says.

Files and stdin are processed window by window without dropping anything. A microphone is live: a
reader thread keeps filling the ring, and when inference falls behind, ``read()`` jumps to the newest
window and counts the skipped ones in ``dropped`` (no queue growth, no growing latency).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..audio.pcm import ArecordReader, PcmReader, RawPcmReader, SoundDeviceReader, WavReader, has_sounddevice
from ..audio.resample import StreamResampler
from ..audio.ring import RingBuffer
from ..errors import DeviceNotFoundError, SourceError, UsageError
from .base import Frame, Source
from .registry import AUDIO_TASK, register_source

if TYPE_CHECKING:
    from ..core.manifest import Manifest

log = logging.getLogger(__name__)
DEFAULT_HOP_S = 0.25


def model_audio_params(m: Manifest) -> tuple[int, int]:
    """(sample rate, window samples) the bundle expects; the KWS defaults for non-audio bundles."""
    pre = m.input.preprocess or {}
    rate = int(pre.get("sample_rate", 16000))
    return rate, int(pre.get("clip_samples", rate))


class AudioSource(Source):
    kind = "audio"

    def __init__(self, reader: PcmReader, rate: int, window: int, hop_s: float = DEFAULT_HOP_S,
                 live: bool = False, description: str | None = None,
                 truth: list[dict[str, Any]] | None = None) -> None:
        if not 0 < hop_s <= window / rate:
            raise UsageError(f"--hop {hop_s * 1e3:g}ms: must be > 0 and at most the model window "
                             f"({1e3 * window / rate:g} ms)")
        self.reader = reader
        self.rate = int(rate)
        self.window_samples = int(window)
        self.hop = max(1, int(round(hop_s * self.rate)))
        self.live = live
        self.description = description or reader.name
        self.truth = truth  # keyword events [{"keyword", "start", "end"}] when a sidecar file exists
        self.ring = RingBuffer(self.window_samples + 4 * self.rate)
        self.resampler = StreamResampler(reader.rate, self.rate)
        if reader.rate != self.rate:
            log.info("%s: resampling %d Hz -> %d Hz", self.description, reader.rate, self.rate)
        self.next_end = self.window_samples  # stream position where the next window ends
        self.index = 0
        self.eof = False
        self.dropped = 0
        self._t_last = time.perf_counter()  # arrival time of the newest sample
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._interrupted = False
        if live:
            self._thread = threading.Thread(target=self._pump, name="audio-reader", daemon=True)
            self._thread.start()

    # ----------------------------------------------------------------- input side
    def _pull(self) -> bool:
        """Read one chunk into the ring; False at the end of the stream."""
        chunk = self.reader.read()
        if chunk is None:
            tail = self.resampler.flush()
            with self._cond:
                self.ring.write(tail)
                self._t_last = time.perf_counter()
                self.eof = True
                self._cond.notify_all()
            return False
        y = self.resampler.process(chunk)
        with self._cond:
            self.ring.write(y)
            self._t_last = time.perf_counter()
            self._cond.notify_all()
        return True

    def _pump(self) -> None:
        try:
            while not self._closing and self._pull():
                pass
        except BaseException as e:  # handed to the consumer
            with self._cond:
                self._error = e
                self.eof = True
                self._cond.notify_all()

    # ----------------------------------------------------------------- output side
    def _emit(self, end: int) -> Frame:
        pcm = self.ring.window(end, self.window_samples)
        t_capture = self._t_last - (self.ring.total - end) / self.rate if self.live else time.perf_counter()
        meta: dict[str, Any] = {"t_audio": round(end / self.rate, 4),
                                "t_audio_start": round((end - self.window_samples) / self.rate, 4)}
        f = Frame(self.index, pcm, t_capture=t_capture, meta=meta)
        self.index += 1
        return f

    def read(self) -> Frame | None:
        if self.live:
            with self._cond:
                while self.ring.total < self.next_end and not self.eof and not self._interrupted:
                    self._cond.wait(0.5)
                if self._interrupted:
                    return None
                if self._error is not None:
                    err, self._error = self._error, None
                    raise err
                return self._next_locked()
        while self.ring.total < self.next_end and not self.eof:
            self._pull()
        return self._next_locked()

    def _next_locked(self) -> Frame | None:
        total = self.ring.total
        if total >= self.next_end:
            behind = (total - self.next_end) // self.hop
            if self.live and behind > 0:  # inference fell behind: take the newest window
                self.dropped += behind
                self.next_end += behind * self.hop
            end = self.next_end
            self.next_end += self.hop
            return self._emit(end)
        if self.index == 0 and total > 0:  # a stream shorter than one window: one padded window
            self.next_end = total + self.window_samples  # never again
            return self._emit(total)
        return None

    def interrupt(self) -> None:
        """Called on a stop request: a read() waiting for audio returns None."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def close(self) -> None:
        self._closing = True
        self.reader.close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


# ------------------------------------------------------------------ openers
def _hop(opts: dict) -> float:
    return float(opts.get("hop_s") or DEFAULT_HOP_S)


def read_truth(path: Path) -> list[dict[str, Any]] | None:
    """Keyword ground truth next to a WAV: ``FILE.keywords.json`` = {"keywords": [{"keyword", "start", "end"}]}."""
    side = path.with_suffix(".keywords.json")
    if not side.is_file():
        return None
    try:
        d = json.loads(side.read_text())
        return [{"keyword": str(e["keyword"]), "start": float(e["start"]), "end": float(e["end"])}
                for e in d["keywords"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring %s: %s", side, e)
        return None


@register_source("wav", "a 16-bit PCM WAV file, wav:FILE (resampled to the model's rate)", syntax="wav:FILE",
                 task=AUDIO_TASK, order=100)
def open_wav(arg: str, m: Manifest, opts: dict) -> AudioSource:
    if not arg:
        raise UsageError("wav: needs a file, e.g. wav:speech.wav")
    rate, window = model_audio_params(m)
    reader = WavReader(arg)
    if reader.frames == 0:
        reader.close()
        raise SourceError(f"wav:{arg}: the file contains no audio")
    desc = f"wav:{arg} ({reader.rate} Hz" + (f" resampled to {rate} Hz)" if reader.rate != rate else ")")
    return AudioSource(reader, rate, window, _hop(opts), live=False, description=desc, truth=read_truth(Path(arg)))


@register_source("-", "raw 16-bit little-endian mono PCM on stdin (rate: --audio-rate)",
                 syntax="- (raw PCM on stdin)", task=AUDIO_TASK, order=110)
def open_stdin(arg: str, m: Manifest, opts: dict) -> AudioSource:
    rate, window = model_audio_params(m)
    in_rate = int(opts.get("audio_rate") or rate)
    stream = opts.get("stdin") or getattr(sys.stdin, "buffer", None)
    if stream is None or getattr(stream, "closed", False):
        raise SourceError("--source - reads raw 16-bit PCM from stdin, but stdin is closed",
                          "pipe audio in, e.g. `arecord -f S16_LE -r 16000 -c 1 -t raw | edge-ee run --source -`")
    if hasattr(stream, "isatty") and stream.isatty():
        raise UsageError("--source - reads raw 16-bit PCM from stdin, but stdin is a terminal",
                         "pipe audio in, e.g. `arecord -f S16_LE -r 16000 -c 1 -t raw | edge-ee run --source -`")
    reader = RawPcmReader(stream, in_rate, "stdin")
    desc = f"stdin (raw S16_LE mono, {in_rate} Hz" + (f" resampled to {rate} Hz)" if in_rate != rate else ")")
    return AudioSource(reader, rate, window, _hop(opts), live=False, description=desc)


@register_source("mic", "a microphone, mic or mic:ALSA_DEVICE (e.g. mic:plughw:1,0); arecord or sounddevice",
                 syntax="mic[:DEVICE]", task=AUDIO_TASK, order=90)
def open_mic(arg: str, m: Manifest, opts: dict) -> AudioSource:
    rate, window = model_audio_params(m)
    in_rate = int(opts.get("audio_rate") or rate)
    device = arg or "default"
    reader: PcmReader
    import shutil

    if shutil.which("arecord"):
        reader = ArecordReader(device, in_rate)
    elif has_sounddevice():
        reader = SoundDeviceReader(arg or None, in_rate)
    else:
        raise DeviceNotFoundError(
            f"mic:{device}: no way to capture audio: `arecord` (alsa-utils) is not installed and "
            "sounddevice is not importable",
            "`sudo apt install alsa-utils` (or `pip install sounddevice`); or use --source wav:FILE",
        )
    desc = f"{reader.name} ({reader.rate} Hz" + (f" resampled to {rate} Hz)" if reader.rate != rate else ")")
    return AudioSource(reader, rate, window, _hop(opts), live=True, description=desc)
