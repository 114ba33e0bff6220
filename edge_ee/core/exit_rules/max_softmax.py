"""``max_softmax`` (SDN, T-RecX, MSDNet): exit when max softmax(logits / T) >= threshold."""

from __future__ import annotations

import math

import numpy as np

from . import _SMALL, ExitRule, register_rule, softmax, softmax_rows


@register_rule
class MaxSoftmax(ExitRule):
    name = "max_softmax"
    rank = 0
    always = 0.0
    never = 1.01  # max softmax is <= 1 (and can round to exactly 1.0)

    def score(self, logits: np.ndarray, temperature: float = 1.0, confidence: float | None = None) -> float:
        flat = logits if logits.ndim == 1 else logits.reshape(-1)
        if flat.size > _SMALL:
            return float(softmax(flat, temperature).max())
        z = flat.tolist()
        m = max(z)
        inv = 1.0 / temperature
        return 1.0 / sum(math.exp((v - m) * inv) for v in z)

    def scores(self, logits: np.ndarray, temperature: float = 1.0,
               confidence: np.ndarray | None = None) -> np.ndarray:
        return softmax_rows(logits, temperature).max(1)
