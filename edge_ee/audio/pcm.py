"""PCM readers: each yields mono float32 chunks in [-1, 1] at its own ``rate``.

* :class:`WavReader` - a 16-bit PCM WAV file (stdlib ``wave``), multi-channel mixed down;
* :class:`RawPcmReader` - raw signed 16-bit little-endian mono PCM from a binary stream (stdin, a pipe);
* :class:`ArecordReader` - ``arecord -D DEV -f S16_LE -r RATE -c 1 -t raw`` as a subprocess (ALSA, no
  Python dependency; works in services without PulseAudio);
* :class:`SoundDeviceReader` - PortAudio through ``sounddevice`` when it is importable.

``read()`` returns ``None`` at the end of the stream and raises :class:`SourceError` /
:class:`DeviceNotFoundError` with a message saying what failed and what to do.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import select
import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DeviceNotFoundError, SourceError

log = logging.getLogger(__name__)
CHUNK_S = 0.05  # 50 ms reads


def int16_to_float(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i2").astype(np.float32) / 32768.0


class PcmReader:
    rate: int = 16000
    name: str = "pcm"

    def read(self) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class WavReader(PcmReader):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.name = f"wav:{self.path}"
        p = Path(self.path)
        if not p.is_file():
            raise SourceError(f"wav:{self.path}: no such file", "check the path (for a microphone use --source mic)")
        try:
            self._w = wave.open(self.path, "rb")
        except wave.Error as e:
            fmt = str(e)
            raise SourceError(
                f"wav:{self.path}: not a 16-bit PCM WAV file ({fmt})",
                f"convert it, e.g. `sox {p.name} -b 16 -e signed-integer out.wav` "
                f"or `ffmpeg -i {p.name} -c:a pcm_s16le out.wav`",
            ) from None
        except EOFError:
            raise SourceError(f"wav:{self.path}: the file ends inside its WAV header (truncated)",
                              "check that it is a complete WAV file") from None
        except OSError as e:
            raise SourceError(f"wav:{self.path}: cannot read the file ({e.strerror or e})",
                              "check that it is a complete WAV file") from None
        width = self._w.getsampwidth()
        if width != 2:
            self._w.close()
            raise SourceError(
                f"wav:{self.path}: {8 * width}-bit samples; edge-ee reads 16-bit PCM WAV",
                f"convert it, e.g. `sox {p.name} -b 16 -e signed-integer out.wav`",
            )
        self.rate = self._w.getframerate()
        self.channels = self._w.getnchannels()
        self.frames = self._w.getnframes()
        self._chunk = max(1, int(self.rate * CHUNK_S * 10))  # files: 0.5 s reads

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0

    def read(self) -> np.ndarray | None:
        try:
            b = self._w.readframes(self._chunk)
        except (OSError, EOFError, wave.Error) as e:
            raise SourceError(f"{self.name}: read failed mid-file ({e})", "the file may be truncated") from None
        if not b:
            return None
        usable = len(b) - len(b) % (2 * self.channels)
        x = int16_to_float(b[:usable])
        if self.channels > 1:
            x = x.reshape(-1, self.channels).mean(axis=1)
        return x

    def close(self) -> None:
        self._w.close()


class RawPcmReader(PcmReader):
    """Raw S16_LE mono from a binary stream. An odd trailing byte at the end is dropped."""

    def __init__(self, stream: BinaryIO, rate: int, name: str = "stdin") -> None:
        self.stream = stream
        self.rate = int(rate)
        self.name = name
        self._chunk_bytes = 2 * max(1, int(self.rate * CHUNK_S))
        self._carry = b""

    def read(self) -> np.ndarray | None:
        while True:
            try:
                read1 = getattr(self.stream, "read1", None)
                b = read1(self._chunk_bytes) if read1 else self.stream.read(self._chunk_bytes)
            except (OSError, ValueError) as e:
                raise SourceError(f"{self.name}: read failed ({e})") from None
            if not b:
                return None  # the writer closed the stream: a clean end
            b = self._carry + b
            usable = len(b) - len(b) % 2
            self._carry = b[usable:]
            if usable:
                return int16_to_float(b[:usable])


_RATE_WARN = re.compile(r"rate is not accurate \(requested = (\d+)Hz, got = (\d+)Hz\)")


class ArecordReader(PcmReader):
    """``arecord`` as a subprocess. Waits up to ``start_timeout_s`` for the first samples: a device
    that does not exist makes arecord exit at once, which becomes a :class:`DeviceNotFoundError`."""

    def __init__(self, device: str, rate: int, start_timeout_s: float = 5.0, executable: str = "arecord") -> None:
        exe = shutil.which(executable)
        if exe is None:
            raise DeviceNotFoundError(
                f"mic:{device}: `arecord` (alsa-utils) is not installed and sounddevice is not importable",
                "install alsa-utils (`sudo apt install alsa-utils`) or `pip install sounddevice`; "
                "or feed a file: --source wav:FILE",
            )
        self.device = device
        self.rate = int(rate)
        self.name = f"mic:{device}"
        self.cmd = [exe, "-D", device, "-f", "S16_LE", "-r", str(self.rate), "-c", "1", "-t", "raw"]
        try:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0)
        except OSError as e:
            raise DeviceNotFoundError(f"{self.name}: cannot start arecord ({e})") from None
        self._stderr: list[str] = []
        self._err_thread = threading.Thread(target=self._drain_stderr, name="arecord-stderr", daemon=True)
        self._err_thread.start()
        assert self.proc.stdout is not None
        self._raw = RawPcmReader(self.proc.stdout, self.rate, self.name)  # type: ignore[arg-type]
        self._first: np.ndarray | None = None
        # the first read tells a working device from a missing one (arecord exits at once) or a dead one
        ready, _, _ = select.select([self.proc.stdout], [], [], start_timeout_s)
        if not ready:
            self.close()
            raise DeviceNotFoundError(
                f"{self.name}: arecord started but delivered no audio in {start_timeout_s:g} s",
                "check the device with `arecord -D DEVICE -d 2 test.wav`; or feed a file: --source wav:FILE",
            )
        self._first = self._raw.read()
        if self._first is None:
            self._wait_exit(start_timeout_s)
            raise DeviceNotFoundError(
                f"no microphone: `{' '.join(self.cmd[:5])} ...` produced no audio"
                + (f" ({self.stderr_text()})" if self.stderr_text() else ""),
                "list capture devices with `arecord -l` and pass one, e.g. --source mic:plughw:1,0; "
                "or feed a file: --source wav:FILE",
            )
        self._check_rate()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in iter(self.proc.stderr.readline, b""):
            text = line.decode(errors="replace").strip()
            if text:
                self._stderr.append(text)
                log.debug("arecord: %s", text)

    def stderr_text(self) -> str:
        time.sleep(0.05)  # let the stderr thread catch up
        return "; ".join(self._stderr[-3:])

    def _wait_exit(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()

    def _check_rate(self) -> None:
        time.sleep(0.05)  # arecord prints its rate warning before the first samples; let the thread read it
        for line in self._stderr:
            m = _RATE_WARN.search(line)
            if m and int(m.group(2)) != self.rate:
                log.warning("%s: device gives %s Hz instead of %s Hz; resampling", self.name, m.group(2),
                            self.rate)
                self.rate = int(m.group(2))

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            x, self._first = self._first, None
            return x
        x = self._raw.read()
        if x is None:
            code = self.proc.poll()
            if code is None:
                self._wait_exit(1.0)
                code = self.proc.poll()
            if code not in (0, None, -15):
                raise SourceError(
                    f"{self.name}: arecord stopped (exit status {code})"
                    + (f": {self.stderr_text()}" if self.stderr_text() else ""),
                    "check the device (`arecord -l`), that it is not in use, and the audio group membership",
                )
        return x

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()


class SoundDeviceReader(PcmReader):
    """PortAudio input through ``sounddevice`` (needs libportaudio2 on Linux)."""

    def __init__(self, device: str | None, rate: int) -> None:
        import sounddevice as sd  # noqa: PLC0415 - optional dependency

        self.name = f"mic:{device or 'default'}"
        self.rate = int(rate)
        self._q: queue.Queue[np.ndarray] = queue.Queue(maxsize=200)
        dev: str | int | None = int(device) if device and device.isdigit() else (device or None)

        def cb(indata: np.ndarray, frames: int, t: object, status: object) -> None:
            try:
                self._q.put_nowait(indata[:, 0].astype(np.float32).copy())
            except queue.Full:  # the consumer stalled: drop the oldest audio
                pass

        try:
            self._stream = sd.InputStream(device=dev, channels=1, samplerate=self.rate, dtype="float32",
                                          blocksize=int(self.rate * CHUNK_S), callback=cb)
            self._stream.start()
        except Exception as e:  # PortAudioError, ValueError: unknown device
            raise DeviceNotFoundError(
                f"{self.name}: cannot open the microphone through sounddevice ({e})",
                "list devices with `python -m sounddevice`; or use --source wav:FILE",
            ) from None

    def read(self) -> np.ndarray | None:
        try:
            return self._q.get(timeout=5.0)
        except queue.Empty:
            raise SourceError(f"{self.name}: no audio for 5 s", "check the microphone") from None

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


def has_sounddevice() -> bool:
    try:
        import sounddevice  # noqa: F401, PLC0415
    except (ImportError, OSError):
        return False
    return True
