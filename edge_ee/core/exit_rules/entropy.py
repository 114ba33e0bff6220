"""``entropy`` (BranchyNet): exit when the softmax entropy, normalised to [0, 1] by log(classes), is <= threshold."""

from __future__ import annotations

import math

import numpy as np

from . import ExitRule, normalized_entropy, register_rule, softmax_rows, softmax_terms


@register_rule
class Entropy(ExitRule):
    name = "entropy"
    rank = 1
    higher_fires = False
    always = 1.0  # normalised entropy is <= 1
    never = -0.01

    def score(self, logits: np.ndarray, temperature: float = 1.0, confidence: float | None = None) -> float:
        _, terms, total = softmax_terms(logits, temperature)
        if isinstance(terms, np.ndarray):
            return normalized_entropy(terms / total)
        if len(terms) < 2:
            return 0.0
        h = -sum((v / total) * math.log(v / total) for v in terms if v > 0.0)
        return h / math.log(len(terms))

    def scores(self, logits: np.ndarray, temperature: float = 1.0,
               confidence: np.ndarray | None = None) -> np.ndarray:
        p = softmax_rows(logits, temperature)
        if p.shape[1] < 2:
            return np.zeros(len(p))
        return -(p * np.log(np.clip(p, 1e-300, None))).sum(1) / math.log(p.shape[1])
