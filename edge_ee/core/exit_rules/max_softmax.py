"""``max_softmax`` (SDN, T-RecX, MSDNet): exit when max softmax(logits / T) >= threshold."""

from __future__ import annotations

import numpy as np

from . import ExitRule, register_rule, softmax_rows, softmax_terms


@register_rule
class MaxSoftmax(ExitRule):
    name = "max_softmax"
    rank = 0
    always = 0.0
    never = 1.01  # max softmax is <= 1 (and can round to exactly 1.0)

    def score(self, logits: np.ndarray, temperature: float = 1.0, confidence: float | None = None) -> float:
        i, terms, total = softmax_terms(logits, temperature)
        return float(terms[i] / total)

    def scores(self, logits: np.ndarray, temperature: float = 1.0,
               confidence: np.ndarray | None = None) -> np.ndarray:
        return softmax_rows(logits, temperature).max(1)
