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


_SMALL = 64  # below this many classes plain Python beats numpy's per-call overhead


def exit_score(rule: str, logits: np.ndarray, temperature: float = 1.0,
               learned_confidence: float | None = None) -> float:
    """The value a rule compares with its threshold, computed without building the probability
    vector (this runs after every head, so it is kept to a couple of microseconds)."""
    if rule == "confidence":
        if learned_confidence is None:
            raise UsageError("exit rule 'confidence' needs a head with a learned confidence output")
        return learned_confidence
    if rule not in ("max_softmax", "entropy"):
        raise UsageError(f"unknown exit rule {rule!r}; use max_softmax, entropy or confidence")
    flat = logits.reshape(-1)
    if flat.size > _SMALL:
        p = softmax(flat, temperature)
        return float(p.max()) if rule == "max_softmax" else normalized_entropy(p)
    z = flat.tolist()
    m = max(z)
    inv = 1.0 / temperature
    e = [math.exp((v - m) * inv) for v in z]
    total = sum(e)
    if rule == "max_softmax":
        return 1.0 / total
    if len(z) < 2:
        return 0.0
    h = -sum((v / total) * math.log(v / total) for v in e if v > 0.0)
    return h / math.log(len(z))


def fires(rule: str, score: float, threshold: float) -> bool:
    """Entropy exits when low; max-softmax and learned confidence exit when high."""
    return score <= threshold if rule == "entropy" else score >= threshold


def decide(rule: str, threshold: float, logits: np.ndarray, temperature: float = 1.0,
           learned_confidence: float | None = None) -> Decision:
    score = exit_score(rule, logits, temperature, learned_confidence)
    p = softmax(logits, temperature)
    return Decision(fires(rule, score, threshold), score, float(p.max()), p)


def never_fires(rule: str) -> float:
    """A threshold under which ``rule`` never fires (used to force the full model)."""
    return -1.0 if rule == "entropy" else math.inf
