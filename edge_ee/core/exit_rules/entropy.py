"""``entropy`` (BranchyNet): exit when the softmax entropy, normalised to [0, 1] by log(classes), is <= threshold."""

from __future__ import annotations

import math

import numpy as np

from . import _SMALL, ExitRule, normalized_entropy, register_rule, softmax, softmax_rows


@register_rule
class Entropy(ExitRule):
    name = "entropy"
    rank = 1
    higher_fires = False
    always = 1.0  # normalised entropy is <= 1
    never = -0.01

    def score(self, logits: np.ndarray, temperature: float = 1.0, confidence: float | None = None) -> float:
        flat = logits if logits.ndim == 1 else logits.reshape(-1)
        if flat.size > _SMALL:
            return normalized_entropy(softmax(flat, temperature))
        z = flat.tolist()
        if len(z) < 2:
            return 0.0
        m = max(z)
        inv = 1.0 / temperature
        e = [math.exp((v - m) * inv) for v in z]
        total = sum(e)
        h = -sum((v / total) * math.log(v / total) for v in e if v > 0.0)
        return h / math.log(len(z))

    def scores(self, logits: np.ndarray, temperature: float = 1.0,
               confidence: np.ndarray | None = None) -> np.ndarray:
        p = softmax_rows(logits, temperature)
        if p.shape[1] < 2:
            return np.zeros(len(p))
        return -(p * np.log(np.clip(p, 1e-300, None))).sum(1) / math.log(p.shape[1])
