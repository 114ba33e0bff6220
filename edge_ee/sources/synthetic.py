"""Synthetic frames of the bundle's input size: a source that exists on every machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from .base import Frame, Source
from .registry import register_source

if TYPE_CHECKING:
    from ..core.manifest import InputSpec, Manifest


@register_source("synthetic", "random frames of the model's input size (synthetic or synthetic:SEED)", order=10)
class SyntheticSource(Source):
    description = "synthetic"

    @classmethod
    def from_spec(cls, arg: str, m: Manifest, opts: dict) -> SyntheticSource:
        try:
            seed = int(arg) if arg else 0
        except ValueError:
            seed = -1
        if not 0 <= seed < 2**63:
            raise UsageError(f"synthetic:{arg}: the argument must be an integer seed from 0 to 2**63-1") from None
        return cls(m.input, seed=seed)

    def __init__(self, spec: InputSpec, seed: int = 0, limit: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.spec = spec
        self.limit = limit
        self.index = 0
        pre = spec.preprocess or {}
        kind = pre.get("kind", "none")
        if kind == "image":
            self.kind = "image"
            h, w = pre.get("size", [spec.sample_shape[-2], spec.sample_shape[-1]])
            self.shape: tuple[int, ...] = (int(h), int(w), 3)
        elif kind == "audio_mfcc":
            self.kind = "audio"
            self.shape = (int(pre.get("clip_samples", pre.get("sample_rate", 16000))),)
        else:
            self.kind = "tensor"
            self.shape = spec.sample_shape

    def read(self) -> Frame | None:
        if self.limit is not None and self.index >= self.limit:
            return None
        if self.kind == "image":
            data = self.rng.integers(0, 256, self.shape, dtype=np.uint8)
        elif self.kind == "audio":
            data = (0.1 * self.rng.standard_normal(self.shape)).astype(np.float32)
        else:
            data = self.rng.random(self.shape, dtype=np.float32)
        f = Frame(self.index, data, meta={"synthetic": True})
        self.index += 1
        return f
