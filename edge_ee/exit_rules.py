"""Exit rules: decide from an exit head's output whether the input may stop there.

* ``max_softmax`` (SDN, T-RecX, MSDNet): exit when max softmax(logits / T) >= threshold.
* ``entropy`` (BranchyNet): exit when the softmax entropy, normalised to [0, 1] by log(classes),
  is <= threshold.
* ``confidence`` (EENets, PTEENet): exit when the head's learned sigmoid confidence >= threshold.

The reported confidence is always the max softmax probability of the chosen exit, so numbers are
comparable across rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UsageError


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64).reshape(-1) / temperature
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def normalized_entropy(p: np.ndarray) -> float:
    n = p.size
    if n < 2:
        return 0.0
    q = p[p > 0]
    return float(-(q * np.log(q)).sum() / math.log(n))


@dataclass
class Decision:
    fires: bool
    score: float  # the value compared with the threshold
    confidence: float  # max softmax probability
    probs: np.ndarray


def decide(rule: str, threshold: float, logits: np.ndarray, temperature: float = 1.0,
           learned_confidence: float | None = None) -> Decision:
    p = softmax(logits, temperature)
    conf = float(p.max())
    if rule == "max_softmax":
        return Decision(conf >= threshold, conf, conf, p)
    if rule == "entropy":
        h = normalized_entropy(p)
        return Decision(h <= threshold, h, conf, p)
    if rule == "confidence":
        if learned_confidence is None:
            raise UsageError("exit rule 'confidence' needs a head with a learned confidence output")
        return Decision(learned_confidence >= threshold, learned_confidence, conf, p)
    raise UsageError(f"unknown exit rule {rule!r}; use max_softmax, entropy or confidence")


def never_fires(rule: str) -> float:
    """A threshold under which ``rule`` never fires (used to force the full model)."""
    return -1.0 if rule == "entropy" else math.inf
