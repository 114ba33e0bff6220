"""``confidence`` (EENets, PTEENet): exit when the head's learned sigmoid confidence >= threshold."""

from __future__ import annotations

import numpy as np

from ...errors import UsageError
from . import ExitRule, register_rule


@register_rule
class LearnedConfidence(ExitRule):
    name = "confidence"
    rank = 2
    needs_confidence = True
    always = 0.0
    never = 1.01  # a sigmoid confidence is <= 1

    def score(self, logits: np.ndarray, temperature: float = 1.0, confidence: float | None = None) -> float:
        if confidence is None:
            raise UsageError("exit rule 'confidence' needs a head with a learned confidence output")
        return float(confidence)

    def scores(self, logits: np.ndarray, temperature: float = 1.0,
               confidence: np.ndarray | None = None) -> np.ndarray:
        if confidence is None:
            raise UsageError("exit rule 'confidence' needs a head with a learned confidence output")
        return np.asarray(confidence, np.float64).reshape(-1)
