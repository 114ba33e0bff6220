from __future__ import annotations

import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from factory import build_bundle  # noqa: E402

from edge_ee.pipeline.features import DEFAULT_SPEC  # noqa: E402

KWS_LABELS = ["silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def write_wav(path: Path, pcm: np.ndarray, rate: int = 16000, width: int = 2, channels: int = 1) -> Path:
    x = np.asarray(pcm, dtype=np.float64)
    if channels > 1:
        x = np.repeat(x[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
        else:  # 8-bit unsigned
            w.writeframes(((np.clip(x, -1, 1) * 127) + 128).astype(np.uint8).tobytes())
    return path


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def kws_bundle(tmp_path: Path) -> Path:
    return build_bundle(tmp_path / "kws", task="keyword_spotting", input_shape=(1, 1, 49, 10),
                        preprocess=dict(DEFAULT_SPEC), labels=KWS_LABELS)


@pytest.fixture
def image_bundle(tmp_path: Path) -> Path:
    return build_bundle(tmp_path / "img", preprocess={"kind": "image", "color": "gray", "size": [28, 28],
                                                      "scale": 1 / 255.0, "mean": [0.0], "std": [1.0]})


@pytest.fixture
def need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (sudo apt-get install espeak-ng)")
